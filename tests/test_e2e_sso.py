"""`invoke check`'s SSO verdicts end to end, against a forward-auth double on a real engine.

Authentik's embedded outpost is stood in for by real nginx in a container (the NGINX_IMAGE
double), configured from OUR rendered blueprint and Authentik's contract
(tests/support/forwardauth.py); Traefik's routing, forwardAuth and basicAuth by a stand-in that
reads OUR rendered labels and dynamic file. The checks are the task's own: real curl, with our
CA, and ``infra.bringup.checks``' verdicts. What only a real Authentik can prove is in the README.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.bringup import checks
from infra.render import render_stacks
from tests.conftest import PROJECT_ROOT, require_program
from tests.support import forwardauth, images
from tests.support.registry import free_port
from tests.support.rendering import load, make_env_dir

pytestmark = pytest.mark.engine

PUBLIC = ("plex", "auth", "landing", "s3")


def _docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def sso_lab(tmp_path_factory: pytest.TempPathFactory, docker_engine: str) -> Iterator[Any]:
    require_program("curl")
    tmp = tmp_path_factory.mktemp("sso-e2e")
    port = free_port()
    env_dir = make_env_dir(tmp)
    defaults = env_dir / "defaults.env"
    defaults.write_text(defaults.read_text().replace("TRAEFIK_HTTPS_PORT=443",
                                                     f"TRAEFIK_HTTPS_PORT={port}"))
    environ = {**os.environ, "INFRA_ENV_DIR": str(env_dir), "CERTS_DIR": str(tmp / "certs")}
    made = subprocess.run([sys.executable, "-m", "invoke", "certs"], cwd=PROJECT_ROOT,
                          env=environ, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    project = load(tmp)
    assert project.config["TRAEFIK_HTTPS_PORT"] == str(port)
    results = render_stacks(project, write=False)
    dynamic = yaml.safe_load(results["traefik"].files["dynamic/stackyard.yml"])
    blueprint = forwardauth.blueprint_of(results["auth"].files)
    conf = tmp / "authentik-double.conf"
    conf.write_text(forwardauth.authentik_conf(blueprint))
    conf.chmod(0o644)
    nginx = next(s for s in images.double_specs(project) if s.kind == "nginx")
    image = images.build_double(["docker"], nginx, reference="stackyard-test/forward-auth:1")
    name = f"sy-outpost-{uuid.uuid4().hex[:8]}"
    _docker("network", "create", name)
    try:
        _docker("run", "-d", "--name", name, "--network", name, "--read-only", "--tmpfs", "/tmp",
                "--cap-drop", "ALL", "-v", f"{conf}:/etc/nginx/nginx.conf:ro",
                "--entrypoint", "nginx", image, "-c", "/etc/nginx/nginx.conf")
        address = _docker("inspect", "--format",
                          f'{{{{(index .NetworkSettings.Networks "{name}").IPAddress}}}}',
                          name).strip()
        for _ in range(50):
            ping = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                   f"http://{address}:9000/outpost.goauthentik.io/ping"],
                                  capture_output=True, text=True)
            if ping.stdout == "204":
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the forward-auth double does not answer: "
                                 f"{_docker('logs', name)}")
        compose = {n: r.files["compose.yaml"] for n, r in results.items()}
        outpost = dynamic["http"]["services"]["authentik-outpost"]["loadBalancer"]["servers"]
        ingress = forwardauth.Ingress(forwardauth.routers(compose, dynamic),
                                      dynamic["http"]["middlewares"],
                                      {"authentik-server": address}, outpost[0]["url"])
        certs = tmp / "certs"
        with forwardauth.serve(ingress, str(certs / "ingress-fullchain.pem"),
                               str(certs / "ingress-key.pem"), port):
            yield project, ingress, port, str(certs / "ca.pem"), name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "network", "rm", name], capture_output=True)


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True,
                          text=True, timeout=30)


def test_check_passes_every_route_and_oidc_client(sso_lab: Any) -> None:
    project, _, port, cacert, _ = sso_lab
    catalogue = project.catalogue
    planned = checks.route_checks(catalogue, catalogue.names(), port, project.config["DOMAIN"])
    verdicts = []
    for check in planned:
        answer = subprocess.run(checks.route_command(check, port, cacert), shell=True,
                                capture_output=True, text=True, timeout=30)
        verdicts.append(checks.route_result(check, answer.stdout, answer.stderr))
    failed = [v for v in verdicts if not v.ok]
    assert not failed, failed
    modes = {c.auth for c in planned}
    assert modes == {"sso", "public", "basic", "oidc"}  # every kind was checked
    assert all("redirects to the login" in v.detail
               for v, c in zip(verdicts, planned, strict=True) if c.auth == "sso")


def test_anonymous_is_sent_to_the_login_and_the_session_gets_the_app_with_the_user(
        sso_lab: Any) -> None:
    _, ingress, port, cacert, _ = sso_lab
    resolve = ["--resolve", f"grafana.localhost:{port}:127.0.0.1",
               "--resolve", f"auth.localhost:{port}:127.0.0.1", "--cacert", cacert]
    anonymous = _curl(*resolve, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                      f"https://grafana.localhost:{port}/")
    code, location = anonymous.stdout.split(" ", 1)
    assert code == "302"
    assert location.startswith(f"https://auth.localhost:{port}/application/o/authorize/")
    assert f"redirect_uri=https://grafana.localhost:{port}/outpost.goauthentik.io/callback" \
        in location
    # a browser follows: the login, the callback on the app's host (the session cookie), the app
    jar = Path(cacert).parent / "jar.txt"
    browser = _curl(*resolve, "-L", "-c", str(jar), "-b", str(jar),
                    f"https://grafana.localhost:{port}/")
    assert browser.stdout.strip() == "app grafana user=akadmin", browser.stdout + browser.stderr
    # and with the session cookie alone, straight to the app, the user header with it
    again = _curl(*resolve, "-b", str(jar), f"https://grafana.localhost:{port}/")
    assert again.stdout.strip() == "app grafana user=akadmin", again.stdout + again.stderr
    assert "grafana:akadmin" in ingress.seen_users


def test_public_and_basic_routes_never_ask_the_outpost(sso_lab: Any) -> None:
    project, _, port, cacert, name = sso_lab
    def asked(after: int) -> set[str]:
        lines = _docker("logs", name).splitlines()[after:]
        return {line.split()[1].removeprefix("host=").split(":")[0] for line in lines
                if line.startswith("forward-auth host=")}

    since = len(_docker("logs", name).splitlines())
    for host in ("plex.localhost", "localhost", "registry.localhost"):
        path = "/v2/" if host.startswith("registry") else "/"
        _curl("--resolve", f"{host}:{port}:127.0.0.1", "--cacert", cacert, "-o", "/dev/null",
              f"https://{host}:{port}{path}")
    assert not asked(since)  # three requests, none of them through forward auth
    _curl("--resolve", f"dozzle.localhost:{port}:127.0.0.1", "--cacert", cacert, "-o",
          "/dev/null", f"https://dozzle.localhost:{port}/")
    assert asked(since) == {"dozzle.localhost"}  # which it would have shown
    # and the registry's API takes the pull login, and only it
    user = project.config["REGISTRY_PULL_USER"]
    password = project.config.secrets["REGISTRY_PULL_PASSWORD"]
    base = ["--resolve", f"registry.localhost:{port}:127.0.0.1", "--cacert", cacert,
            "-o", "/dev/null", "-w", "%{http_code}", f"https://registry.localhost:{port}/v2/"]
    assert _curl(*base).stdout == "401"
    assert _curl("-u", f"{user}:wrong-{password}", *base).stdout == "401"
    assert _curl("-u", f"{user}:{password}", *base).stdout == "200"


def test_a_missing_middleware_and_an_unknown_host_fail_the_check(sso_lab: Any) -> None:
    project, ingress, port, cacert, _ = sso_lab
    domain = project.config["DOMAIN"]
    dozzle = next(r for r in ingress.routers if r.name == "dozzle")
    # s3.localhost (in the certificate) put behind forward auth, which the blueprint never
    # gave a provider: the outpost answers 404; and dozzle's router without its middleware
    unknown = forwardauth.Router("unknown", ("s3.localhost",), "", (), 10_000,
                                 dozzle.middlewares, "unknown")
    bare = forwardauth.Router("bare", ("dozzle.localhost",), "", (), 10_000, (), "bare")
    ingress.routers[:0] = [unknown, bare]
    try:
        for host, why in (("s3.localhost", "Authentik does not know this host"),
                          ("dozzle.localhost", "SSO middleware is not applied")):
            check = checks.RouteCheck("x", host.split(".")[0], host,
                                      f"https://{host}:{port}", "sso",
                                      f"https://auth.{domain}:{port}")
            answer = subprocess.run(checks.route_command(check, port, cacert), shell=True,
                                    capture_output=True, text=True, timeout=30)
            verdict = checks.route_result(check, answer.stdout, answer.stderr)
            assert not verdict.ok and why in verdict.detail, verdict
    finally:
        del ingress.routers[:2]
    # a discovery document for a client Authentik does not have
    missing = checks.RouteCheck("auth", "nobody", "auth.localhost",
                                f"https://auth.localhost:{port}", checks.DISCOVERY, "",
                                "/application/o/nobody/.well-known/openid-configuration")
    answer = subprocess.run(checks.route_command(missing, port, cacert), shell=True,
                            capture_output=True, text=True, timeout=30)
    assert not checks.route_result(missing, answer.stdout).ok
    body = _curl("--resolve", f"auth.localhost:{port}:127.0.0.1", "--cacert", cacert,
                 f"https://auth.localhost:{port}/application/o/grafana/.well-known/"
                 "openid-configuration")
    assert json.loads(body.stdout)["issuer"] == \
        f"https://auth.localhost:{port}/application/o/grafana/"
