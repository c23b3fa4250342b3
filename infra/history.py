"""The deploy history: per stack (per host for deploys), every bring-up that changed it.

A revision says when, who, what ran (the rendered files' digest, each service's image
reference with the image ID and registry digest it resolved to, a hash of the public
settings: secrets never) and how it ended (healthy or failed, each service's time to
health). The rendered files of the last ``HISTORY_KEEP`` healthy revisions are kept beside
it, so a rollback brings back exactly what ran, never a render of today's settings.

Kept in ``<build_dir>/history/``: ``<stack>.json`` (every revision, rewritten whole with an
atomic rename, under the folder's lock) and ``<stack>/<rev>/`` (kept files, 0700 folders,
the modes the renderer gives). Beside the run state, not in it: ``down`` forgets a stack's
state, never its history. The files are read back as untrusted input: a hand-edited or
damaged history is an error naming the file and the fix, never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError, Problem
from .fsutil import atomic_write, locked, sha256_hex

HISTORY_DIR = "history"
HEALTHY, FAILED = "healthy", "failed"
UP, DEPLOY, ROLLBACK, AUTO_ROLLBACK, UPDATE = "up", "deploy", "rollback", "auto-rollback", \
    "update"
RESTORE = "restore"  # a stack brought up again on data restored from a backup
ACTIONS = (UP, DEPLOY, ROLLBACK, AUTO_ROLLBACK, UPDATE, RESTORE)
_THREADS = threading.Lock()  # the file lock serialises processes; this, a run's threads


@dataclass(frozen=True)
class ImageUse:
    service: str
    reference: str  # as the compose file names it
    image_id: str = ""  # sha256:... of the image the container runs
    repo_digest: str = ""  # <repository>@sha256:... the registry resolved it to ('' if built)


@dataclass(frozen=True)
class Revision:
    rev: int
    stack: str
    time: str  # ISO 8601, UTC
    who: str  # the login that ran it
    action: str  # up | deploy | rollback | auto-rollback | update | restore
    digest: str  # the stack's digest (bringup.session.prepared_stack)
    settings: str  # sha256 of the public settings
    result: str  # healthy | failed
    host: str = ""  # the inventory host ('' this machine)
    images: tuple[ImageUse, ...] = ()
    health: Mapping[str, float] = field(default_factory=dict)  # service -> seconds to healthy
    restored: int = 0  # a rollback: the revision it brought back
    kept: bool = False  # its rendered files are kept (only healthy ones are)
    detail: str = ""

    @property
    def good(self) -> bool:
        return self.result == HEALTHY

    def image_of(self, service: str) -> ImageUse | None:
        return next((i for i in self.images if i.service == service), None)


def history_dir(build_dir: Path) -> Path:
    return build_dir / HISTORY_DIR


def settings_hash(public: Mapping[str, str]) -> str:
    """One hash of the public settings (secrets are never part of it)."""
    return sha256_hex("".join(f"{k}={v}\n" for k, v in sorted(public.items())))


# ---------------------------------------------------------------- reading (untrusted input)


def load(build_dir: Path, stack: str) -> list[Revision]:
    """The stack's revisions, oldest first (none recorded: an empty list)."""
    path = history_dir(build_dir) / f"{stack}.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _damaged(path, f"cannot be read ({exc.strerror})") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise _damaged(path, f"is not JSON (line {exc.lineno})" if hasattr(exc, "lineno")
                       else "is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("revisions"), list):
        raise _damaged(path, "has no list 'revisions'")
    revisions = []
    for index, entry in enumerate(document["revisions"]):
        try:
            revisions.append(_revision(entry, stack))
        except (TypeError, ValueError, KeyError) as exc:
            raise _damaged(path, f"revision #{index + 1} is malformed ({exc})") from None
    return revisions


def _revision(entry: Any, stack: str) -> Revision:
    if not isinstance(entry, dict):
        raise TypeError("not a mapping")
    images = tuple(ImageUse(str(i["service"]), str(i["reference"]), str(i.get("image_id", "")),
                            str(i.get("repo_digest", ""))) for i in entry.get("images", []))
    health = {str(k): float(v) for k, v in dict(entry.get("health", {})).items()}
    action, result = str(entry["action"]), str(entry["result"])
    if action not in ACTIONS or result not in (HEALTHY, FAILED):
        raise ValueError(f"action {action!r} or result {result!r} unknown")
    rev = int(entry["rev"])
    if rev < 1 or str(entry.get("stack", stack)) != stack:
        raise ValueError("revision number or stack does not fit")
    return Revision(rev, stack, str(entry["time"]), str(entry["who"]), action,
                    str(entry["digest"]), str(entry["settings"]), result,
                    str(entry.get("host", "")), images, health, int(entry.get("restored", 0)),
                    bool(entry.get("kept", False)), str(entry.get("detail", "")))


def _damaged(path: Path, why: str) -> ConfigError:
    return ConfigError(Problem(f"the deploy history {why}", file=str(path),
                               fix=f"restore it from a backup, or move it aside ({path}) to "
                                   "start a new history; the running stacks are not affected"))


