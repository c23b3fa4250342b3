"""Upload only what changed: local checksums against the host's, read in one command.

The files a host gets: each deployed stack's rendered folder (compose file, configs, secret env
files at 0600 in a 0700 folder) and the certificates its stacks mount (keys at 0600). Stale
files in a deployed stack's folder are removed; certificates are never removed (stacks not
deployed this time may mount them).
"""

from __future__ import annotations

import io
import posixpath
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InfraError
from ..fsutil import sha256_hex

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
TMP_SUFFIX = ".stackyard-upload"


@dataclass(frozen=True)
class LocalFile:
    remote_path: str
    content: bytes
    mode: int

    @property
    def sha256(self) -> str:
        return sha256_hex(self.content)


@dataclass(frozen=True)
class UploadPlan:
    upload: list[LocalFile] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not self.upload and not self.delete


def is_secret(relative: str) -> bool:
    name = posixpath.basename(relative)
    return relative.startswith("secrets/") or name.endswith("-key.pem")


def _secrets_folder(directory: str) -> str:
    """The ``secrets`` folder ``directory`` is in or is ('' when none): made 0700."""
    parts = directory.split("/")
    return "/".join(parts[:parts.index("secrets") + 1]) if "secrets" in parts else ""


def stack_files(stack_dir: str, files: Mapping[str, str]) -> list[LocalFile]:
    """A rendered stack (relative path -> text) as files under its remote folder."""
    from ..render import file_mode

    return [LocalFile(posixpath.join(stack_dir, rel), text.encode(), file_mode(rel))
            for rel, text in sorted(files.items())]


def checksum_command(directories: Sequence[str]) -> str:
    """One command printing ``<sha256>  <path>`` for every file under ``directories``."""
    quoted = " ".join(shlex.quote(d) for d in directories)
    # temporary files too: one left by a run killed mid-upload is removed by the next
    return (f"for d in {quoted}; do [ -d \"$d\" ] && find \"$d\" -type f "
            f"-exec sha256sum {{}} +; done; true")


def parse_checksums(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        digest, _, path = line.partition("  ")
        if len(digest) == 64 and path:
            found[path.lstrip("*")] = digest
    return found


def plan_upload(local: Iterable[LocalFile], remote: Mapping[str, str],
                pruned_dirs: Sequence[str]) -> UploadPlan:
    """Files whose checksum differs (or are missing) go up; strays in ``pruned_dirs`` go."""
    wanted = {f.remote_path: f for f in local}
    upload = [f for path, f in sorted(wanted.items()) if remote.get(path) != f.sha256]
    delete = sorted(path for path in remote if path not in wanted
                    and (path.endswith(TMP_SUFFIX)  # a killed upload's, wherever it is
                         or any(path.startswith(d.rstrip("/") + "/") for d in pruned_dirs)))
    return UploadPlan(upload, delete, len(wanted) - len(upload))


def read_remote_checksums(c: Any, directories: Sequence[str]) -> dict[str, str]:
    result = c.run(checksum_command(directories), hide=True, warn=True, in_stream=False)
    if not result.ok:
        raise InfraError(f"cannot read checksums on the host: {result.stderr.strip()}")
    return parse_checksums(result.stdout)


def apply_upload(c: Any, plan: UploadPlan, private_dirs: Sequence[str] = ()) -> None:
    """Send each file to a temporary name, then set modes and rename all in one command.

    Folders holding secrets are created 0700 first, so no secret is ever readable by others.
    """
    if plan.empty:
        return
    dirs = sorted({posixpath.dirname(f.remote_path) for f in plan.upload})
    private = sorted({_secrets_folder(d) or d for d in dirs
                      if _secrets_folder(d) or any(d == p or d.startswith(p + "/")
                                                   for p in private_dirs)})
    script = []
    if dirs:
        script.append("mkdir -p " + " ".join(shlex.quote(d) for d in dirs))
    if private:
        script.append("chmod 700 " + " ".join(shlex.quote(d) for d in private))
    if script:
        _run(c, " && ".join(script))
    finalize = []
    for item in plan.upload:
        temporary = item.remote_path + TMP_SUFFIX
        c.put(io.BytesIO(item.content), remote=temporary)
        finalize.append(f"chmod {item.mode:o} {shlex.quote(temporary)} && "
                        f"mv -f {shlex.quote(temporary)} {shlex.quote(item.remote_path)}")
    if plan.delete:
        finalize.append("rm -f " + " ".join(shlex.quote(p) for p in plan.delete))
    _run(c, " && ".join(finalize))


def _run(c: Any, command: str) -> None:
    result = c.run(command, hide=True, warn=True, in_stream=False)
    if not result.ok:
        raise InfraError(f"upload failed on the host: {result.stderr.strip()[-500:]}")
