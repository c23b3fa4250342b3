"""Glue between the renderer and the bring-up core: rendered stacks as compose targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..compose import COMPOSE_FILE
from ..fsutil import combined_digest, sha256_hex
from .commands import ComposeTarget
from .ownership import keys_state
from .plan import KEYS_STATE, project_name

if TYPE_CHECKING:
    from ..project import Project


@dataclass(frozen=True)
class PreparedStack:
    name: str
    target: ComposeTarget
    files: Mapping[str, str]  # relative path -> sha256 (and the key files' state)
    digest: str
    # relative path -> content, as rendered: what the history keeps of a healthy revision
    contents: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


def prepare_stacks(project: Project, names: Sequence[str], write: bool = True
                   ) -> dict[str, PreparedStack]:
    """Render ``names`` (written unless dry) and hash what each stack consists of."""
    from ..render import render_stacks

    rendered = render_stacks(project, names=list(names), write=write)
    return {name: prepared_stack(rendered[name], keys_state(project.catalogue[name]),
                                 rendered[name].directory)
            for name in names}


def prepared_stack(rendered: Any, keys: str, directory: str | Path) -> PreparedStack:
    """A rendered stack as the bring-up sees it, its files in ``directory`` (here, or on a
    deployed host): the hash of each file, its key files' state, and the one digest of
    both that the run state records."""
    return stack_of(rendered.name, rendered.files, keys, directory)


def stack_of(name: str, contents: Mapping[str, str], keys: str, directory: str | Path
             ) -> PreparedStack:
    """A stack's files (relative path -> content) in ``directory``, as the bring-up sees
    them: rendered now, or brought back from the history by a rollback."""
    files = {str(k): sha256_hex(v) for k, v in contents.items()}
    if keys:
        files[KEYS_STATE] = keys
    where = Path(directory)
    return PreparedStack(name, ComposeTarget(project_name(name), where, where / COMPOSE_FILE),
                         files, combined_digest(files), dict(contents))


def mirrored(image: str, mirror: str) -> str:
    if not mirror:
        return image
    from ..mirror import mirror_image

    return str(mirror_image(image, mirror))


def helper_image(config: Any) -> str:
    """The helper image the bring-up runs short jobs in, through IMAGE_MIRROR when set."""
    return mirrored(config["HELPER_IMAGE"], config.get("IMAGE_MIRROR"))