# ---------------------------------------------------------------- choosing (pure)


def current(revisions: Sequence[Revision]) -> Revision | None:
    """The revision that runs now: the last one recorded."""
    return revisions[-1] if revisions else None


def rollback_target(revisions: Sequence[Revision], to: int | None) -> Revision:
    """The revision ``rollback --to`` means (default: the last good one before the current
    revision's files); a ``ConfigError`` with the fix when there is none."""
    if not revisions:
        raise ConfigError(Problem("this stack has no deploy history: it was never brought up "
                                  "by up or deploy here", key="--stack",
                                  fix="bring it up first; a rollback needs an earlier revision"))
    stack = revisions[-1].stack
    numbers = ", ".join(str(r.rev) for r in revisions if r.good and r.kept) or "none"
    if to is not None:
        chosen = next((r for r in revisions if r.rev == to), None)
        if chosen is None:
            raise ConfigError(Problem(f"{stack} has no revision {to}", key="--to",
                                      fix=f"choose one of the kept good revisions: {numbers} "
                                          f"(invoke history --stack {stack})"))
        if not (chosen.good and chosen.kept):
            why = "failed its health gate" if not chosen.good else "files are no longer kept"
            raise ConfigError(Problem(f"{stack} revision {to} {why}", key="--to",
                                      fix=f"choose one of the kept good revisions: {numbers}"))
        return chosen
    running = current(revisions)
    assert running is not None
    for revision in reversed(revisions):
        if revision.good and revision.kept and revision.digest != running.digest:
            return revision
    raise ConfigError(Problem(f"{stack} has no earlier good revision to go back to",
                              key="--stack", fix=f"kept good revisions: {numbers}; see "
                                                 f"invoke history --stack {stack}"))


def major_changes(old: Revision, new: Revision) -> list[str]:
    """Services whose image's major version differs between two revisions ('a 2.x -> 3.x')."""
    from .tags import version_of

    found = []
    for use in old.images:
        other = new.image_of(use.service)
        if other is None or other.reference == use.reference:
            continue
        before, after = version_of(use.reference), version_of(other.reference)
        if before and after and before.scheme == after.scheme and before.major != after.major:
            found.append(f"{use.service}: {use.reference} -> {other.reference}")
    return found


# ---------------------------------------------------------------- writing


def record(build_dir: Path, revision: Revision, files: Mapping[str, str] | None,
           keep: int) -> Revision:
    """Append ``revision`` (numbered here) and, when it is healthy, keep ``files`` (relative
    path -> content); only the last ``keep`` healthy revisions keep their files."""
    from .render import file_mode

    folder = history_dir(build_dir)
    with _THREADS, locked(folder, "the deploy history"):
        revisions = load(build_dir, revision.stack)
        number = (revisions[-1].rev + 1) if revisions else 1
        kept = bool(files is not None and revision.good and keep > 0)
        revision = replace(revision, rev=number, kept=kept)
        if kept and files is not None:
            target = folder / revision.stack / str(number)
            shutil.rmtree(target, ignore_errors=True)  # a run killed half-way through
            target.mkdir(parents=True, mode=0o700)  # it holds the stack's secrets too
            for relative, content in files.items():
                path = target / relative
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                atomic_write(path, content, file_mode(relative))
        revisions.append(revision)
        revisions = _prune(folder, revisions, keep)
        document = {"revisions": [_as_json(r) for r in revisions]}
        atomic_write(folder / f"{revision.stack}.json",
                     json.dumps(document, indent=1, sort_keys=True) + "\n", 0o600)
    return revision


def _prune(folder: Path, revisions: list[Revision], keep: int) -> list[Revision]:
    kept = [r for r in revisions if r.kept]
    for old in kept[:max(0, len(kept) - keep)]:
        shutil.rmtree(folder / old.stack / str(old.rev), ignore_errors=True)
    dropped = {r.rev for r in kept[:max(0, len(kept) - keep)]}
    return [replace(r, kept=False) if r.rev in dropped else r for r in revisions]


def kept_files(build_dir: Path, revision: Revision) -> dict[str, str]:
    """The rendered files kept with ``revision`` (relative path -> content)."""
    folder = history_dir(build_dir) / revision.stack / str(revision.rev)
    if not revision.kept or not folder.is_dir():
        raise ConfigError(Problem(f"the files of {revision.stack} revision {revision.rev} are "
                                  "not kept", file=str(folder),
                                  fix="choose a newer revision (invoke history)"))
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            files[path.relative_to(folder).as_posix()] = path.read_text(encoding="utf-8")
    return files


def _as_json(revision: Revision) -> dict[str, Any]:
    document = asdict(revision)
    document["health"] = dict(revision.health)
    return {k: v for k, v in document.items() if v not in ("", 0, (), [], {}) or k in (
        "rev", "kept")}


def login() -> str:
    """Who runs this: the login name (SUDO_USER when run through sudo)."""
    import getpass

    return os.environ.get("SUDO_USER") or getpass.getuser()
