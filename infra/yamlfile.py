"""YAML input files read with errors that point at the file and line."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from .errors import ConfigError, Problem


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first: int):
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


@functools.lru_cache(maxsize=1)
def _loader() -> Any:
    """libyaml's parser when PyYAML was built with it (several times faster on every task
    start), with mappings that refuse a key given twice (YAML itself keeps the last one)."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class StrictLoader(base):  # type: ignore[misc,valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            # the keys written in this mapping (a merged << mapping may be overridden here)
            seen: dict[str, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                        key_node, yaml.ScalarNode):
                    continue
                line = key_node.start_mark.line + 1
                if key_node.value in seen:
                    raise _DuplicateKey(key_node.value, line, seen[key_node.value])
                seen[key_node.value] = line
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def read_yaml(path: Path) -> Any:
    """Parse ``path``; a syntax error becomes a ConfigError naming file:line."""
    import yaml

    loader = _loader()
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
    except _DuplicateKey as exc:
        raise ConfigError(Problem(f"{exc.key!r} is given twice (first on line {exc.first}); "
                                  "YAML would silently keep the last", key=exc.key,
                                  file=str(path), line=exc.line,
                                  fix="keep one of the two")) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(Problem(f"invalid YAML: {getattr(exc, 'problem', exc)}",
                                  file=str(path), line=(mark.line + 1) if mark else 0,
                                  fix="correct the YAML syntax")) from exc
