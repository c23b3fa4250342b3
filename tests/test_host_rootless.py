"""host.rootless against this machine: a throwaway user gets a working rootless engine."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from invoke import Context

from infra.host import rootless as rl
from tests.conftest import require, require_program
from tests.support import users

pytestmark = pytest.mark.engine


@pytest.fixture
def throwaway_user() -> Iterator[str]:
    require(os.geteuid() == 0, "root (to create a user)")
    for program in ("useradd", "rootlesskit", "slirp4netns", "newuidmap", "dockerd"):
        require_program(program)
    require(Path("/dev/net/tun").exists(), "/dev/net/tun")
    os.chmod("/dev/net/tun", 0o666)  # 0600 here; slirp4netns (run as the user) needs it
    name = f"rl{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
    uid = int(subprocess.run(["id", "-u", name], capture_output=True, text=True).stdout)
    try:
        yield name
    finally:
        # every process of this user was started by the test (the user is new): stop them by pid
        users.remove_user(name, uid, grace=10.0)
        for path in ("/etc/subuid", "/etc/subgid"):  # useradd added ranges; userdel removes them
            assert name not in Path(path).read_text()


def test_rootless_engine_for_a_new_user(throwaway_user: str, env_dir: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from tasks.host import rootless

    monkeypatch.setenv("INFRA_ENV_DIR", str(env_dir))
    rootless(Context(), user=throwaway_user)
    first = capsys.readouterr().out
    facts = rl.gather(Context(), throwaway_user)
    assert "NOT supervised" in first or facts.systemd

    info = subprocess.run(["docker", "-H", f"unix://{facts.socket}", "info", "--format",
                           "{{json .SecurityOptions}}"], capture_output=True, text=True,
                          timeout=30)
    assert info.returncode == 0, info.stderr
    assert "name=rootless" in info.stdout
    profile = Path(facts.user.home, ".bashrc").read_text()
    for line in rl.profile_lines(facts):
        assert profile.count(line + "\n") == 1

    rootless(Context(), user=throwaway_user)
    second = capsys.readouterr().out
    assert "nothing to do" in second
    assert rl.plan_rootless(rl.gather(Context(), throwaway_user)).empty
    assert Path(facts.user.home, ".bashrc").read_text() == profile
