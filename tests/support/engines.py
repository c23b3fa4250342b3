"""A private rootful Docker engine in its own network namespace, for end-to-end tests.

The stacks use fixed names (projects traefik, auth, ...; networks traefik_default, ...) and
host ports (80, 443, 5000, ...). On the shared engine they would collide with other users of
it; a private engine in a private network namespace gives them a world of their own. The
engine's data root is kept across runs (images pulled through the mirror stay cached); every
container and network is removed in teardown.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import users


@dataclass(frozen=True)
class Engine:
    name: str
    host: str  # DOCKER_HOST value
    netns_path: str
    rootless: bool = False
    user: str = ""  # the rootless engine's user

    @property
    def cli(self) -> list[str]:
        return ["docker", "-H", self.host]

    @property
    def environ(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host}


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


@contextlib.contextmanager
def private_engine(name: str, data_root: Path, workdir: Path) -> Iterator[Engine]:
    netns = f"sy-{name}"
    netns_path = f"/var/run/netns/{netns}"
    socket_path = f"/run/sy-{name}-docker.sock"
    _sh("ip", "netns", "del", netns, check=False)  # leftover of an interrupted run
    _sh("ip", "netns", "add", netns)
    _sh("ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "daemon.json"
    config.write_text(json.dumps({"log-driver": "json-file"}))
    log = (workdir / "dockerd.log").open("wb")
    process = subprocess.Popen(  # nsenter, not `ip netns exec`: that remounts /sys
        ["nsenter", f"--net={netns_path}", "dockerd", "--data-root", str(data_root),
         "--exec-root", f"/run/sy-{name}-exec", "--pidfile", f"/run/sy-{name}-docker.pid",
         "-H", f"unix://{socket_path}", "--config-file", str(config)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    engine = Engine(name, f"unix://{socket_path}", netns_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"private dockerd exited; see {log.name}")
            if _sh(*engine.cli, "version", check=False).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("private dockerd did not answer")
            time.sleep(0.2)
        clean_engine(engine)
        yield engine
    finally:
        with contextlib.suppress(Exception):
            clean_engine(engine)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()
        _sh("ip", "netns", "del", netns, check=False)


def clean_engine(engine: Engine) -> None:
    """Remove every container and user network (images stay cached)."""
    ids = _sh(*engine.cli, "ps", "-aq", check=False).stdout.split()
    if ids:
        _sh(*engine.cli, "rm", "-f", "-v", *ids, check=False)
    _sh(*engine.cli, "network", "prune", "-f", check=False)
    _sh(*engine.cli, "volume", "prune", "-f", check=False)


@contextlib.contextmanager
def rootless_engine(name: str, env_dir: Path) -> Iterator[Engine]:
    """A throwaway user running dockerd-rootless.sh, started by the project's host.rootless task.

    Everything the user runs was started here: teardown stops those processes by pid and
    deletes the user (and with it its subordinate ID ranges and its image store).
    """
    import os
    import uuid

    from invoke import Context

    from infra.host import rootless as rl
    from tasks.host import rootless as start_rootless

    os.chmod("/dev/net/tun", 0o666)  # 0600 here; slirp4netns (run as the user) needs it
    user = f"sy{uuid.uuid4().hex[:8]}"
    _sh("useradd", "-m", "-s", "/bin/bash", user)
    uid = int(_sh("id", "-u", user).stdout)
    saved = os.environ.get("INFRA_ENV_DIR")
    try:
        os.environ["INFRA_ENV_DIR"] = str(env_dir)
        try:
            start_rootless(Context(), user=user)
        finally:
            if saved is None:
                os.environ.pop("INFRA_ENV_DIR", None)
            else:
                os.environ["INFRA_ENV_DIR"] = saved
        facts = rl.gather(Context(), user)
        engine = Engine(name, f"unix://{facts.socket}", "", rootless=True, user=user)
        deadline = time.monotonic() + 60
        while _sh(*engine.cli, "info", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError("the rootless engine did not answer")
            time.sleep(0.3)
        yield engine
    finally:
        users.remove_user(user, uid)


def subordinate_start(user_or_uid: str, path: str = "/etc/subuid") -> int:
    """First host UID of the user's subordinate range (container UID N>0 -> start + N - 1)."""
    import pwd

    name = user_or_uid if not user_or_uid.isdigit() else pwd.getpwuid(int(user_or_uid)).pw_name
    for line in Path(path).read_text().splitlines():
        owner, start, _ = line.split(":")
        if owner == name:
            return int(start)
    raise LookupError(f"{name} has no range in {path}")
