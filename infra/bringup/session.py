"""Glue between the renderer and the bring-up core: rendered stacks as compose targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fsutil import sha256_hex
from .commands import ComposeTarget
from .facts import combined_digest, file_digests
from .ownership import keys_state
from .plan import KEYS_STATE, project_name

if TYPE_CHECKING:
    from ..project import Project


@dataclass(frozen=True)
class PreparedStack:
    name: str
    target: ComposeTarget
    files: Mapping[str, str]  # relative path -> sha256
    digest: str


def prepare_stacks(project: Project, names: Sequence[str], write: bool = True
                   ) -> dict[str, PreparedStack]:
    """Render ``names`` (written unless dry) and hash what each stack consists of."""
    from ..render import render_stacks

    rendered = render_stacks(project, names=list(names), write=write)
    prepared = {}
    for name in names:
        item = rendered[name]
        files = _digests(item, write)
        keys = keys_state(project.catalogue[name])
        if keys:
            files[KEYS_STATE] = keys
        prepared[name] = PreparedStack(
            name, ComposeTarget(project_name(name), Path(item.directory), Path(item.compose_file)),
            files, combined_digest(files))
    return prepared


def _digests(item: Any, written: bool) -> dict[str, str]:
    """Hash what the renderer produced (relative path -> content), not what is on disk."""
    contents = getattr(item, "files", None)
    if isinstance(contents, Mapping) and contents:
        return {str(k): sha256_hex(v) for k, v in contents.items()}
    return file_digests(Path(item.directory))


def mirrored(image: str, mirror: str) -> str:
    if not mirror:
        return image
    from ..mirror import mirror_image

    return str(mirror_image(image, mirror))
