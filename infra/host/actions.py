"""Plans as data: an Action is a description plus the steps that carry it out.

Planners compare facts with the desired state and return only the actions still needed, so a
plan is empty when the host is already right. ``apply_plan`` shows every action and, unless dry,
runs it through the context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InfraError


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


class StepFailed(InfraError):
    def __init__(self, step: Step, output: str):
        super().__init__(f"step failed: {step}\n{output.strip()}")


def apply_plan(c: Any, plan: Plan, dry: bool, say: Callable[[str], None],
               is_root: bool | None = None) -> bool:
    """Show the plan and run it unless ``dry``; True when something was (or would be) done."""
    from ..interrupt import current, track
    from .remote import is_root as probe_root
    from .remote import run_step

    for note in plan.notes:
        say(f"note: {note}")
    if plan.empty:
        say(f"{plan.title}: nothing to do")
        return False
    dry_note = " (dry run: nothing changed)" if dry else ""
    say(f"{plan.title}: {len(plan.actions)} action(s){dry_note}")
    root = probe_root(c) if is_root is None and not dry else bool(is_root)
    # interrupted (infra.interrupt): the action running finishes its current step only if
    # that step is one command; nothing new starts; an action is idempotent, so the next run
    # redoes what was cut off. A task that tracks its own steps (host.prepare) keeps them.
    tracked = current().steps
    steps = tracked or track([a.description for a in plan.actions])
    for action in plan.actions:
        if tracked is None:
            steps.begin(action.description)
        else:
            current().check()
        say(f"  - {action.description}")
        for step in action.steps:
            say(f"      {step}")
            if not dry:
                run_step(c, step, root)
    if tracked is None and steps.running:
        steps.finish(steps.running)
    return True
