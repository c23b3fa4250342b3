"""The stack catalogue: one ``stacks/<name>/stack.yaml`` per stack, the single source of truth.

Loading happens in two steps. ``load_raw`` reads the YAML (no configuration needed: secrets and
stack dependencies are known from it alone). ``resolve`` renders every string through Jinja2
with the public configuration (``{{ DOMAIN }}``, ``{{ LOKI_IMAGE }}``...) and builds the typed
model. Order, networks, volume fixes, routes and the landing page are all derived from the model.
See stacks/README.md for the format.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ConfigError, Problem
from .secrets import SecretSpec
from .settings import check_value, parse_bool
from .yamlfile import read_yaml

# sso: Authentik forward auth; public: no login (with a reason); basic: HTTP basic auth at
# Traefik, for clients that cannot follow a login redirect (docker pulls), user and password
# from the route's `user` and `password` (a declared secret)
AUTH_MODES = ("sso", "public", "basic")


@dataclass(frozen=True)
class HttpProbe:
    """An HTTP GET made from a helper container on the stack network (the image has no shell)."""

    port: int
    path: str
    scheme: str = "http"


@dataclass(frozen=True)
class TlsProbe:
    """A TLS handshake made from a probe container on the stack network: healthy only when the
    service presents, for ``name``, a certificate that ``ca`` issued for that name."""

    port: int
    name: str  # the server name asked for (SNI) and checked in the certificate
    ca: str  # the CA file (host path) the certificate must chain to
    image: str  # the image that runs curl (it must have it: see its contract)


@dataclass(frozen=True)
class Health:
    command: tuple[str, ...] = ()  # in-image check, becomes the compose healthcheck
    http: HttpProbe | None = None  # external probe
    tls: TlsProbe | None = None  # external TLS probe, after the in-image check passed
    interval: str = "10s"
    retries: int = 30
    start_period: str = "10s"


@dataclass(frozen=True)
class Volume:
    """A bind mount. ``source`` under DATA_ROOT (kind data) or a rendered file (kind config)."""

    source: str
    target: str
    kind: str = "data"  # data | config | socket | host | key
    owner: tuple[int, int] | None = None
    mode: str = ""  # chmod applied with the ownership fix, e.g. "0700"
    read_only: bool = False
    # how a backup makes a data volume consistent (infra.backup): live | stop | exclude |
    # dump:<kind> (a database dump taken in the running container); '' for other kinds
    backup: str = ""


@dataclass(frozen=True)
class Port:
    published: int
    target: int
    protocol: str = "tcp"
    bind: str = ""  # empty: BIND_ADDRESS
    # who may use it and what guards it: every port published beyond Traefik says why
    reason: str = ""


@dataclass(frozen=True)
class Route:
    host: str
    port: int  # container port Traefik forwards to (0 when ``service`` names a Traefik service)
    auth: str  # sso | public | basic
    reason: str = ""
    title: str = ""
    path: str = ""  # PathPrefix added to the Host rule, e.g. /v2/
    methods: tuple[str, ...] = ()  # restrict the router to these HTTP methods
    service: str = ""  # a Traefik service instead of the container, e.g. api@internal
    scheme: str = "http"  # how Traefik talks to the container (https when it serves TLS)
    name: str = ""  # router name; default derived from the service name
    user: str = ""  # auth: basic, the user name
    password: str = ""  # auth: basic, the secret key holding the password


@dataclass(frozen=True)
class Oidc:
    """The service signs its users in through Authentik (OpenID Connect): a client is made
    for it (client id = service name), redirecting to its first route's host."""

    redirect_path: str  # e.g. /login/generic_oauth
    secret: str  # the secret key holding the client secret


