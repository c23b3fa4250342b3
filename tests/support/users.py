"""Throwaway login users for the rootless tests: stop what they started, then delete them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
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
