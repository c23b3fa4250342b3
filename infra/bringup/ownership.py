"""Volume ownership fixes, applied from inside the engine.

The seed runs init containers (``chown -R 10001:10001 /loki``). We run one one-shot helper
container that mounts DATA_ROOT and, for every data volume with a declared owner, reads the
current owner with ``stat`` and changes it only when it differs. Running inside the engine
makes it right under a rootless engine too, where container UID N is a subordinate host UID
that a host ``chown N`` would get wrong.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from ..catalogue import Stack, data_volumes
from . import commands as cmd

MOUNT_POINT = "/stackyard-data"


@dataclass(frozen=True)
class OwnershipFix:
    stack: str
    service: str
    source: str  # relative to DATA_ROOT
    owner: tuple[int, int] | None
    mode: str = ""

    @property
    def owner_text(self) -> str:
        return f"{self.owner[0]}:{self.owner[1]}" if self.owner else ""


@dataclass(frozen=True)
class OwnershipChange:
    source: str
    action: str  # created | chown | chmod | ok | would-chown | would-create | would-chmod
    before: str = ""
    after: str = ""


def ownership_fixes(stacks: Iterable[Stack]) -> list[OwnershipFix]:
    """One entry per distinct data directory (the first declared owner wins)."""
    fixes: dict[str, OwnershipFix] = {}
    for stack in stacks:
        for service, volume in data_volumes(stack):
            if volume.source not in fixes:
                fixes[volume.source] = OwnershipFix(stack.name, service.name, volume.source,
                                                    volume.owner, volume.mode)
    return list(fixes.values())


def ownership_script(fixes: Iterable[OwnershipFix], dry: bool, base: str = MOUNT_POINT) -> str:
    """sh script: create missing directories, chown/chmod where the current state differs.

    ``base`` is DATA_ROOT as the script sees it: mounted in a helper container, or the host's
    own path when the host's root shell runs it. Prints one ``<action> <source> <before>
    <after>`` line per directory.
    """
    lines = ["set -e", f"cd {shlex.quote(base)}"]
    for fix in fixes:
        d = shlex.quote(fix.source)
        lines.append(f"if [ ! -d {d} ]; then "
                     + (f"echo would-create {d}; " if dry else f"mkdir -p {d}; echo created {d}; ")
                     + "fi")
        if fix.owner:
            want = fix.owner_text
            lines.append(
                f"if [ -d {d} ]; then now=$(stat -c %u:%g {d}); "
                f"if [ \"$now\" != {want} ]; then "
                + (f"echo would-chown {d} $now {want}; " if dry
                   else f"chown -R {want} {d}; echo chown {d} $now {want}; ")
                + f"else echo ok {d} $now {want}; fi; "
                + (f"else echo would-chown {d} - {want}; " if dry else "")
                + "fi")
        if fix.mode:
            mode = fix.mode.lstrip("0") or "0"
            lines.append(
                f"if [ -d {d} ]; then m=$(stat -c %a {d}); if [ \"$m\" != {mode} ]; then "
                + (f"echo would-chmod {d} $m {mode}; " if dry
                   else f"chmod {fix.mode} {d}; echo chmod {d} $m {mode}; ")
                + "fi; fi")
    return "\n".join(lines)


def ownership_command(helper_image: str, data_root: str, fixes: Iterable[OwnershipFix],
                      dry: bool) -> str:
    mount = f"{data_root}:{MOUNT_POINT}" + (":ro" if dry else "")
    return cmd.helper_run(helper_image, ownership_script(fixes, dry), mounts=[mount])


def parse_ownership_output(text: str) -> list[OwnershipChange]:
    changes = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in {"created", "chown", "chmod", "ok", "would-chown",
                                             "would-create", "would-chmod"}:
            changes.append(OwnershipChange(parts[1], parts[0],
                                           parts[2] if len(parts) > 2 else "",
                                           parts[3] if len(parts) > 3 else ""))
    return changes
