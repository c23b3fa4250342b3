"""The certs tasks end to end, as a user runs them: `invoke certs...` in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.fsutil import LOCK_FILE
from tests.conftest import PROJECT_ROOT, require_program

pytestmark = pytest.mark.tools

INVOKE = str(Path(sys.executable).parent / "invoke")


class Project:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.certs = tmp / "certs"
        self.home = tmp / "home"
        (tmp / "env").mkdir()
        shutil.copy(PROJECT_ROOT / "env" / "defaults.env", tmp / "env" / "defaults.env")

    def invoke(self, *args: str, path: str | None = None,
               **env: str) -> subprocess.CompletedProcess[str]:
        environ = {**os.environ, "INFRA_ENV_DIR": str(self.tmp / "env"),
                   "CERTS_DIR": str(self.certs), "HOME": str(self.home), "COLUMNS": "200",
                   **env}
        if path is not None:
            environ["PATH"] = path
        return subprocess.run([INVOKE, *args], cwd=PROJECT_ROOT, env=environ,
                              capture_output=True, text=True, timeout=120)


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


@pytest.fixture
def project(tmp_path) -> Project:
    require_program("cfssl")
    require_program("cfssljson")
    require_program("openssl")
    return Project(tmp_path)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_certs_twice_then_verify(project):
    first = ok(project.invoke("certs"))
    assert "create root (missing)" in first and "create ingress" in first
    before = snapshot(project.certs)
    assert len(before) == 6 * 3 + 5 + 5  # cert/key/csr x6, chains, rendered cfssl JSON
    second = ok(project.invoke("certs"))
    assert "nothing to do" in second
    assert snapshot(project.certs) == before
    assert not list(project.certs.glob(".work-*"))
    verified = ok(project.invoke("certs.verify"))
    assert verified.count("ok  ") == 11
    chain = project.certs / "registry-server-fullchain.pem"
    content = chain.read_bytes()
    chain.unlink()
    assert "1 chain file(s) written" in ok(project.invoke("certs.chain"))
    assert chain.read_bytes() == content


def test_verify_fails_on_a_loose_key(project):
    ok(project.invoke("certs"))
    key = project.certs / "registry-server-key.pem"
    key.chmod(0o644)
    result = project.invoke("certs.verify")
    assert result.returncode == 1
    assert "registry-server-key.pem has mode 0644" in result.stdout and "chmod 600" in result.stdout
    # and certs, which said "nothing to do" over it, puts it right (verify agrees afterwards)
    fixed = ok(project.invoke("certs"))
    assert "registry-server-key.pem readable by its owner only" in fixed
    assert key.stat().st_mode & 0o777 == 0o600
    ok(project.invoke("certs.verify"))


def test_a_garbage_key_is_refused_not_passed_over(project):
    ok(project.invoke("certs"))
    (project.certs / "ca-key.pem").write_text("not a key\n")
    result = project.invoke("certs")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "ca-key.pem is not a readable private key" in result.stderr
    assert "certs.ca --replace" in result.stderr


def test_missing_cfssl_writes_nothing_and_says_how_to_install(project, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "openssl").symlink_to(require_program("openssl"))
    result = project.invoke("certs", path=str(bin_dir))
    assert result.returncode == 3
    assert "'cfssl' was not found" in result.stderr and "apt-get install golang-cfssl" in \
        result.stderr
    assert not project.certs.exists()
    (bin_dir / "cfssl").symlink_to(require_program("cfssl"))
    result = project.invoke("certs", path=str(bin_dir))
    assert result.returncode == 3 and "'cfssljson' was not found" in result.stderr
    assert not project.certs.exists()


def test_bad_key_settings_are_a_config_error(project):
    result = project.invoke("certs", CA_KEY_ALGO="ecdsa", CA_KEY_SIZE="2048")
    assert result.returncode == 2
    assert "CA_KEY_SIZE" in result.stderr and "256, 384, 521" in result.stderr
    assert not project.certs.exists()


def test_step_tasks_and_explicit_ca_replacement(project):
    ok(project.invoke("certs.ca"))
    assert sorted(p.name for p in project.certs.glob("*.pem")) == ["ca-key.pem", "ca.pem"]
    ok(project.invoke("certs.intermediate"))
    ok(project.invoke("certs.registry"))
    assert (project.certs / "registry-peer.pem").exists()
    assert not (project.certs / "ingress.pem").exists()  # not the registry's
    root = (project.certs / "ca.pem").read_bytes()

    kept = ok(project.invoke("certs.ca"))
    assert "keep root" in kept and (project.certs / "ca.pem").read_bytes() == root
    dry = ok(project.invoke("certs.ca", "--replace", "--dry"))
    assert "would replace root" in dry and (project.certs / "ca.pem").read_bytes() == root
    replaced = ok(project.invoke("certs.ca", "--replace"))
    assert "breaks every certificate issued under the old one" in replaced
    assert "certs.trust" in replaced
    assert (project.certs / "ca.pem").read_bytes() != root
    ok(project.invoke("certs"))  # the ingress certificate, still missing
    ok(project.invoke("certs.verify"))


def test_renew_force_reissues_leaves_not_cas(project):
    ok(project.invoke("certs"))
    cas = [(project.certs / n).read_bytes() for n in ("ca.pem", "intermediate_ca.pem")]
    leaf = (project.certs / "ingress.pem").read_bytes()
    assert "nothing to do" in ok(project.invoke("certs.renew"))  # a year left, 30-day window
    assert "reissue ingress (expires in 365 days)" in ok(project.invoke("certs.renew",
                                                                        "--days", "400"))
    assert (project.certs / "ingress.pem").read_bytes() != leaf
    forced = ok(project.invoke("certs.renew", "--force"))
    assert forced.count("  reissue ") == 4
    assert [(project.certs / n).read_bytes() for n in ("ca.pem", "intermediate_ca.pem")] == cas
    ok(project.invoke("certs.verify"))


def test_trust_installs_the_root_for_docker_idempotently(project, tmp_path):
    ok(project.invoke("certs"))
    root = (project.certs / "ca.pem").read_text()
    out = ok(project.invoke("certs.trust", "--mode", "rootless"))
    target = project.home / ".config/docker/certs.d/registry.localhost:5000/ca.crt"
    assert f"wrote {target}" in out
    assert target.read_text() == root and target.stat().st_mode & 0o777 == 0o644
    installed = sorted(p.parent.name for p in (project.home / ".config/docker/certs.d").glob(
        "*/ca.crt"))
    assert installed == ["127.0.0.1:5000", "localhost:5000", "registry.localhost",
                         "registry.localhost:5000", "registry:5000"]
    before = snapshot(project.home)
    again = ok(project.invoke("certs.trust", "--mode", "rootless"))
    assert "wrote" not in again and again.count("unchanged") == 5
    assert snapshot(project.home) == before

    rootful_dir = tmp_path / "etc-docker-certs.d"
    ok(project.invoke("certs.trust", "--mode", "rootful", "--certs-d", str(rootful_dir),
                      "--registry", "zot.lan:5000"))
    assert (rootful_dir / "zot.lan:5000" / "ca.crt").read_text() == root

    # The root key never leaves CERTS_DIR.
    root_key = (project.certs / "ca-key.pem").read_bytes()
    holders = [p for p in tmp_path.rglob("*") if p.is_file() and root_key in p.read_bytes()]
    assert holders == [project.certs / "ca-key.pem"]


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_certs_interrupted_mid_issue_stops_at_once_and_the_same_command_converges(
        project, signame):
    """The signal arrives once the first certificate is being made (its line printed): out
    at once with 130 (SIGINT) or 143 (SIGTERM), the steps done, cut off and never started,
    and no traceback; `certs` again then finishes with one CA, and `certs.verify` passes."""
    import selectors
    import signal
    import time

    environ = {**os.environ, "INFRA_ENV_DIR": str(project.tmp / "env"),
               "CERTS_DIR": str(project.certs), "HOME": str(project.home),
               "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    run = subprocess.Popen([INVOKE, "certs"], cwd=PROJECT_ROOT, env=environ, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           start_new_session=True)
    assert run.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(run.stdout, selectors.EVENT_READ)
    seen = ""
    while "create root" not in seen and selector.select(timeout=30):
        seen += run.stdout.readline()
    assert "create root" in seen, seen
    begin = time.monotonic()
    os.killpg(run.pid, getattr(signal, signame))
    out, err = run.communicate(timeout=30)
    took = time.monotonic() - begin
    assert run.returncode == {"SIGINT": 130, "SIGTERM": 143}[signame], out + err
    assert took < 2.0, took
    said = seen + out + err
    assert f"interrupted ({signame})" in said and "Traceback" not in said, said
    assert "never started:" in said and "invoke certs" in said
    again = ok(project.invoke("certs"))
    assert "Traceback" not in again
    assert ok(project.invoke("certs.verify")).count("ok  ") == 11
    assert not list(project.certs.glob(".work-*"))
