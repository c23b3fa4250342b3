"""Local file writes that never leave a half-written file behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

LOCK_FILE = ".stackyard.lock"


def atomic_write(path: Path, content: str | bytes, mode: int = 0o644) -> bool:
    """Write ``content`` to ``path`` through a temp file and a rename.

    Returns True when the file changed (or was created), False when it already held exactly
    this content with this mode, in which case nothing is touched.
    """
    data = content.encode() if isinstance(content, str) else content
    _forget_stale_temp_files(path)
    if path.exists() and path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)  # before any byte is written: a secret is never briefly world-readable
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return True


STALE_TEMP_SECONDS = 60  # a write takes milliseconds: an older temp file's writer was killed


def _forget_stale_temp_files(path: Path) -> None:
    """Remove what a killed writer of ``path`` left (``.<name>.*.tmp``): never read as the
    file, and never left to pile up."""
    import time

    if not path.parent.is_dir():
        return
    now = time.time()
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if now - stale.stat().st_mtime > STALE_TEMP_SECONDS:
                stale.unlink()
        except OSError:
            pass


def sha256_hex(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def combined_digest(hashes: Mapping[str, str]) -> str:
    """The one digest of a stack: over its parts' names and hashes (path -> sha256)."""
    return sha256_hex("".join(f"{name}\0{digest}\n" for name, digest in sorted(hashes.items())))


@contextlib.contextmanager
def locked(directory: Path, what: str) -> Iterator[None]:
    """Hold ``directory``/.stackyard.lock while writing ``what``: two runs never interleave
    their writes. The kernel drops the lock when its holder exits, however it exits, so a
    killed run never leaves one behind; a run that waits says for whom."""
    import fcntl
    import sys

    path = directory / LOCK_FILE
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - closed below, after the lock
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.close()
    except BlockingIOError:
        handle.close()
    except OSError as exc:
        from .errors import ConfigError, Problem

        raise ConfigError(Problem(f"cannot lock {path} to write {what}: "
                                  f"{exc.strerror or exc}", file=str(directory),
                                  fix="make the folder writable for this user (and on a "
                                      "file system that supports locks)")) from None
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another run"
            print(f"waiting for {holder} to finish writing {what} ({path})", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        earlier = handle.read().strip()
        if earlier.startswith("stackyard pid ") and earlier != f"stackyard pid {os.getpid()}":
            # its holder died holding it (a kill): the kernel released it; say so
            print(f"took over the lock of {earlier}, which is no longer running "
                  f"({path}; {what})", file=sys.stderr)
        handle.seek(0)
        handle.truncate()
        handle.write(f"stackyard pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
