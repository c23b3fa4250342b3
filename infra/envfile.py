"""Read and write ``KEY=value`` files (python-dotenv's grammar), keeping line numbers for errors."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from dotenv.parser import parse_stream

from .errors import Problem


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    file: str
    line: int


def parse_env_text(text: str, file: str) -> tuple[list[Entry], list[Problem]]:
    """Parse env-file text into entries; malformed lines and duplicates become problems."""
    entries: list[Entry] = []
    problems: list[Problem] = []
    first_seen: dict[str, int] = {}
    for binding in parse_stream(io.StringIO(text)):
        # python-dotenv counts a leading blank line into the next binding; point at the real line.
        raw = binding.original.string
        line = binding.original.line + (len(raw) - len(raw.lstrip("\n")))
        if binding.error or (binding.key is not None and binding.value is None):
            # never the line itself: it may hold a secret; its key, when it has a readable one
            name = raw.strip().split("=", 1)[0].strip() if "=" in raw else ""
            named = name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else ""
            problems.append(
                Problem(
                    f"cannot parse line {line}" + (f" (of {named})" if named else ""),
                    key=named,
                    file=file,
                    line=line,
                    fix="write it as KEY=value (quote values with spaces), or start it with # "
                    "to make it a comment",
                )
            )
            continue
        if binding.key is None:
            continue
        if binding.key in first_seen:
            problems.append(
                Problem(
                    f"set twice (first on line {first_seen[binding.key]})",
                    key=binding.key,
                    file=file,
                    line=line,
                    fix="keep one of the two lines",
                )
            )
            continue
        first_seen[binding.key] = line
        entries.append(Entry(binding.key, binding.value or "", file, line))
    return entries, problems


def read_env_file(path: Path, display_name: str | None = None) -> tuple[list[Entry], list[Problem]]:
    """The file's entries and problems; a file that cannot be read (missing, a directory,
    unreadable, not UTF-8) is one problem, never an exception."""
    shown = display_name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        return [], [Problem(f"is not UTF-8 text (byte {exc.start + 1})", file=shown, line=line,
                            fix="save it as UTF-8 (KEY=value lines)")]
    except IsADirectoryError:
        return [], [Problem("is a directory, not a KEY=value file", file=shown,
                            fix="remove the directory or point the setting at a file")]
    except OSError as exc:
        return [], [Problem(f"cannot be read: {exc.strerror or exc}", file=shown,
                            fix="check that it exists and that you may read it")]
    return parse_env_text(text, shown)


def format_env(values: dict[str, str], header: str = "") -> str:
    """Serialise ``values`` as an env file python-dotenv and docker compose both read back."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    for key, value in values.items():
        # the one quoting rule: plain when safe, else in single quotes (literal for both
        # python-dotenv and compose); what single quotes cannot carry is refused, by name
        if "'" in value or not value.isprintable():
            from .errors import ConfigError

            raise ConfigError(Problem("the value has a single quote or a control character, "
                                      "which an env file cannot carry as written", key=key,
                                      fix="choose a value without them"))
        lines.append(f"{key}={value}" if _is_plain(value) else f"{key}='{value}'")
    return "\n".join(lines) + "\n"


def _is_plain(value: str) -> bool:
    return all(ch.isalnum() or ch in "-_./:@+,=%" for ch in value)


def with_values(text: str, values: dict[str, str]) -> str:
    """``text`` (an env file) with each key of ``values`` set: its line replaced in place
    (the last one, which wins), or appended; comments and every other line kept."""
    lines = text.splitlines()
    pending = dict(values)
    for index in range(len(lines) - 1, -1, -1):
        key = lines[index].split("=", 1)[0].strip()
        if key in pending and "=" in lines[index] and not lines[index].lstrip().startswith("#"):
            lines[index] = format_env({key: pending.pop(key)}).rstrip("\n")
    if pending:
        lines.append(format_env(pending).rstrip("\n"))
    return "\n".join(lines) + "\n"
