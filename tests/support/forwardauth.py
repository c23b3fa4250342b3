"""Stand-ins for proving SSO end to end where Authentik and Traefik cannot run.

``authentik_conf``: nginx configuration for a forward-auth double of Authentik's embedded
outpost, built from its contract (contracts/authentik.yaml forward_auth, oidc_urls) and from
OUR blueprint: it knows exactly the hosts the blueprint gives providers (as the outpost knows
only its providers), answers an anonymous request with a 302 to the authorize URL on
``auth.<DOMAIN>``, a request carrying the session cookie it issued with 200 and the user
headers, an unknown host with 404, and serves each OIDC client's discovery document. Its
"login" signs in at once: it sends the browser to the app's callback, which sets the cookie
on the app's host, as the outpost's callback does.

``Ingress``: Traefik's routing and its forwardAuth and basicAuth middlewares, as its source at
the pin does them (contracts/traefik.yaml forward_auth), driven by OUR rendered labels and
dynamic configuration: a router per ``traefik.http.routers.*`` label set, the highest priority
first (Traefik's default priority is the rule's length), forwardAuth to the address the
dynamic file names (a non-2xx answer goes back to the client with its headers; on 2xx the
``authResponseHeaders`` are copied into the request), basicAuth against the bcrypt entries.
Behind every router an echo "app" answers 200 and names the user header it received.
"""

from __future__ import annotations

import http.client
import re
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import bcrypt
import yaml

from infra import sso

SESSION_COOKIE = "authentik_session"


def authentik_conf(blueprint: Mapping[str, Any]) -> str:
    """The forward-auth double's nginx.conf (listens on 9000, like authentik-server)."""
    hosts = sorted(urlsplit(e["attrs"]["external_host"]).netloc
                   for e in blueprint["entries"]
                   if e["model"] == "authentik_providers_proxy.proxyprovider"
                   and e.get("state", "present") != "absent")
    clients = sorted(e["attrs"]["client_id"] for e in blueprint["entries"]
                     if e["model"] == "authentik_providers_oauth2.oauth2provider")
    known = "\n".join(f"    {h} 1;" for h in hosts)
    # the outpost's browser redirects go to its authentik_host (the blueprint sets it)
    [outpost] = [e for e in blueprint["entries"] if e["model"] == "authentik_outposts.outpost"]
    login = outpost["attrs"]["config"]["authentik_host"]
    discovery = "|".join(re.escape(c) for c in clients) or "(?!)"
    return f"""daemon off;
master_process off;
user root root;
pid /tmp/nginx.pid;
error_log stderr warn;
events {{}}
http {{
  client_body_temp_path /tmp; proxy_temp_path /tmp; fastcgi_temp_path /tmp;
  uwsgi_temp_path /tmp; scgi_temp_path /tmp;
  access_log off;
  log_format fa 'forward-auth host=$http_x_forwarded_host uri=$http_x_forwarded_uri';
  map $http_x_forwarded_host $known {{
    default 0;
{known}
  }}
  server {{
    listen 9000;
    absolute_redirect off;
    location = /outpost.goauthentik.io/auth/traefik {{
      access_log /dev/stdout fa;
      if ($known = 0) {{ return 404 "no application for this host"; }}
      if ($cookie_{SESSION_COOKIE} = "signed-in") {{
        add_header X-authentik-username akadmin always;
        add_header X-authentik-groups admins always;
        return 200;
      }}
      return 302 "{login}/application/o/authorize/?client_id=proxy&redirect_uri=https://$http_x_forwarded_host/outpost.goauthentik.io/callback%3FX-authentik-auth-callback%3Dtrue";
    }}
    # the browser's dance: the login (here: at once) sends it back to the app's callback,
    # whose answer sets the session cookie on the app's host and returns it to the app
    location = /application/o/authorize/ {{
      access_log off;
      return 302 $arg_redirect_uri;
    }}
    location ^~ /outpost.goauthentik.io/callback {{
      access_log off;
      add_header Set-Cookie "{SESSION_COOKIE}=signed-in; Path=/; Secure" always;
      return 302 /;
    }}
    location ~ "^/application/o/({discovery})/\\.well-known/openid-configuration$" {{
      access_log off;
      default_type application/json;
      # Authentik builds it from the host the client asked for (ProviderInfoView)
      return 200 '{{"issuer": "https://$http_host/application/o/$1/"}}';
    }}
    location /outpost.goauthentik.io/ {{ access_log off; return 204; }}
    location / {{ access_log off; return 404; }}
  }}
}}
"""


@dataclass
class Router:
    name: str
    hosts: tuple[str, ...]
    path: str
    methods: tuple[str, ...]
    priority: int
    middlewares: tuple[str, ...]
    service: str
    backend: str = ""  # the compose service behind it (its container name on the network)
    port: int = 0

    def matches(self, host: str, path: str, method: str) -> bool:
        return (host in self.hosts and path.startswith(self.path or "/")
                and (not self.methods or method in self.methods))


RULE_HOST = re.compile(r"Host\(`([^`]+)`\)")
RULE_PATH = re.compile(r"PathPrefix\(`([^`]+)`\)")
RULE_METHOD = re.compile(r"Method\(`([^`]+)`\)")


