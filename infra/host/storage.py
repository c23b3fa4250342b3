"""The data directories under DATA_ROOT, derived from the catalogue's bind mounts.

Rootful: each directory gets the owner and mode the catalogue declares. Rootless: a host chown
to the container's uid would be wrong (container uid N is host uid subuid_start+N-1), so the
directories belong to the rootless user and the bring-up step fixes ownership from inside the
engine. An existing directory is then left alone: it may already carry that fix.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..catalogue import Catalogue, data_volumes
from ..errors import ConfigError, Problem
from .actions import Plan, PlanBuilder, Run
from .remote import run


@dataclass(frozen=True)
class DataDir:
    path: str
    owner: tuple[int, int] | None
    mode: str
    used_by: tuple[str, ...]


@dataclass(frozen=True)
class PathState:
    uid: int
    gid: int
    mode: str  # octal, e.g. "755"


def data_dirs(catalogue: Catalogue, data_root: str,
              stacks: Iterable[str] | None = None) -> list[DataDir]:
    """Every distinct DATA_ROOT/<source> of the chosen stacks (all by default), sorted."""
    found: dict[str, DataDir] = {}
    for name in stacks or catalogue.names():
        for service, volume in data_volumes(catalogue[name]):
            path = f"{data_root.rstrip('/')}/{volume.source.strip('/')}"
            user = f"{name}.{service.name}"
            known = found.get(path)
            if known is None:
                found[path] = DataDir(path, volume.owner, volume.mode, (user,))
                continue
            if volume.owner and known.owner and volume.owner != known.owner:
                raise ConfigError(Problem(
                    f"{path} is declared with owner {known.owner} ({known.used_by[0]}) and "
                    f"{volume.owner} ({user})", key=user, fix="give each its own source"))
            found[path] = DataDir(path, known.owner or volume.owner, known.mode or volume.mode,
                                  (*known.used_by, user))
    return [found[p] for p in sorted(found)]


def parse_stat(text: str) -> dict[str, PathState]:
    """``stat -c '%u:%g:%a:%n'`` lines."""
    states = {}
    for line in text.splitlines():
        parts = line.split(":", 3)
        if len(parts) == 4 and parts[0].isdigit() and parts[1].isdigit():
            states[parts[3]] = PathState(int(parts[0]), int(parts[1]), parts[2])
    return states


def gather(c: Any, paths: Iterable[str]) -> dict[str, PathState]:
    quoted = " ".join(shlex.quote(p) for p in paths)
    return parse_stat(run(c, f"stat -c '%u:%g:%a:%n' {quoted} 2>/dev/null").stdout)


def _same_mode(current: str, wanted: str) -> bool:
    return int(current, 8) == int(wanted, 8)


def plan_storage(dirs: list[DataDir], data_root: str, existing: dict[str, PathState],
                 rootless: bool, user_ids: tuple[int, int], run_as_user: bool) -> Plan:
    """``user_ids``: the rootless user's uid:gid. ``run_as_user``: the task already runs as
    that user (no sudo, and mkdir gives the right owner by itself)."""
    plan = PlanBuilder(f"data directories under {data_root}")
    wanted = [DataDir(data_root.rstrip("/"), None, "", ()), *dirs]
    missing = [d for d in wanted if d.path not in existing]
    sudo = not (rootless and run_as_user)
    if missing:
        plan.add(f"create {len(missing)} director{'y' if len(missing) == 1 else 'ies'}",
                 Run("mkdir -p " + " ".join(shlex.quote(d.path) for d in missing), sudo))
    if rootless:
        if missing and not run_as_user:
            ids = f"{user_ids[0]}:{user_ids[1]}"
            plan.add(f"give the new directories to the rootless user ({ids})",
                     Run(f"chown {ids} " + " ".join(shlex.quote(d.path) for d in missing), True))
        if any(d.owner for d in dirs):
            plan.note("rootless engine: directories belong to the rootless user; the owners the "
                      "services need (e.g. 10001) are set from inside the engine at bring-up")
        return plan.build()
    by_owner: dict[tuple[int, int], list[str]] = {}
    by_mode: dict[str, list[str]] = {}
    for d in dirs:
        state = existing.get(d.path)
        if d.owner and (state is None or (state.uid, state.gid) != d.owner):
            by_owner.setdefault(d.owner, []).append(d.path)
        if d.mode and (state is None or not _same_mode(state.mode, d.mode)):
            by_mode.setdefault(d.mode, []).append(d.path)
    for (uid, gid), paths in sorted(by_owner.items()):
        count = f"{len(paths)} director{'y' if len(paths) == 1 else 'ies'}"
        plan.add(f"set owner {uid}:{gid} on {count}",
                 Run(f"chown {uid}:{gid} " + " ".join(shlex.quote(p) for p in paths), True))
    for mode, paths in sorted(by_mode.items()):
        plan.add(f"set mode {mode} on {', '.join(paths)}",
                 Run(f"chmod {mode} " + " ".join(shlex.quote(p) for p in paths), True))
    return plan.build()