@dataclass(frozen=True)
class Service:
    name: str
    image: str
    description: str = ""
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    secret_env: Mapping[str, str] = field(default_factory=dict)  # container var -> secret key
    # container path -> secret key: the secret as a read-only file, for images that read one
    # (kept out of the container's environment, which the Docker API shows)
    secret_files: Mapping[str, str] = field(default_factory=dict)
    # a setting naming a user-written credentials env file, whose variables join secret_env's
    # in the service's 0600 env file ('' when none, or when its ``when`` is false)
    credentials_from: str = ""
    volumes: tuple[Volume, ...] = ()
    ports: tuple[Port, ...] = ()
    health: Health | None = None
    depends_on: Mapping[str, str] = field(default_factory=dict)  # service -> condition
    routes: tuple[Route, ...] = ()
    networks: tuple[str, ...] = ()  # extra networks besides the stack's own
    aliases: tuple[str, ...] = ()  # more DNS names on its home network (shared: round robin)
    # joins the stack's internal network instead of its own network: nothing routed, published
    # or outside the stack's internal network can reach it (databases, Mimir's ring)
    internal: bool = False
    user: str = ""  # "uid:gid" the process runs as (documentation + compose `user:`)
    oneshot: bool = False  # runs to completion (e.g. the mc bucket job)
    cap_add: tuple[str, ...] = ()
    read_only: bool = False
    tmpfs: tuple[str, ...] = ()  # writable scratch paths (with read_only)
    ingress: bool = False  # in an ingress stack: this service joins every routed network
    memory: str = "512m"
    cpus: str = "1.0"  # CPU limit (compose `cpus`)
    pids: int = 256
    compose: Mapping[str, Any] = field(default_factory=dict)  # extra compose keys, merged last
    oidc: Oidc | None = None
    # the app's own login behind its routes: own (a second login), sso (it trusts Authentik's
    # forward auth: none of its own), none (it has none); oidc when ``oidc`` is set
    login: str = "own"

    def runs_as_uid(self) -> int | None:
        return int(self.user.split(":")[0]) if self.user and self.user[0].isdigit() else None


@dataclass(frozen=True)
class Stack:
    name: str
    title: str
    description: str
    network: str
    depends_on: tuple[str, ...]
    services: tuple[Service, ...]
    secrets: tuple[SecretSpec, ...]
    ingress: bool = False  # the ingress joins every network that has routed services
    directory: Path = Path()
    # an `internal` network (no route outside the engine, never joined by the ingress) for
    # the stack's backends; '' when it has none
    internal_network: str = ""

    def home_network(self, service: Service) -> str:
        """The network ``service`` is reached on by its own name (and its aliases)."""
        return self.internal_network if service.internal else self.network

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(f"{self.name} has no service {name}")

    @property
    def routes(self) -> list[tuple[Service, Route]]:
        return [(s, r) for s in self.services for r in s.routes]


@dataclass(frozen=True)
class Catalogue:
    stacks: Mapping[str, Stack]

    def __getitem__(self, name: str) -> Stack:
        return self.stacks[name]

    def names(self) -> list[str]:
        return list(self.stacks)


# ---------------------------------------------------------------- loading


def stacks_dir(project_root: Path) -> Path:
    return project_root / "stacks"


def load_raw(directory: Path) -> dict[str, dict[str, Any]]:
    """Read every stacks/<name>/stack.yaml; returns name -> document, sorted by name."""
    raw: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*/stack.yaml")):
        doc = read_yaml(path)
        if not isinstance(doc, dict) or not isinstance(doc.get("services") or {}, dict):
            raise ConfigError(Problem("a stack is a mapping (name, network, services: a "
                                      "mapping of service name -> settings)", file=str(path),
                                      fix="see stacks/README.md for the format"))
        unknown = unknown_keys(doc)
        if unknown:
            raise ConfigError([Problem(f"unknown key {key!r}", key=where, file=str(path), fix=fix)
                               for where, key, fix in unknown])
        name = doc.get("name", path.parent.name)
        if name != path.parent.name:
            raise ConfigError(Problem(f"name {name!r} differs from its folder",
                                      file=str(path), fix=f"set name: {path.parent.name}"))
        doc["_path"] = path
        raw[name] = doc
    return raw


# Every key the format knows (stacks/README.md): anything else is a typo, not ignored.
STACK_KEYS = ("name", "title", "description", "network", "internal_network", "depends_on",
              "ingress", "secrets",
              "services")
SERVICE_KEYS = ("image", "description", "command", "entrypoint", "environment", "secret_env",
                "secret_files",
                "credentials_from", "volumes", "ports", "health", "depends_on", "routes",
                "networks", "aliases", "user", "oneshot", "cap_add", "read_only", "tmpfs",
                "ingress", "internal", "memory", "cpus", "pids", "compose", "oidc", "login")
