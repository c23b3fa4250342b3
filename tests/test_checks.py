"""`invoke check` verdicts, and route checks against a real TLS front (nginx + curl)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.bringup import probes
from infra.bringup.checks import RouteCheck, route_command, route_result, service_results
from infra.bringup.probes import ProbeResult
from infra.bringup.report import StatusRow
from tests.conftest import require, require_program
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
    ("sso", "302 https://auth.localhost/application/o/authorize/?client_id=x", True),
    ("sso", "302 https://auth.localhost:8443/application/o/authorize/", True),
    ("sso", "302 https://auth.localhost.evil.example/", False),
    ("sso", "302 https://svc.localhost/login", False), ("sso", "401", False),
    ("sso", "404", False), ("sso", "200", False), ("sso", "502", False),
    ("basic", "401", True), ("basic", "200", False), ("basic", "302 https://x/", False),
    ("public", "200", True), ("public", "404", True), ("public", "503", False),
    ("public", "000", False), ("public", "302 https://auth.localhost/application/o/", False),
    ("oidc", "200", True), ("oidc", "404", False),
])
def test_route_verdicts(auth: str, status: str, ok: bool) -> None:
    check = RouteCheck("s", "svc", "svc.localhost", "https://svc.localhost", auth,
                       "https://auth.localhost")
    assert route_result(check, status).ok is ok


SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"  # public CAs: none issued our certificate


@pytest.mark.tools
def test_route_checks_against_a_real_tls_front(tmp_path: Path, project_root: Path,
                                               env_dir: Path) -> None:
    """nginx serves our ingress certificate for real routed names (the default domain).

    grafana redirects to the login as forward auth does; dozzle answers 200, as it would with
    the middleware missing; plex is public.
    """
    nginx = require_program("nginx")
    require_program("curl")
    require(Path(SYSTEM_CAS).is_file(), f"{SYSTEM_CAS} (Debian's ca-certificates)")
    certs = tmp_path / "certs"
    made = subprocess.run([sys.executable, "-m", "invoke", "certs"], cwd=project_root,
                          env={**os.environ, "INFRA_ENV_DIR": str(env_dir),
                               "CERTS_DIR": str(certs)},
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    port, refusing = free_port(), free_port()
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
  # Traefik after it skipped a key it could not read: every handshake refused
  server {{ listen 127.0.0.1:{refusing} ssl; ssl_reject_handshake on; }}
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
                                  port, SYSTEM_CAS)
        answer = subprocess.run(untrusted, shell=True, capture_output=True, text=True)
        verdict = route_result(RouteCheck("s", "svc", "plex.localhost", "", "public"),
                               answer.stdout, answer.stderr)
        assert not verdict.ok and "not issued by our CA" in verdict.detail, verdict
        # a routed host answered with a certificate not issued for it (ours, for *.localhost)
        elsewhere = RouteCheck("s", "svc", "media.example.org",
                               f"https://media.example.org:{port}", "public")
        answer = subprocess.run(route_command(elsewhere, port, cacert), shell=True,
                                capture_output=True, text=True, timeout=30)
        verdict = route_result(elsewhere, answer.stdout, answer.stderr)
        assert not verdict.ok
        assert verdict.detail == "the certificate it presents was not issued for " \
                                 "media.example.org", (verdict, answer.stderr)
        # the bring-up's TLS gate (Traefik's), run by real curl against the same front
        def gate(name: str, at: int = port, timeout: int = 2) -> list[probes.ProbeResult]:
            check = probes.TlsCheck("traefik", name, at, cacert, "nginx")
            script = probes.tls_probe_script(check, timeout).replace(probes.CA_MOUNT, cacert)
            script = script.replace(f":traefik:{at}", f":127.0.0.1:{at}")
            done = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                                  timeout=60)
            return probes.parse_probe_output(done.stdout)

        assert gate("grafana.localhost") == [probes.ProbeResult("traefik", True)]
        [wrong] = gate("media.example.org")
        assert not wrong.healthy and "media.example.org" in wrong.detail, wrong
        [refused] = gate("grafana.localhost", at=refusing)
        assert not refused.healthy and "unrecognized name" in refused.detail, refused
    finally:
        server.terminate()
        server.wait(10)
