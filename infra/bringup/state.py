"""Run state: per stack, the content digest of its last successful bring-up.

Kept in ``<build_dir>/state.json`` (atomic rename), so a second ``up`` with nothing changed
can skip a stack without asking the engine to compare configurations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..fsutil import atomic_write

STATE_FILE = "state.json"


@dataclass(frozen=True)
class StackRecord:
    digest: str
    files: Mapping[str, str] = field(default_factory=dict)  # relative path -> sha256


def state_path(build_dir: Path) -> Path:
    return build_dir / STATE_FILE


def load_state(build_dir: Path) -> dict[str, StackRecord]:
    """Recorded stacks; a missing or unreadable file means nothing is recorded."""
    path = state_path(build_dir)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    stacks = raw.get("stacks", {}) if isinstance(raw, dict) else {}
    return {name: StackRecord(str(entry.get("digest", "")), dict(entry.get("files", {})))
            for name, entry in stacks.items() if isinstance(entry, dict)}


def save_state(build_dir: Path, records: Mapping[str, StackRecord]) -> None:
    document = {"stacks": {name: {"digest": rec.digest, "files": dict(rec.files)}
                           for name, rec in sorted(records.items())}}
    atomic_write(state_path(build_dir), json.dumps(document, indent=2, sort_keys=True) + "\n")


def record_stack(build_dir: Path, name: str, record: StackRecord) -> None:
    """Remember one successful bring-up (read-modify-write; callers serialise)."""
    records = load_state(build_dir)
    records[name] = record
    save_state(build_dir, records)


def forget_stack(build_dir: Path, name: str) -> None:
    records = load_state(build_dir)
    if records.pop(name, None) is not None:
        save_state(build_dir, records)
