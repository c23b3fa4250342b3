"""Glue between the renderer and the bring-up core: rendered stacks as compose targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    files: Mapping[str, str]  # relative path -> sha256
    digest: str


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
    files = {str(k): sha256_hex(v) for k, v in rendered.files.items()}
    if keys:
        files[KEYS_STATE] = keys
    where = Path(directory)
    return PreparedStack(rendered.name, ComposeTarget(project_name(rendered.name), where,
                                                      where / COMPOSE_FILE),
                         files, combined_digest(files))


def mirrored(image: str, mirror: str) -> str:
    if not mirror:
        return image
    from ..mirror import mirror_image

    return str(mirror_image(image, mirror))


def helper_image(config: Any) -> str:
    """The helper image the bring-up runs short jobs in, through IMAGE_MIRROR when set."""
    return mirrored(config["HELPER_IMAGE"], config.get("IMAGE_MIRROR"))
