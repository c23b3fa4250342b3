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


def test_rootless_engine_runs_with_the_daemon_json_the_task_writes(
        throwaway_user: str, env_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dockerd-rootless.sh starts with the file the task writes for it: no-new-privileges on,
    and neither userland-proxy (rootlesskit publishes ports through it) nor live-restore (the
    containers stop with rootlesskit)."""
    import json

    from tasks.docker import daemon_json
    from tasks.host import rootless
    from tests.support import images

    monkeypatch.setenv("INFRA_ENV_DIR", str(env_dir))
    monkeypatch.setenv("ROOTLESS", "true")
    rootless(Context(), user=throwaway_user)
    facts = rl.gather(Context(), throwaway_user)
    # stop it as a restart would, until dockerd is gone (it removes its pid file last)
    pidfile = Path(facts.socket).with_name("docker.pid")
    stop = (f"pkill -u {throwaway_user} -f rootlesskit; i=0; "
            f"while [ -e {pidfile} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done")
    daemon_json(Context(), user=throwaway_user, restart_command=stop)
    written = json.loads(Path(facts.user.home, ".config/docker/daemon.json").read_text())
    assert written["no-new-privileges"] is True
    assert "userland-proxy" not in written and "live-restore" not in written
    assert not pidfile.exists() and not rl.gather(Context(), throwaway_user).daemon_rootless
    rootless(Context(), user=throwaway_user)  # starts it again, with the new file
    cli = ["docker", "-H", f"unix://{facts.socket}"]
    info = json.loads(subprocess.run([*cli, "info", "--format", "{{json .}}"],
                                     capture_output=True, text=True, timeout=30).stdout)
    assert "name=rootless" in info["SecurityOptions"]
    base = images.ensure_busybox_base(cli)
    status = subprocess.run([*cli, "run", "--rm", "--network", "none", base, "cat",
                             "/proc/self/status"], capture_output=True, text=True, timeout=60)
    assert "NoNewPrivs:\t1" in status.stdout, status.stderr
