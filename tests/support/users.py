"""Throwaway login users for the rootless tests: stop what they started, then delete them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def pids_of_uids(low: int, high: int) -> list[int]:
    """Processes whose real uid is in [low, high): a user's and its containers' (subuids)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("Uid:"):
                    if low <= int(line.split()[1]) < high:
                        found.append(int(entry.name))
                    break
    return found


def stop_uids(ranges: Sequence[tuple[int, int]], grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL, every process in ``ranges`` (the users are new: the tests
    started all of them), waiting up to ``grace`` seconds for them to go."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for low, high in ranges:
            for pid in pids_of_uids(low, high):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while any(pids_of_uids(lo, hi) for lo, hi in ranges) and time.monotonic() < deadline:
            time.sleep(0.1)


def remove_user(name: str, uid: int, ranges: Sequence[tuple[int, int]] = (),
                grace: float = 15.0) -> None:
    """Stop the user's processes (and those in ``ranges``), delete it with its home (and its
    subordinate ID ranges), and remove its runtime folder."""
    stop_uids([(uid, uid + 1), *ranges], grace)
    subprocess.run(["userdel", "-r", name], capture_output=True, check=False)
    subprocess.run(["rm", "-rf", f"/run/user/{uid}"], capture_output=True, check=False)


SYSTEM_PYTHON = "/usr/bin/python3"  # the login's interpreter: root's lives under /root


@dataclass
class Login:
    """Runs the project's tasks as another login, as that login would on its own machine:
    Debian's interpreter with a readable copy of the project's packages and a copy of the
    checkout (root's interpreter and virtualenv live where others cannot enter)."""

    name: str
    home: Path
    checkout: Path
    site: Path

    def command(self, environ: dict[str, str], *args: str) -> list[str]:
        keep = {key: value for key, value in environ.items()
                if key.startswith(("INFRA_", "BUILD_DIR", "DATA_ROOT", "CERTS_DIR",
                                   "DOCKER_HOST", "COLUMNS", "PYTHONUNBUFFERED"))}
        keep.update({"HOME": str(self.home), "USER": self.name, "LANG": "C.UTF-8",
                     "PATH": "/usr/local/bin:/usr/bin:/bin",
                     "PYTHONPATH": f"{self.site}:{self.checkout}"})
        return ["runuser", "-u", self.name, "--", "env", "-i",
                *(f"{k}={v}" for k, v in keep.items()), SYSTEM_PYTHON, "-m", "invoke", *args]


def prepare_login(name: str, workdir: Path, project_root: Path, owned: Sequence[Path] = ()
                  ) -> Login:
    """Copies of the packages and the checkout under ``workdir`` for ``name``; the compose
    plugin where its docker CLI looks; ``owned`` (and the copies) chowned to it."""
    import pwd
    import shutil

    import invoke

    user = pwd.getpwnam(name)
    site = workdir / "site"
    shutil.copytree(Path(invoke.__file__).resolve().parents[1], site, symlinks=True,
                    ignore=shutil.ignore_patterns("__editable__*", "__pycache__"))

    checkout = workdir / "checkout"
    shutil.copytree(project_root, checkout, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "data", "certs", "secrets.env", "__pycache__", ".nox",
        ".*_cache"))
    plugins = Path(user.pw_dir) / ".docker" / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / "docker-compose"
    if not link.exists():
        link.symlink_to(site / "compose" / "docker-compose")
    for path in (*owned, checkout, Path(user.pw_dir) / ".docker"):
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(path)], check=True)
    return Login(name, Path(user.pw_dir), checkout, site)
