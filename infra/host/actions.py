"""Plans as data: an Action is a description plus the steps that carry it out.

Planners compare facts with the desired state and return only the actions still needed, so a
plan is empty when the host is already right. Running one is ``remote.apply_plan``'s: it
shows every action and, unless dry, runs it through the context.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Run:
    """A shell command. ``sudo``: it needs root (run through ``c.sudo`` unless already root)."""

    command: str
    sudo: bool = False

    def __str__(self) -> str:
        return f"sudo {self.command}" if self.sudo else self.command


@dataclass(frozen=True)
class Write:
    """Write a whole file atomically (temp file in the same directory, then rename)."""

    path: str
    text: str
    mode: int = 0o644
    sudo: bool = False
    owner: str = ""  # "uid:gid" or "user:group"; empty: the writer's

    def __str__(self) -> str:
        owner = f", owner {self.owner}" if self.owner else ""
        return f"{'sudo ' if self.sudo else ''}write {self.path} (mode {self.mode:04o}{owner})"


Step = Run | Write


@dataclass(frozen=True)
class Action:
    description: str
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True)
class Plan:
    title: str
    actions: tuple[Action, ...] = ()
    notes: tuple[str, ...] = ()  # what was found but cannot or need not be done, and why

    @property
    def empty(self) -> bool:
        return not self.actions

    def commands(self) -> list[str]:
        """Every step as text: what plan tests compare against."""
        return [str(step) for action in self.actions for step in action.steps]


@dataclass
class PlanBuilder:
    title: str
    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, description: str, *steps: Step) -> None:
        self.actions.append(Action(description, tuple(steps)))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def build(self) -> Plan:
        return Plan(self.title, tuple(self.actions), tuple(self.notes))
