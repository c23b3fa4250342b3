"""The bring-up as most operators really run it: a login that is not root, in the `docker`
group, on a rootful engine (ROOTLESS=false).

Root hides permission defects: `invoke certs` run by such a user writes its keys 0600 and owned
by that user, and a container whose process is another uid (Zot's 65532), or uid 0 with every
capability dropped (Traefik), cannot read them. The doubles read every mounted file as their
image's user with the service's capabilities, so a key mounted as the operator's file stops
Traefik here exactly as it would on such a machine.

The user's Python: Debian's interpreter with a readable copy of the project's packages (root's
interpreter lives under /root, which others cannot enter) and a copy of the checkout.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require, require_program
from tests.support import e2e, users

pytestmark = pytest.mark.engine


@dataclass
class Operator:
    lab: e2e.Lab
    login: users.Login

    @property
    def name(self) -> str:
        return self.login.name

    def invoke(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.login.command(self.lab.environ, *args),
                              cwd=self.login.checkout, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)


@pytest.fixture(scope="module")
def operator(docker_engine: str) -> Iterator[Operator]:
    require(os.geteuid() == 0, "root (to create a throwaway user and a private engine)")
    for program in ("useradd", "runuser", "docker-registry", "nsenter", "ip", "dockerd"):
        require_program(program)
    require(Path(users.SYSTEM_PYTHON).exists(), f"{users.SYSTEM_PYTHON} (its interpreter)")
    docker_gid = grp.getgrnam("docker").gr_gid
    name = f"syop{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-m", "-G", "docker", "-s", "/bin/sh", name], check=True,
                   capture_output=True)
    user = pwd.getpwnam(name)
    workdir = Path(tempfile.mkdtemp(prefix="sy-operator-", dir="/var/tmp"))
    workdir.chmod(0o755)
    try:
        with e2e.lab(workdir, name="operator") as lab:
            # the engine's socket as a packaged engine makes it: root:docker 0660
            socket_path = lab.engine.host.removeprefix("unix://")
            os.chown(socket_path, 0, docker_gid)
            os.chmod(socket_path, 0o660)
            # everything the operator works with is the operator's (the lab made it as root)
            login = users.prepare_login(name, workdir / "login", e2e.PROJECT_ROOT, owned=[
                workdir / d for d in ("env", "data", "build", "certs")])
            yield Operator(lab, login)
    finally:
        users.remove_user(name, user.pw_uid)
        shutil.rmtree(workdir, ignore_errors=True)


def test_the_operator_is_not_root_and_reaches_the_engine(operator: Operator) -> None:
    whoami = subprocess.run(["runuser", "-u", operator.name, "--", "id", "-u"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert whoami != "0"
    listed = operator.invoke("--list")
    assert listed.returncode == 0 and "up" in listed.stdout, listed.stderr


def test_certs_then_up_as_the_operator_bring_every_stack_up(operator: Operator) -> None:
    certs = operator.invoke("certs")
    assert certs.returncode == 0, certs.stdout[-3000:] + certs.stderr[-3000:]
    key = operator.lab.workdir / "certs" / "ingress-key.pem"
    owner = pwd.getpwnam(operator.name).pw_uid
    assert key.stat().st_uid == owner and key.stat().st_mode & 0o777 == 0o600
    begin = time.monotonic()
    up = operator.invoke("up")
    operator.lab.timings["operator up"] = time.monotonic() - begin
    e2e.assert_all_healthy(operator.lab, up)
    # Traefik read its own copy: root's (the uid it runs as), 0400
    copy = operator.lab.workdir / "data" / "keys" / "traefik" / "traefik" / "ingress-key.pem"
    info = copy.stat()
    assert (info.st_uid, info.st_mode & 0o777) == (0, 0o400)
    assert copy.read_bytes() == key.read_bytes()
    logs = operator.lab.docker("logs", "traefik-traefik-1")
    assert "FATAL" not in logs


def test_a_second_up_as_the_operator_empty(operator: Operator) -> None:
    again = operator.invoke("up")
    assert again.returncode == 0 and "up to date" in again.stdout, again.stdout + again.stderr
