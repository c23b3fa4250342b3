"""Generated secrets: created on first need, never overwritten, never printed, kept 0600."""

from __future__ import annotations

import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from .envfile import format_env, read_env_file
from .errors import ConfigError, Problem
from .fsutil import atomic_write, locked

ALPHABETS = {
    # alnum only: values land in URLs, DSNs and YAML without any quoting or escaping
    "alnum": string.ascii_letters + string.digits,
    "hex": "0123456789abcdef",
}
SECRETS_HEADER = """Generated secrets. Never commit this file; keep it mode 0600.
Values are created on first need and never overwritten: delete a line to have it regenerated
(the service that used the old value must then be reset too)."""
MASK = "********"


@dataclass(frozen=True)
class SecretSpec:
    """A secret a stack needs. ``length`` counts characters of ``alphabet``."""

    key: str
    length: int = 32
    alphabet: str = "alnum"
    stack: str = ""

    def generate(self) -> str:
        chars = ALPHABETS[self.alphabet]
        return "".join(secrets.choice(chars) for _ in range(self.length))


def ensure_secrets(path: Path, specs: list[SecretSpec], write: bool = True
                   ) -> tuple[dict[str, str], list[str]]:
    values, missing = _ensure_secrets(path, specs, write=False)
    if write and path.exists() and path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # tighten a file someone loosened; the values stay
    if not write or not missing:
        return values, []
    # two first runs at once: the second reads what the first saved, never makes its own
    with locked(path.parent, path.name):
        return _ensure_secrets(path, specs, write)


def _ensure_secrets(path: Path, specs: list[SecretSpec], write: bool
                    ) -> tuple[dict[str, str], list[str]]:
    """Return every secret value, generating and saving the missing ones.

    Returns ``(values, generated_keys)``. Existing values are kept byte for byte; the file is
    rewritten (atomically, 0600) only when a key was missing. ``write=False`` (dry runs,
    read-only tasks): missing ones are made up in memory only and nothing is written.
    """
    existing: dict[str, str] = {}
    if path.exists():
        entries, problems = read_env_file(path)
        if problems:
            raise ConfigError(problems)
        existing = {entry.key: entry.value for entry in entries}
        declared = {spec.key: spec for spec in specs}
        found = [p for e in entries if e.key in declared and e.value
                 and (p := secret_problem(declared[e.key], e.value, str(path), e.line))]
        if found:
            raise ConfigError(found)
        if write and path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)  # tighten a file someone loosened; the values stay
    missing = [spec for spec in specs if not existing.get(spec.key)]
    for spec in specs:
        if spec.alphabet not in ALPHABETS:
            raise ConfigError(Problem(f"unknown secret alphabet {spec.alphabet!r}", key=spec.key,
                                      fix=f"use one of {', '.join(ALPHABETS)}"))
    if missing:
        merged = dict(existing)
        merged.update({spec.key: spec.generate() for spec in missing})
        if not write:
            return merged, [spec.key for spec in missing]
        atomic_write(path, format_env(merged, SECRETS_HEADER), mode=0o600)
        existing = merged
    return existing, [spec.key for spec in missing]


def secret_problem(spec: SecretSpec, value: str, where: str, line: int = 0) -> Problem | None:
    """Why ``value`` cannot be ``spec``'s secret (empty, too short, or outside its alphabet),
    naming the key and where it came from, never the value."""
    alphabet = ALPHABETS.get(spec.alphabet, "")
    if len(value) >= spec.length and all(ch in alphabet for ch in value):
        return None
    why = ("is empty" if not value else
           f"is shorter than its {spec.length} characters" if len(value) < spec.length else
           f"has characters outside its alphabet ({spec.alphabet})")
    return Problem(f"the secret {why}", key=spec.key, file=where, line=line,
                   fix=f"give it at least {spec.length} characters of [{spec.alphabet}], or "
                       f"delete it{' from ' + where if where.endswith('.env') else ''} to have "
                       "one generated (a service that used the old value must be reset too)")


def mask(value: str) -> str:
    return MASK if value else ""
