"""`invoke check` verdicts, and route checks against a real TLS front (nginx + curl)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.bringup.probes import ProbeResult
from infra.bringup.report import StatusRow
from infra.checks import RouteCheck, route_command, route_result, service_results
from tests.conftest import require_program
from tests.support.registry import free_port


def row(service: str, state: str = "running", health: str = "") -> StatusRow:
    return StatusRow("s", service, state, health, "", "")


@pytest.mark.unit
def test_service_verdicts() -> None:
    results = service_results(
        [row("a", health="healthy"), row("b", health="unhealthy"), row("c", "exited"),
         row("d", "done (0)"), row("e", "done (1)"), row("f"), row("g")],
        [ProbeResult("f", True), ProbeResult("g", False, "http://g:80/ready: refused")])
    verdict = {r.subject: r.ok for r in results}
    assert verdict == {"a": True, "b": False, "c": False, "d": True, "e": False, "f": True,
                       "g": False}
    assert "refused" in next(r.detail for r in results if r.subject == "g")


@pytest.mark.unit
@pytest.mark.parametrize(("auth", "status", "ok"), [
    ("sso", "302", True), ("sso", "401", True), ("sso", "200", False), ("sso", "502", False),
    ("public", "200", True), ("public", "404", True), ("public", "503", False),
    ("public", "000", False),
])
def test_route_verdicts(auth: str, status: str, ok: bool) -> None:
    check = RouteCheck("s", "svc", "svc.localhost", "https://svc.localhost", auth)
    assert route_result(check, status).ok is ok


@pytest.mark.tools
def test_route_checks_against_a_real_tls_front(tmp_path: Path, project_root: Path,
                                               env_dir: Path) -> None:
    """nginx serves our ingress certificate for real routed names (the default domain).

    grafana redirects to the login as forward auth does; dozzle answers 200, as it would with
    the middleware missing; plex is public.
    """
    nginx = require_program("nginx")
    require_program("curl")
    certs = tmp_path / "certs"
    made = subprocess.run([sys.executable, "-m", "invoke", "certs"], cwd=project_root,
                          env={**os.environ, "INFRA_ENV_DIR": str(env_dir),
                               "CERTS_DIR": str(certs)},
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    port = free_port()
    conf = tmp_path / "nginx.conf"
    ssl = (f"listen 127.0.0.1:{port} ssl; ssl_certificate {certs}/ingress-fullchain.pem; "
           f"ssl_certificate_key {certs}/ingress-key.pem;")
    conf.write_text(f"""
pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; daemon off;
events {{}}
http {{
  access_log off; client_body_temp_path {tmp_path}; proxy_temp_path {tmp_path};
  fastcgi_temp_path {tmp_path}; uwsgi_temp_path {tmp_path}; scgi_temp_path {tmp_path};
  server {{ {ssl} server_name grafana.localhost;
    return 302 https://auth.localhost/outpost.goauthentik.io/start; }}
  server {{ {ssl} server_name dozzle.localhost plex.localhost; return 200 "no auth here"; }}
}}
""")
    server = subprocess.Popen([nginx, "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        for _ in range(50):
            if (tmp_path / "nginx.pid").exists():
                break
            time.sleep(0.1)
        cacert = str(certs / "ca.pem")
        verdicts = {}
        for host, auth in [("grafana.localhost", "sso"), ("dozzle.localhost", "sso"),
                           ("plex.localhost", "public")]:
            check = RouteCheck("s", "svc", host, f"https://{host}:{port}", auth)
            answer = subprocess.run(route_command(check, port, cacert), shell=True,
                                    capture_output=True, text=True, timeout=30)
            verdicts[(host, auth)] = route_result(check, answer.stdout)
        assert verdicts[("grafana.localhost", "sso")].ok, verdicts
        assert not verdicts[("dozzle.localhost", "sso")].ok  # 200 without login: bypass
        assert "SSO middleware" in verdicts[("dozzle.localhost", "sso")].detail
        assert verdicts[("plex.localhost", "public")].ok
        # and a certificate we do not trust is a failure, not a pass
        untrusted = route_command(RouteCheck("s", "svc", "plex.localhost",
                                             f"https://plex.localhost:{port}", "public"),
                                  port, shutil.which("true") or "/bin/true")
        answer = subprocess.run(untrusted, shell=True, capture_output=True, text=True)
        assert not route_result(RouteCheck("s", "svc", "plex.localhost", "", "public"),
                                answer.stdout).ok
    finally:
        server.terminate()
        server.wait(10)