PART_KEYS = {
    "volumes": ("source", "target", "kind", "owner", "mode", "read_only", "when", "backup"),
    "ports": ("published", "target", "protocol", "bind", "reason"),
    "routes": ("host", "port", "auth", "reason", "title", "path", "methods", "service",
               "scheme", "name", "user", "password"),
}
HEALTH_KEYS = ("command", "http", "tls", "interval", "retries", "start_period")


def unknown_keys(doc: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(where, key, fix) for every key of a stack document the format does not know."""
    import difflib

    found: list[tuple[str, str, str]] = []

    def check(node: Any, known: tuple[str, ...], where: str) -> None:
        if not isinstance(node, Mapping):
            return
        for key in node:
            if key not in known and not str(key).startswith("_"):
                close = difflib.get_close_matches(str(key), known, n=1)
                found.append((where, str(key), (f"did you mean {close[0]}? " if close else "")
                              + f"allowed: {', '.join(known)}"))

    check(doc, STACK_KEYS, "stack")
    for name, service in (doc.get("services") or {}).items():
        check(service, SERVICE_KEYS, f"services.{name}")
        if not isinstance(service, Mapping):
            continue
        for part, known in PART_KEYS.items():
            for index, item in enumerate(service.get(part) or ()):
                check(item, known, f"services.{name}.{part}[{index}]")
        check(service.get("health"), HEALTH_KEYS, f"services.{name}.health")
    return found


def secret_specs(raw: Mapping[str, Mapping[str, Any]]) -> list[SecretSpec]:
    specs: list[SecretSpec] = []
    for name, doc in raw.items():
        for key, spec in (doc.get("secrets") or {}).items():
            spec = spec or {}
            specs.append(SecretSpec(key=key, length=int(spec.get("length", 32)),
                                    alphabet=spec.get("alphabet", "alnum"), stack=name))
    return specs


@functools.lru_cache(maxsize=4096)
def compiled_string(source: str) -> Any:
    """A catalogue string as a jinja template, compiled once per process (every host's
    configuration renders the same strings with its own values)."""
    return _string_environment().from_string(source)


@functools.lru_cache(maxsize=1)
def _string_environment() -> Any:
    from jinja2 import Environment, StrictUndefined

    env = Environment(undefined=StrictUndefined, keep_trailing_newline=False)
    env.filters["flag"] = as_flag
    return env


def _credentials_from(spec: Any, where: str) -> str:
    """``credentials_from: {setting: KEY, when: "..."}`` (rendered): KEY, or '' when off."""
    if not spec:
        return ""
    if not isinstance(spec, dict) or "setting" not in spec:
        raise ConfigError(Problem("credentials_from needs a setting", file=where,
                                  fix="write credentials_from: {setting: KEY, when: ...}"))
    return str(spec["setting"]) if "when" not in spec or as_flag(spec["when"]) else ""


def resolve(raw: Mapping[str, Mapping[str, Any]], values: Mapping[str, str],
            root: Path | None = None) -> Catalogue:
    """Render the raw documents with ``values`` (public settings) and build the model.
    ``root``: the project folder, against which relative host paths (a key's original, a TLS
    probe's CA: CERTS_DIR=certs) become absolute, as the shell and the engine need them."""
    from jinja2 import UndefinedError

    def render(node: Any, where: str) -> Any:
        if isinstance(node, str) and "{" in node:
            try:
                return compiled_string(node).render(values)
            except UndefinedError as exc:
                raise ConfigError(Problem(f"{exc.message} in {node!r}", file=where,
                                          fix="use a key from env/defaults.env")) from exc
        if isinstance(node, list):
            return [render(item, where) for item in node]
        if isinstance(node, dict):
            return {k: render(v, where) for k, v in node.items()}
        return node

    stacks: dict[str, Stack] = {}
    for name, doc in raw.items():
        path = doc["_path"]
        rendered = render({k: v for k, v in doc.items() if k != "_path"}, str(path))
        try:
            stacks[name] = _absolute(_build_stack(name, rendered, path), root)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            # a value of the wrong shape (a port that is not a number, a list for a mapping)
            raise ConfigError(Problem(f"a value has the wrong type or is missing "
                                      f"({type(exc).__name__}: {exc})", key=name,
                                      file=str(path),
                                      fix="see stacks/README.md for each key's format")) from None
    catalogue = Catalogue(stacks)
    _check(catalogue)
    return catalogue


def _absolute(stack: Stack, root: Path | None) -> Stack:
    """Relative host paths (kind host or key, a TLS probe's CA) made absolute under ``root``."""
    import dataclasses

    if root is None:
        return stack

    def absolute(path: str) -> str:
        return path if PurePosixPath(path).is_absolute() or not path else str(root / path)

    services = []
    for service in stack.services:
        volumes = tuple(dataclasses.replace(v, source=absolute(v.source))
                        if v.kind in ("host", "key") else v for v in service.volumes)
        health = service.health
        if health and health.tls:
            health = dataclasses.replace(health, tls=dataclasses.replace(
                health.tls, ca=absolute(health.tls.ca)))
        services.append(dataclasses.replace(service, volumes=volumes, health=health))
    return dataclasses.replace(stack, services=tuple(services))


def _build_stack(name: str, doc: Mapping[str, Any], path: Path) -> Stack:
    services = tuple(_build_service(svc, spec or {}, str(path))
                     for svc, spec in (doc.get("services") or {}).items())
    return Stack(
        name=name,
        title=doc.get("title", name),
        description=doc.get("description", ""),
        network=doc.get("network", f"{name}_default"),
        depends_on=tuple(doc.get("depends_on") or ()),
        services=services,
        secrets=tuple(secret_specs({name: doc})),
        ingress=_yes_no(doc, "ingress", name, str(path)),
        directory=path.parent,
        internal_network=str(doc.get("internal_network") or ""),
    )


def _build_service(name: str, spec: Mapping[str, Any], where: str) -> Service:
    def words(value: Any) -> tuple[str, ...] | None:
        if value is None:
            return None
        return (value,) if isinstance(value, str) else tuple(str(v) for v in value)

    health = None
    if spec.get("health"):
        h = spec["health"]
        http = h.get("http")
        tls = h.get("tls")
        if tls and ("when" not in tls or as_flag(tls["when"])):
            missing = [k for k in ("port", "name", "ca", "image") if not tls.get(k)]
            if missing:
                raise ConfigError(Problem(f"tls probe of {name} lacks {', '.join(missing)}",
                                          file=where, fix="tls: {port, name, ca, image}"))
        health = Health(
            command=tuple(words(h.get("command")) or ()),
            http=HttpProbe(int(http["port"]), http.get("path", "/"), http.get("scheme", "http"))
            if http else None,
            tls=TlsProbe(int(tls["port"]), str(tls["name"]), str(tls["ca"]), str(tls["image"]))
            if tls and ("when" not in tls or as_flag(tls["when"])) else None,
            interval=h.get("interval", "10s"),
            retries=int(h.get("retries", 30)),
            start_period=h.get("start_period", "10s"),
        )
    depends = spec.get("depends_on") or {}
    if isinstance(depends, list):
        depends = dict.fromkeys(depends, "service_healthy")
    return Service(
        name=name,
        image=str(spec.get("image", "")),
        description=spec.get("description", ""),
        command=words(spec.get("command")),
        entrypoint=words(spec.get("entrypoint")),
        environment={k: str(v) for k, v in (spec.get("environment") or {}).items()},
        secret_env=dict(spec.get("secret_env") or {}),
        secret_files={str(k): str(v) for k, v in (spec.get("secret_files") or {}).items()},
        credentials_from=_credentials_from(spec.get("credentials_from"), where),
        volumes=tuple(v for v in (_build_volume(v, name, where)
                                  for v in spec.get("volumes") or ()) if v is not None),
        ports=tuple(Port(_port_number(p, "published", name, where),
                         _port_number(p, "target", name, where), p.get("protocol", "tcp"),
                         p.get("bind", ""), str(p.get("reason") or "").strip())
              for p in spec.get("ports") or ()),
        health=health,
        depends_on=dict(depends),
        routes=tuple(_build_route(r, name, where) for r in spec.get("routes") or ()),
        networks=tuple(spec.get("networks") or ()),
        aliases=tuple(str(a) for a in spec.get("aliases") or ()),
        user=str(spec.get("user", "")),
        oneshot=_yes_no(spec, "oneshot", name, where),
        cap_add=tuple(spec.get("cap_add") or ()),
        read_only=_yes_no(spec, "read_only", name, where),
        tmpfs=tuple(spec.get("tmpfs") or ()),
        ingress=_yes_no(spec, "ingress", name, where),
        internal=_yes_no(spec, "internal", name, where),
        memory=str(spec.get("memory", "512m")),
        cpus=str(spec.get("cpus", "1.0")),
        pids=int(spec.get("pids", 256)),
        compose=dict(spec.get("compose") or {}),
        oidc=_oidc(spec.get("oidc"), name, where),
        login=_login(spec, name, where),
    )


LOGINS = ("own", "sso", "none", "oidc")


def _login(spec: Mapping[str, Any], service: str, where: str) -> str:
    value = str(spec.get("login") or ("oidc" if spec.get("oidc") else "own"))
    if value not in LOGINS or (value == "oidc") != bool(spec.get("oidc")):
        raise ConfigError(Problem(f"login of {service} is {value!r}", key=f"{service}.login",
                                  file=where, fix="own, sso or none (oidc comes with oidc:)"))
    return value


def _oidc(spec: Any, service: str, where: str) -> Oidc | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or set(spec) != {"redirect_path", "secret"} \
            or not str(spec["redirect_path"]).startswith("/"):
        raise ConfigError(Problem(f"oidc of {service} is not {{redirect_path, secret}}",
                                  key=f"{service}.oidc", file=where,
                                  fix="oidc: {redirect_path: /login/generic_oauth, "
                                      "secret: <SECRET_KEY>}"))
    return Oidc(str(spec["redirect_path"]), str(spec["secret"]))


def _port_number(spec: Any, key: str, service: str, where: str) -> int:
    value = str(spec.get(key, "") if isinstance(spec, Mapping) else "").strip()
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ConfigError(Problem(f"port {key} {value!r} of {service} is not a TCP/UDP port",
                                  key=f"{service}.ports", file=where,
                                  fix="a number from 1 to 65535 (or a *_PORT setting)"))
    return int(value)


SSO_STACK = "auth"  # the stack whose Authentik answers forward auth and OIDC (infra/sso.py)


def _sso_problems(catalogue: Catalogue, declared: set[str]) -> list[Problem]:
    problems = []
    for stack in catalogue.stacks.values():
        where = str(stack.directory / "stack.yaml")
        for service in stack.services:
            key = f"{stack.name}.{service.name}"
            uses_sso = service.oidc is not None or any(r.auth == "sso" for r in service.routes)
            if uses_sso and SSO_STACK not in catalogue.stacks:
                problems.append(Problem(
                    "uses SSO, but the catalogue has no auth stack (Authentik) to provide it",
                    key=key, file=where, fix=f"add stacks/{SSO_STACK}, or make its routes "
                                             "auth: public (with a reason) or auth: basic"))
            if service.oidc is not None and (service.oidc.secret not in declared
                                             or not service.routes):
                problems.append(Problem(
                    "oidc needs a declared secret for its client and a route for its redirect",
                    key=f"{key}.oidc", file=where,
                    fix="declare the secret under secrets: and route the service"))
    return problems


def _yes_no(spec: Mapping[str, Any], key: str, name: str, where: str) -> bool:
    """A catalogue switch: YAML true or false only ("false" in quotes is a typo, not true)."""
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(Problem(f"{key} of {name} is {value!r}, not true or false",
                                  key=f"{name}.{key}", file=where,
                                  fix=f"write {key}: true or {key}: false, without quotes"))
    return value


def router_names(service: Service) -> list[str]:
    """One Traefik router name per route; unique because service names are."""
    names = []
    for index, route in enumerate(service.routes):
        default = service.name if index == 0 else f"{service.name}-{index + 1}"
        names.append(route.name or default)
    return names


def dependents(catalogue: Catalogue, name: str) -> set[str]:
    """Every stack that needs ``name``, transitively."""
    found: set[str] = set()
    frontier = [name]
    while frontier:
        current = frontier.pop()
        for other in catalogue.stacks.values():
            if current in other.depends_on and other.name not in found:
                found.add(other.name)
                frontier.append(other.name)
    return found


def as_flag(value: Any) -> bool:
    """Jinja filter: a true/false setting as a boolean (``{{ ACME_ENABLED | flag }}``), by
    the settings' one rule (``settings.parse_bool``)."""
    return parse_bool(str(value))


def _build_route(spec: Mapping[str, Any], service: str, where: str = "") -> Route:
    if not isinstance(spec, Mapping) or not str(spec.get("host") or "").strip():
        raise ConfigError(Problem(f"a route of {service} has no host", file=where,
                                  key=f"{service}.routes", fix="give it host: <name>.{{ DOMAIN }}"))
    methods = spec.get("methods") or ()
    return Route(host=str(spec["host"]), port=int(spec.get("port", 0)),
                 auth=spec.get("auth", ""), reason=spec.get("reason", ""),
                 title=spec.get("title", service), path=str(spec.get("path", "")),
                 methods=(methods,) if isinstance(methods, str) else tuple(methods),
                 service=str(spec.get("service", "")), scheme=str(spec.get("scheme", "http")),
                 name=str(spec.get("name", "")), user=str(spec.get("user", "")),
                 password=str(spec.get("password", "")))


# live: self-consistent or append-only stores, read while they run; stop: the services that
# mount it stop for the seconds of the snapshot (SQLite and other single-file databases);
# exclude: caches and the media library (BACKUP_MEDIA_LIBRARY_ENABLED opts in);
# dump:postgres: pg_dump in the running container, its live files left out
BACKUP_MODES = ("live", "stop", "exclude", "dump:postgres")


def _build_volume(spec: Mapping[str, Any], service: str, where: str) -> Volume | None:
    # ``when`` (rendered) decides whether the mount exists at all: optional files such as
    # the Zot credentials or TLS certificates are only mounted when the setting asks for them.
    if "when" in spec and not as_flag(spec["when"]):
        return None
    owner = None
    if spec.get("owner") is not None:
        text = str(spec["owner"])
        uid, _, gid = text.partition(":")
        if not (uid.isdigit() and (gid or uid).isdigit()):
            raise ConfigError(Problem(f"volume owner {text!r} of {service} is not uid:gid",
                                      file=where, fix="write it as e.g. 10001:10001"))
        owner = (int(uid), int(gid or uid))
    kind = spec.get("kind", "data")
    backup = str(spec.get("backup", ""))
    if kind == "data" and backup not in BACKUP_MODES:
        raise ConfigError(Problem(
            f"data volume {spec['source']} of {service} says backup {backup or '(nothing)'}",
            file=where, key=f"{service}.volumes.{spec['source']}.backup",
            fix=f"say how a backup makes it consistent: {', '.join(BACKUP_MODES)} "
                "(stacks/README.md, volumes)"))
    if kind != "data" and backup:
        raise ConfigError(Problem(f"volume {spec['source']} of {service} is not data but says "
                                  "backup", file=where, key=f"{service}.volumes",
                                  fix="only data volumes are backed up: remove backup:"))
    return Volume(source=str(spec["source"]), target=str(spec["target"]),
                  kind=kind, owner=owner, mode=str(spec.get("mode", "")),
                  read_only=bool(spec.get("read_only", False)), backup=backup)


def _check(catalogue: Catalogue) -> None:
    problems: list[Problem] = []
    declared = {spec.key for stack in catalogue.stacks.values() for spec in stack.secrets}
    owner_of: dict[str, str] = {}
    for stack in catalogue.stacks.values():
        where = str(stack.directory / "stack.yaml")
        for service in stack.services:
            # Service names are DNS names on shared networks (Traefik joins them all): unique.
            if service.name in owner_of:
                problems.append(Problem(f"service name {service.name!r} is also used by stack "
                                        f"{owner_of[service.name]!r}", key=stack.name, file=where,
                                        fix="rename one (e.g. prefix it with the stack name)"))
            owner_of.setdefault(service.name, stack.name)
        for dep in stack.depends_on:
            if dep not in catalogue.stacks:
                problems.append(Problem(f"depends on unknown stack {dep!r}", key=stack.name,
                                        file=where, fix=f"use one of {catalogue.names()}"))
        names = {s.name for s in stack.services}
        for service in stack.services:
            if not service.image:
                problems.append(Problem("has no image", key=f"{stack.name}.{service.name}",
                                        file=where, fix="set image: '{{ SOME_IMAGE }}'"))
            elif wrong := check_value("ANY_IMAGE", service.image):
                # a literal pinned like an *_IMAGE setting (a setting's value was checked so)
                problems.append(Problem(f"image {wrong[0]}", key=f"{stack.name}.{service.name}",
                                        file=where, fix=wrong[1] + ", or use a *_IMAGE "
                                                                  "setting"))
            for dep in service.depends_on:
                if dep not in names:
                    problems.append(Problem(f"depends on unknown service {dep!r}",
                                            key=f"{stack.name}.{service.name}", file=where,
                                            fix=f"use one of {sorted(names)}"))
            for volume in service.volumes:
                parts = PurePosixPath(volume.source).parts
                if volume.kind == "data" and (not parts or parts[0] == "/" or ".." in parts):
                    problems.append(Problem(
                        f"data volume {volume.source!r} is not a folder inside DATA_ROOT "
                        "(its owner and mode would be changed wherever it points)",
                        key=f"{stack.name}.{service.name}", file=where,
                        fix="use a relative path without '..' (kind: host for a host path)"))
                if volume.kind == "key" and volume.owner is None:
                    problems.append(Problem(
                        f"key {volume.source} has no owner", key=f"{stack.name}.{service.name}",
                        file=where, fix="set owner: to the uid:gid the container reads it as "
                                        "(its user:, or the user in its image's contract)"))
            if service.internal and (not stack.internal_network or service.routes
                                     or service.ports or service.ingress):
                problems.append(Problem(
                    "is internal but " + ("its stack has no internal_network"
                                          if not stack.internal_network else
                                          "has routes or published ports, which an internal "
                                          "network cannot carry"),
                    key=f"{stack.name}.{service.name}", file=where,
                    fix="set internal_network: <stack>_internal on the stack, and route or "
                        "publish only services on the stack's own network"))
            for port in service.ports:
                if len(port.reason.split()) < 3:
                    problems.append(Problem(
                        f"published port {port.published} gives no reason",
                        key=f"{stack.name}.{service.name}.ports", file=where,
                        fix="add reason: who uses it and what guards it (a login, loopback "
                            "only, ...)"))
            for target, key in service.secret_files.items():
                if not target.startswith("/") or ".." in target.split("/") \
                        or key not in declared:
                    problems.append(Problem(
                        f"secret file {target} must be an absolute container path and name "
                        "a declared secret", key=f"{stack.name}.{service.name}.secret_files",
                        file=where, fix="write /run/secrets/<name>: <SECRET_KEY>"))
            for alias in service.aliases:
                if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", alias) \
                        or alias in owner_of:
                    problems.append(Problem(f"alias {alias!r} is not a free DNS label",
                                            key=f"{stack.name}.{service.name}", file=where,
                                            fix="lowercase letters, digits and dashes; not a "
                                                "service name"))
            for route in service.routes:
                if not route.port and not route.service:
                    problems.append(Problem(f"route {route.host} has no port",
                                            key=f"{stack.name}.{service.name}", file=where,
                                            fix="set port: <container port> (or service:)"))
                if route.auth not in AUTH_MODES:
                    problems.append(Problem(f"route {route.host} has auth {route.auth!r}",
                                            key=f"{stack.name}.{service.name}", file=where,
                                            fix="set auth: sso, auth: basic (user, password) "
                                                "or auth: public with a reason"))
                elif route.auth == "basic" and (
                        not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", route.user)
                        or route.password not in declared):
                    problems.append(Problem(
                        f"basic-auth route {route.host} needs a user (letters, digits, . _ -) "
                        "and a password naming a declared secret",
                        key=f"{stack.name}.{service.name}", file=where,
                        fix="set user: <name> and password: <SECRET_KEY> (declared under "
                            "secrets: of a stack)"))
                elif route.auth == "public" and not route.reason:
                    problems.append(Problem(f"public route {route.host} gives no reason",
                                            key=f"{stack.name}.{service.name}", file=where,
                                            fix="add reason: why it may bypass SSO"))
    problems += _sso_problems(catalogue, declared)
    problems += _port_clashes(catalogue)
    if problems:
        raise ConfigError(problems)
    stack_layers(catalogue, catalogue.names())  # raises on a cycle


def _port_clashes(catalogue: Catalogue) -> list[Problem]:
    """Two services publishing one host port (the second would fail to start, late)."""
    problems: list[Problem] = []
    taken: dict[tuple[int, str], list[tuple[str, str]]] = {}
    for stack in catalogue.stacks.values():
        for service in stack.services:
            for port in service.ports:
                owners = taken.setdefault((port.published, port.protocol), [])
                for other, bind in owners:
                    if bind == port.bind or "0.0.0.0" in (bind, port.bind):
                        problems.append(Problem(
                            f"publishes host port {port.published}/{port.protocol}, which "
                            f"{other} publishes too", key=f"{stack.name}.{service.name}",
                            file=str(stack.directory / "stack.yaml"),
                            fix="give one of them another port (its *_PORT setting)"))
                owners.append((f"{stack.name}.{service.name}", port.bind))
    return problems


# ---------------------------------------------------------------- derivations


def with_dependencies(catalogue: Catalogue, selected: Iterable[str]) -> list[str]:
    """``selected`` plus everything they depend on, transitively."""
    wanted: list[str] = []

    def visit(name: str) -> None:
        if name not in catalogue.stacks:
            raise ConfigError(Problem(f"unknown stack {name!r}", key="--stack",
                                      fix=f"choose from {', '.join(catalogue.names())}"))
        if name in wanted:
            return
        for dep in catalogue[name].depends_on:
            visit(dep)
        wanted.append(name)

    for name in selected:
        visit(name)
    return wanted


def stack_layers(catalogue: Catalogue, names: Iterable[str]) -> list[list[str]]:
    """Topological layers of ``names``: each layer depends only on earlier ones.

    Dependencies outside ``names`` are taken as already satisfied (``--no-deps``).
    """
    pending = {n: {d for d in catalogue[n].depends_on} for n in names}
    chosen = set(pending)
    for deps in pending.values():
        deps &= chosen
    layers: list[list[str]] = []
    while pending:
        ready = sorted(n for n, deps in pending.items() if not deps)
        if not ready:
            raise ConfigError(Problem(f"stack dependency cycle among {sorted(pending)}",
                                      fix="remove one depends_on edge"))
        layers.append(ready)
        for n in ready:
            del pending[n]
        for deps in pending.values():
            deps.difference_update(ready)
    return layers


def networks(catalogue: Catalogue) -> dict[str, list[str]]:
    """External network -> stacks attached to it (own network, extra ones, ingress)."""
    attached: dict[str, list[str]] = {}
    for stack in catalogue.stacks.values():
        own = [stack.network, *([stack.internal_network] if stack.internal_network else [])]
        for net in [*own, *(n for s in stack.services for n in s.networks)]:
            attached.setdefault(net, [])
            if stack.name not in attached[net]:
                attached[net].append(stack.name)
    for stack in catalogue.stacks.values():
        if stack.ingress:
            for routed in routed_networks(catalogue):
                attached.setdefault(routed, [])
                if stack.name not in attached[routed]:
                    attached[routed].append(stack.name)
    return attached


def internal_networks(catalogue: Catalogue) -> set[str]:
    """Networks created with ``--internal``: the stacks' backend networks."""
    return {s.internal_network for s in catalogue.stacks.values() if s.internal_network}


def routed_networks(catalogue: Catalogue) -> list[str]:
    """Networks the ingress must join: those of every stack with a routed service."""
    return sorted({s.network for s in catalogue.stacks.values() if s.routes})


def key_volumes(stack: Stack) -> list[tuple[Service, Volume]]:
    """Private files (TLS keys) the container gets its own copy of, owned by its user."""
    return [(s, v) for s in stack.services for v in s.volumes if v.kind == "key"]


def key_copy(stack: Stack, service: Service, volume: Volume) -> str:
    """Where the container's copy of a key lives, relative to DATA_ROOT."""
    return f"keys/{stack.name}/{service.name}/{Path(volume.source).name}"


def data_volumes(stack: Stack) -> list[tuple[Service, Volume]]:
    """Bind mounts under DATA_ROOT, each with the service that uses it."""
    return [(s, v) for s in stack.services for v in s.volumes if v.kind == "data"]


def all_routes(catalogue: Catalogue) -> list[tuple[Stack, Service, Route]]:
    return [(st, s, r) for st in catalogue.stacks.values() for s, r in st.routes]
