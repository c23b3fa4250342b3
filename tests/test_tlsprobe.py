"""certs.test-tls against real `openssl s_server` endpoints, one strict and one permissive."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from infra import tlsprobe
from infra.errors import InfraError
from tests.conftest import PROJECT_ROOT, require_program

pytestmark = pytest.mark.tools

INVOKE = str(Path(sys.executable).parent / "invoke")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A PKI made by `invoke certs` (the task layer, as a user runs it)."""
    require_program("cfssl")
    require_program("openssl")
    tmp = tmp_path_factory.mktemp("tls")
    (tmp / "env").mkdir()
    shutil.copy(PROJECT_ROOT / "env" / "defaults.env", tmp / "env" / "defaults.env")
    env = {**os.environ, "INFRA_ENV_DIR": str(tmp / "env"), "CERTS_DIR": str(tmp / "certs")}
    subprocess.run([INVOKE, "certs"], cwd=PROJECT_ROOT, env=env, check=True,
                   capture_output=True, text=True)
    return tmp / "certs"


def start_server(certs: Path, *tls_options: str):
    port = free_port()
    process = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-www", "-quiet",
         "-cert", str(certs / "registry-server.pem"),
         "-key", str(certs / "registry-server-key.pem"),
         "-cert_chain", str(certs / "intermediate_ca.pem"), *tls_options],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"openssl s_server exited with {process.returncode}") from None
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("openssl s_server did not start listening")


@pytest.fixture(scope="module")
def strict(certs):
    process, port = start_server(certs, "-min_protocol", "TLSv1.2")
    yield port
    process.kill()
    process.wait()


@pytest.fixture(scope="module")
def permissive(certs):
    process, port = start_server(certs, "-min_protocol", "TLSv1", "-cipher", "ALL:@SECLEVEL=0")
    yield port
    process.kill()
    process.wait()


def test_strict_server_passes(certs, strict):
    report = tlsprobe.probe_tls("127.0.0.1", strict, str(certs / "ca.pem"))
    assert report.verified, report.verify_error
    assert report.protocol in {"TLSv1.2", "TLSv1.3"} and report.cipher
    assert [(r.version, r.refused) for r in report.legacy] == [("TLSv1.0", True),
                                                                 ("TLSv1.1", True)]
    assert report.ok


def test_permissive_server_is_caught(certs, permissive):
    report = tlsprobe.probe_tls("127.0.0.1", permissive, str(certs / "ca.pem"))
    assert report.verified  # the chain is fine: only the protocol floor is wrong
    assert [(r.version, r.refused) for r in report.legacy] == [("TLSv1.0", False),
                                                                 ("TLSv1.1", False)]
    assert "accepted: TLSv1" in report.legacy[0].detail
    assert not report.ok


def test_a_default_client_would_have_passed_the_permissive_server(permissive):
    """Why the probe lowers its own security level: this client refuses TLS 1.1 by itself."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", permissive)) as raw, \
            context.wrap_socket(raw, server_hostname="localhost"):
        pass


def test_wrong_name_and_unknown_ca_fail_verification(certs, strict, tmp_path):
    wrong = tlsprobe.probe_tls("127.0.0.1", strict, str(certs / "ca.pem"), "other.example")
    assert not wrong.verified and "mismatch" in wrong.verify_error.lower()
    assert wrong.protocol  # what was negotiated is still reported
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(tmp_path / "k.pem"),
                    "-subj", "/CN=other", "-days", "1", "-out", str(tmp_path / "other.pem")],
                   check=True, capture_output=True)
    stranger = tlsprobe.probe_tls("127.0.0.1", strict, str(tmp_path / "other.pem"))
    assert not stranger.verified and not stranger.ok


def test_unreachable_endpoint_is_an_error_not_a_pass(certs):
    with pytest.raises(tlsprobe.TlsProbeError, match="cannot connect"):
        tlsprobe.probe_tls("127.0.0.1", free_port(), str(certs / "ca.pem"), timeout=2)


def test_target_parsing():
    assert tlsprobe.parse_target("registry.localhost:5000") == ("registry.localhost", 5000)
    assert tlsprobe.parse_target("[::1]:443") == ("::1", 443)
    with pytest.raises(InfraError, match="HOST:PORT"):
        tlsprobe.parse_target("registry.localhost")


def run_task(certs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INFRA_ENV_DIR": str(certs.parent / "env"), "CERTS_DIR": str(certs),
           "COLUMNS": "200"}
    return subprocess.run([INVOKE, "certs.test-tls", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_task_reports_both_outcomes(certs, strict, permissive):
    good = run_task(certs, f"127.0.0.1:{strict}")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "chain valid for 127.0.0.1" in good.stdout
    assert "negotiated TLSv1.3" in good.stdout
    assert "TLSv1.0: refused" in good.stdout and "TLSv1.1: refused" in good.stdout

    bad = run_task(certs, f"127.0.0.1:{permissive}")
    assert bad.returncode == 1
    assert "FAIL TLSv1.0: accepted" in bad.stdout and "FAIL TLSv1.1: accepted" in bad.stdout
    assert "failed the TLS check" in bad.stderr
