"""Errors a user can act on: each names what is wrong, where, and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One actionable finding about the user's input."""

    message: str
    key: str = ""
    file: str = ""
    line: int = 0
    fix: str = ""

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "") if self.file else ""
        head = ": ".join(part for part in (where, self.key) if part)
        text = f"{head}: {self.message}" if head else self.message
        return f"{text}\n    fix: {self.fix}" if self.fix else text


class InfraError(Exception):
    """Base class for errors the task layer turns into a clean non-zero exit."""

    exit_code = 1


class ConfigError(InfraError):
    """Configuration input is invalid; carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = problems if isinstance(problems, list) else [problems]
        count = len(self.problems)
        header = f"{count} configuration problem{'s' if count != 1 else ''}:"
        super().__init__("\n".join([header, *(f"  - {p}" for p in self.problems)]))


class MissingToolError(InfraError):
    """A required program is not installed."""

    exit_code = 3

    def __init__(self, program: str, install_hint: str):
        self.program = program
        super().__init__(f"'{program}' was not found on PATH.\n    fix: {install_hint}")
