"""YAML input files read with errors that point at the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ConfigError, Problem


def read_yaml(path: Path) -> Any:
    """Parse ``path``; a syntax error becomes a ConfigError naming file:line."""
    import yaml

    # libyaml's parser when PyYAML was built with it: several times faster on every task start
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(Problem(f"is not UTF-8 text (byte {exc.start + 1})", file=str(path),
                                  fix="save it as UTF-8")) from None
    except OSError as exc:
        raise ConfigError(Problem(f"cannot be read: {exc.strerror or exc}", file=str(path),
                                  fix="check that it is a file you may read")) from None
    try:
        return yaml.load(text, Loader=loader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(Problem(f"invalid YAML: {getattr(exc, 'problem', exc)}",
                                  file=str(path), line=(mark.line + 1) if mark else 0,
                                  fix="correct the YAML syntax")) from exc