def routers(compose_files: Mapping[str, str], dynamic: Mapping[str, Any],
            drop_middleware: str = "") -> list[Router]:
    """Every router of our labels and dynamic file, highest priority first."""
    found: list[Router] = []
    for text in compose_files.values():
        for backend, service in (yaml.safe_load(text).get("services") or {}).items():
            labels = service.get("labels") or {}
            names = {k.split(".")[3] for k in labels if k.startswith("traefik.http.routers.")}
            for name in names:
                prefix = f"traefik.http.routers.{name}."
                rule = labels[prefix + "rule"]
                middlewares = tuple(m for m in labels.get(prefix + "middlewares", "").split(",")
                                    if m and name != drop_middleware)
                port = labels.get(f"traefik.http.services.{name}.loadbalancer.server.port", 0)
                found.append(Router(name, tuple(RULE_HOST.findall(rule)),
                                    (RULE_PATH.findall(rule) or [""])[0],
                                    tuple(RULE_METHOD.findall(rule)),
                                    int(labels.get(prefix + "priority", len(rule))),
                                    middlewares, labels.get(prefix + "service", name),
                                    backend, int(port)))
    for name, spec in ((dynamic.get("http") or {}).get("routers") or {}).items():
        rule = spec["rule"]
        found.append(Router(name, tuple(RULE_HOST.findall(rule)),
                            (RULE_PATH.findall(rule) or [""])[0], tuple(RULE_METHOD.findall(rule)),
                            int(spec.get("priority", len(rule))),
                            tuple(spec.get("middlewares") or ()), spec["service"]))
    return sorted(found, key=lambda r: -r.priority)


@dataclass
class Ingress:
    routers: list[Router]
    middlewares: Mapping[str, Any]  # the dynamic file's http.middlewares
    resolve: Mapping[str, str]  # container name -> address (Docker's DNS, for the stand-in)
    outpost: str  # the authentik-outpost service's URL in the dynamic file
    seen_users: list[str] = field(default_factory=list)

    def _address(self, url: str) -> tuple[str, int, str]:
        parts = urlsplit(url)
        host = self.resolve.get(parts.hostname or "", parts.hostname or "")
        return host, parts.port or 80, (parts.path or "/") + (
            f"?{parts.query}" if parts.query else "")

    def handle(self, request: BaseHTTPRequestHandler) -> tuple[int, list[tuple[str, str]], bytes]:
        authority = request.headers.get("Host") or ""  # with its port, as Traefik passes it
        host = authority.split(":")[0]
        path = request.path
        router = next((r for r in self.routers if r.matches(host, path, request.command)), None)
        if router is None:
            return 404, [], b"404 page not found\n"
        extra: dict[str, str] = {}
        for reference in router.middlewares:
            name = reference.removesuffix("@file")
            spec = self.middlewares[name]
            if "forwardAuth" in spec:
                answer = self._forward_auth(spec["forwardAuth"], request, authority)
                if answer[0] >= 300 or answer[0] < 200:
                    return answer
                keep = {h.lower() for h in spec["forwardAuth"].get("authResponseHeaders", [])}
                extra.update({k: v for k, v in answer[1] if k.lower() in keep})
            elif "basicAuth" in spec and not self._basic(
                    spec["basicAuth"], request.headers.get("Authorization", "")):
                realm = spec["basicAuth"].get("realm", "traefik")
                return 401, [("WWW-Authenticate", f'Basic realm="{realm}"')], \
                    b"401 Unauthorized\n"
        if router.service.startswith("authentik-outpost"):
            return self._proxy(self.outpost + path, request, authority)
        if router.backend in self.resolve:  # a container that runs here: the real answer
            return self._proxy(f"http://{router.backend}:{router.port}{path}", request,
                               authority)
        user = extra.get("X-authentik-username", "")
        self.seen_users.append(f"{router.name}:{user}")
        return 200, [], f"app {router.name} user={user}\n".encode()

    def _forward_auth(self, spec: Mapping[str, Any], request: BaseHTTPRequestHandler,
                      host: str) -> tuple[int, list[tuple[str, str]], bytes]:
        address, port, path = self._address(spec["address"])
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        headers.update({"X-Forwarded-Method": request.command, "X-Forwarded-Proto": "https",
                        "X-Forwarded-Host": host, "X-Forwarded-Uri": request.path,
                        "X-Forwarded-For": request.client_address[0]})
        connection = http.client.HTTPConnection(address, port, timeout=10)
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()

    def _proxy(self, url: str, request: BaseHTTPRequestHandler, host: str
               ) -> tuple[int, list[tuple[str, str]], bytes]:
        address, port, path = self._address(url)
        connection = http.client.HTTPConnection(address, port, timeout=10)
        connection.request(request.command, path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()

    @staticmethod
    def _basic(spec: Mapping[str, Any], header: str) -> bool:
        import base64
        import binascii

        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        for entry in spec["users"]:
            name, _, hashed = entry.partition(":")
            if name == user and bcrypt.checkpw(password.encode(), hashed.encode()):
                return True
        return False


@contextmanager
def serve(ingress: Ingress, cert: str, key: str, port: int = 0) -> Iterator[int]:
    """The ingress stand-in on 127.0.0.1 with our certificate; yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            status, headers, body = ingress.handle(self)
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding",
                                        "server", "date"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_HEAD = do_POST = _any

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def blueprint_of(files: Mapping[str, str]) -> Any:
    from tests.support.blueprints import load_blueprint

    return load_blueprint(files[sso.BLUEPRINT_FILE])
