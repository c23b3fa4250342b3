"""The few primitives every fact and action goes through: run, read, write, as another user.

They only use ``c.run``/``c.sudo``/``c.put``, so they work with an invoke Context (local) and a
fabric Connection (remote) alike.
"""

from __future__ import annotations

import io
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InfraError
from ..fsutil import atomic_write
from .actions import Plan, Run, Step, Write

MISSING = 3  # exit code of read_text's probe when the file does not exist


def run(c: Any, command: str) -> Any:
    """Run a read-only probe; never raises on a non-zero exit (facts decide what it means)."""
    return c.run(command, hide=True, warn=True, in_stream=False)


def out(c: Any, command: str) -> str:
    """stdout of a probe, stripped; empty when it failed."""
    result = run(c, command)
    return result.stdout.strip() if result.ok else ""


def ok(c: Any, command: str) -> bool:
    return bool(run(c, command).ok)


def is_root(c: Any) -> bool:
    return out(c, "id -u") == "0"


def read_text(c: Any, path: str) -> str | None:
    """A file's content, or None when it does not exist."""
    q = shlex.quote(path)
    result = run(c, f"if [ -e {q} ]; then cat {q}; else exit {MISSING}; fi")
    if result.exited == MISSING:
        return None
    if not result.ok:
        raise StepFailed(Run(f"cat {q}"), result.stderr)
    return str(result.stdout)


def as_user(command: str, user: str, current_user: str, current_is_root: bool) -> str:
    """``command`` run as ``user`` in a login environment (its HOME, its profile).

    Through ``/bin/sh`` rather than the user's own shell: a service account for the rootless
    engine often has a nologin shell, which would refuse the command.
    """
    if not user or user == current_user:
        return command
    if current_is_root:
        return f"su - {shlex.quote(user)} -s /bin/sh -c {shlex.quote(command)}"
    return f"sudo -H -u {shlex.quote(user)} /bin/sh -lc {shlex.quote(command)}"


_login_is_root = is_root  # apply_plan's parameter of that name hides it


def run_step(c: Any, step: Step, root: bool) -> None:
    if isinstance(step, Write):
        put_text(c, step.path, step.text, step.mode, sudo=step.sudo and not root,
                 owner=step.owner)
        return
    runner = c.sudo if step.sudo and not root else c.run
    result = runner(step.command, hide=True, warn=True, in_stream=False)
    if not result.ok:
        raise StepFailed(step, (result.stderr or result.stdout or f"exit {result.exited}"))


def put_text(c: Any, path: str, text: str, mode: int = 0o644, sudo: bool = False,
             owner: str = "") -> None:
    """Write ``text`` to ``path`` on the context's host atomically (temp file + rename).

    A fabric Connection uploads to a temp file and moves it into place remotely; a local
    Context writes directly (or, when root is needed, stages the file and installs it with sudo).
    """
    target = shlex.quote(path)
    staged = shlex.quote(str(Path(path).parent / f".{Path(path).name}.stackyard-tmp"))
    install = (f"mkdir -p {shlex.quote(str(Path(path).parent))} && "
               f"install -m {mode:04o} {'-o ' + shlex.quote(owner.split(':')[0]) if owner else ''}"
               f" {'-g ' + shlex.quote(owner.split(':')[1]) if ':' in owner else ''}"
               " SOURCE " + staged + f" && mv -f {staged} {target}")
    runner = c.sudo if sudo else c.run
    if hasattr(c, "put"):  # fabric Connection
        upload = out(c, "mktemp /tmp/.stackyard-put.XXXXXX")
        if not upload:
            raise StepFailed(Write(path, text, mode, sudo, owner), "mktemp failed on the host")
        try:
            c.put(io.BytesIO(text.encode()), upload)
            result = runner(install.replace(" SOURCE ", f" {shlex.quote(upload)} ", 1),
                            hide=True, warn=True, in_stream=False)
        finally:
            run(c, f"rm -f {shlex.quote(upload)}")
    elif not sudo:
        atomic_write(Path(path), text, mode)
        if owner:
            result = c.run(f"chown {shlex.quote(owner)} {target}", hide=True, warn=True,
                           in_stream=False)
        else:
            return
    else:  # local, needs root: stage in a private temp dir, install with sudo
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "content"
            atomic_write(source, text, 0o644)
            os.chmod(tmp, 0o755)
            result = c.sudo(install.replace(" SOURCE ", f" {shlex.quote(str(source))} ", 1),
                            hide=True, warn=True, in_stream=False)
    if not result.ok:
        raise StepFailed(Write(path, text, mode, sudo, owner), result.stderr or result.stdout)


class StepFailed(InfraError):
    def __init__(self, step: Step, output: str):
        super().__init__(f"step failed: {step}\n{output.strip()}")


def apply_plan(c: Any, plan: Plan, dry: bool, say: Callable[[str], None],
               is_root: bool | None = None) -> bool:
    """Show the plan and run it unless ``dry``; True when something was (or would be) done."""
    from ..interrupt import current, track

    for note in plan.notes:
        say(f"note: {note}")
    if plan.empty:
        say(f"{plan.title}: nothing to do")
        return False
    dry_note = " (dry run: nothing changed)" if dry else ""
    say(f"{plan.title}: {len(plan.actions)} action(s){dry_note}")
    root = _login_is_root(c) if is_root is None and not dry else bool(is_root)
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
