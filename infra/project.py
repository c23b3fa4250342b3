"""Everything a task needs about the project, loaded in one call."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import catalogue as cat
from .config import Config, HostLayer, load_config
from .secrets import SecretSpec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_DIR_VAR = "INFRA_ENV_DIR"  # lets tests (and users with several checkouts) point elsewhere
# secrets of the project rather than of a stack: the backup repository's password
PROJECT_SECRETS = (SecretSpec("BACKUP_PASSWORD", length=48),)


@dataclass(frozen=True)
class Project:
    config: Config
    catalogue: cat.Catalogue
    raw_catalogue: Any = field(default=None, repr=False)  # stacks/*/stack.yaml as read

    @property
    def root(self) -> Path:
        return self.config.project_root

    def for_host(self, layer: HostLayer) -> Project:
        """The project as a host sees it: its layer on the configuration, and the catalogue
        resolved with those values; nothing is read again."""
        config = self.config.for_host(layer)
        raw = self.raw_catalogue if self.raw_catalogue is not None else \
            cat.load_raw(cat.stacks_dir(self.root))
        return Project(config, cat.resolve(raw, config.public, self.root), raw)


def env_dir_from(environ: Mapping[str, str] | None = None) -> Path | None:
    environ = os.environ if environ is None else environ
    return Path(environ[ENV_DIR_VAR]) if environ.get(ENV_DIR_VAR) else None


def load_settings(profile: str | None = None, root: Path | None = None,
                  environ: Mapping[str, str] | None = None) -> Config:
    """Configuration only: for tasks that need neither the catalogue nor the secrets."""
    return load_config(root or PROJECT_ROOT, profile, environ, env_dir=env_dir_from(environ))


def load_project(profile: str | None = None, root: Path | None = None,
                 environ: Mapping[str, str] | None = None, write: bool = True) -> Project:
    """Configuration (with secrets generated on first need) plus the resolved catalogue.
    ``write=False``: missing secrets are made up in memory, nothing is saved (dry runs)."""
    environ = os.environ if environ is None else environ
    root = root or PROJECT_ROOT
    raw = cat.load_raw(cat.stacks_dir(root))
    config = load_config(root, profile, environ, [*cat.secret_specs(raw), *PROJECT_SECRETS],
                         env_dir=env_dir_from(environ), write_secrets=write)
    return Project(config, cat.resolve(raw, config.public, root), raw)


@functools.cache
def read_only_project(profile: str = "") -> Project:
    """The project as the process environment configures it, read once per process and never
    written (missing secrets made up in memory): the inventory for fab's executor, and the
    base each host's layer goes on when `fab -H a,b TASK` runs TASK per host."""
    return load_project(profile or None, write=False)
