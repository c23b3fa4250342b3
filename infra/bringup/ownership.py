"""Volume ownership fixes, applied from inside the engine.

The seed runs init containers (``chown -R 10001:10001 /loki``). We run one one-shot helper
container that mounts DATA_ROOT and, for every data volume with a declared owner, reads the
current owner with ``stat`` and changes it only when it differs. Running inside the engine
makes it right under a rootless engine too, where container UID N is a subordinate host UID
that a host ``chown N`` would get wrong.

The same step gives every container that mounts a private key (catalogue ``kind: key``) its own
copy under DATA_ROOT/keys/<stack>/<service>/, owned by the uid the container reads it as (as the
engine maps it) and mode 0400. The operator's 0600 original is unreadable to a container whose
user is another uid, and to uid 0 too once every capability is dropped (no DAC override).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..catalogue import Stack, data_volumes, key_copy, key_volumes
from ..fsutil import sha256_hex
from . import commands as cmd

MOUNT_POINT = "/stackyard-data"
KEYS_MOUNT = "/stackyard-keys"  # where the helper container sees the key originals
KEY_MODE = "400"


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
class KeyCopy:
    stack: str
    service: str
    source: str  # the original on the host (absolute)
    copy: str  # relative to DATA_ROOT
    owner: tuple[int, int]

    @property
    def owner_text(self) -> str:
        return f"{self.owner[0]}:{self.owner[1]}"


@dataclass(frozen=True)
class OwnershipChange:
    source: str
    action: str  # created | chown | chmod | ok | would-chown | would-create | would-chmod |
    #              key | would-key (a container's key copy written)
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


def key_copies(stacks: Iterable[Stack], data_root: str = "") -> list[KeyCopy]:
    """One copy per (stack, service, key file); the owner is the catalogue's (validated)."""
    copies = []
    for stack in stacks:
        for service, volume in key_volumes(stack):
            owner = volume.owner or (0, 0)
            copies.append(KeyCopy(stack.name, service.name, volume.source,
                                  key_copy(stack, service, volume), owner))
    return copies


def keys_state(stack: Stack, local: Callable[[str], Path] = Path) -> str:
    """Size and modification time of the originals of the stack's key files ('' when it has
    none): recorded with the stack, so a changed key updates it and recreates the services
    that mount a copy (plan.services_mounting). Never their content: a credentials file's
    hash could be brute-forced. ``local``: where an original is on this machine (a deploy
    maps the host's paths back to the local CERTS_DIR)."""
    parts = []
    for service, volume in key_volumes(stack):
        try:
            info = local(volume.source).stat()
            parts.append(f"{service.name}:{volume.target}:{info.st_size}:{info.st_mtime_ns}")
        except OSError:
            parts.append(f"{service.name}:{volume.target}:absent")
    return sha256_hex("\n".join(parts)) if parts else ""


def key_script(copies: Sequence[KeyCopy], sources: Sequence[str], dry: bool) -> str:
    """sh lines (run where DATA_ROOT is the working directory): copy each original to its copy
    when the content, owner or mode differs; a new copy is written aside and renamed."""
    lines = []
    for copy, source in zip(copies, sources, strict=True):
        src, dst = shlex.quote(source), shlex.quote(copy.copy)
        want = f"{copy.owner_text}:{KEY_MODE}"
        new = shlex.quote(copy.copy + ".new")
        # one block that fails as a whole (set -e does not stop inside an && list), after
        # removing the empty folder an engine makes for a bind source that was missing
        write = (f"echo would-key {dst} - {copy.owner_text}" if dry else
                 f"{{ {{ [ ! -d {dst} ] || rmdir {dst}; }} && mkdir -p \"$(dirname {dst})\" "
                 f"&& chmod 0700 keys && cp {src} {new} && chown {copy.owner_text} {new} && "
                 f"chmod 0{KEY_MODE} {new} && mv -f {new} {dst} && "
                 f"echo key {dst} - {copy.owner_text}; }} || "
                 f"{{ echo failed-key {dst}; rm -f {new} 2>/dev/null || true; exit 4; }}")
        lines.append(
            f"if [ ! -f {src} ]; then echo missing-key {dst} {src}; exit 3; fi; "
            f"if [ -f {dst} ] && cmp -s {src} {dst} && "
            f"[ \"$(stat -c %u:%g:%a {dst})\" = {want} ]; then echo ok {dst} {want} {want}; "
            f"else {write}; fi")
    return "\n".join(lines)


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
                      dry: bool, keys: Sequence[KeyCopy] = ()) -> str:
    mount = f"{data_root}:{MOUNT_POINT}" + (":ro" if dry else "")
    inside = [f"{KEYS_MOUNT}/{index}" for index in range(len(keys))]
    script = "\n".join(part for part in (ownership_script(fixes, dry),
                                          key_script(keys, inside, dry)) if part)
    # --mount (not -v): a missing original is an error, never a directory made in its place
    binds = [(k.source, target) for k, target in zip(keys, inside, strict=True)]
    return cmd.helper_run(helper_image, script, mounts=[mount], binds=binds)


def parse_ownership_output(text: str) -> list[OwnershipChange]:
    changes = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in {"created", "chown", "chmod", "ok", "would-chown",
                                             "would-create", "would-chmod", "key",
                                             "would-key", "missing-key"}:
            changes.append(OwnershipChange(parts[1], parts[0],
                                           parts[2] if len(parts) > 2 else "",
                                           parts[3] if len(parts) > 3 else ""))
    return changes
