"""The deploy history and rollback: what ran, and going back to it.

Thin: the history is infra.history, the rollback run infra.bringup.run (the same bring-up as
up and deploy, health-gated). A host's history is kept on this machine, beside its deploy
state (BUILD_DIR/hosts/<host>/<profile>/history).
"""

from __future__ import annotations

from typing import Any

from invoke import Collection, Exit

from ._common import console, infra_task, load


def _state_dir(project: Any, host: str) -> Any:
    if not host:
        return project.config.build_dir
    from infra.deploy.layout import host_state_dir
    from infra.inventory import inventory_of

    inventory = inventory_of(project.config, project.catalogue)
    if host not in inventory.hosts:
        raise Exit(f"error: --host: {host!r} is not in env/inventory.yaml (hosts: "
                   f"{', '.join(inventory.hosts) or 'none'})", code=2)
    return host_state_dir(project.config, host)


def _stacks(project: Any, stack: list[str] | None) -> list[str]:
    names = list(stack or []) or project.catalogue.names()
    unknown = [n for n in names if n not in project.catalogue.stacks]
    if unknown:
        raise Exit(f"error: --stack: unknown stack {', '.join(unknown)} (stacks: "
                   f"{', '.join(project.catalogue.names())})", code=2)
    return names


HEADERS = ("stack", "rev", "time", "action", "result", "who", "digest", "images", "health",
           "kept", "detail")


def _row(revision: Any) -> tuple[Any, ...]:
    from infra.tags import tag_of

    images = ", ".join(f"{i.service}={tag_of(i.reference) or i.reference}"
                       for i in revision.images)
    slowest = max(revision.health.values(), default=0.0)
    action = (f"{revision.action} to {revision.restored}" if revision.restored
              else revision.action)
    return (revision.stack, revision.rev, revision.time, action, revision.result,
            revision.who, revision.digest[:12], images,
            f"{slowest:.1f}s" if revision.health else "", "yes" if revision.kept else "",
            revision.detail)


@infra_task(iterable=["stack"], help={
    "stack": "only this stack (repeatable); default: every stack",
    "host": "an inventory host's history (its deploys); default: this machine's",
    "json": "print one JSON document: every revision with its images, image IDs and "
            "registry digests, per-service health times (infra/jsonout.py)",
})
def history(c, stack=None, host="", json=False, profile=""):
    """The deploy history: every change of each stack, oldest first, as a table.

    A revision is one up, deploy, update or rollback that brought the stack up: when, who,
    the rendered files' digest, each image with the ID and registry digest it ran, the
    result and the slowest service's time to health. 'kept' revisions can be rolled back to
    (invoke rollback --stack NAME --to REV). Kept beyond `down`."""
    from infra import history as hist

    project = load(profile, write=False)
    folder = _state_dir(project, host)
    revisions = [r for name in _stacks(project, stack) for r in hist.load(folder, name)]
    if json:
        from dataclasses import asdict

        from infra import jsonout

        print(jsonout.document("history", host=host, revisions=[
            {**asdict(r), "health": dict(r.health)} for r in revisions]))
        return
    from rich.markup import escape
    from rich.table import Table

    if not revisions:
        console().print(f"no deploy history yet in {folder / hist.HISTORY_DIR} "
                        "(up and deploy record one per change)")
        return
    table = Table(title=f"Deploy history{f' of {host}' if host else ''}")
    for header in HEADERS:
        table.add_column(header)
    for revision in revisions:
        colour = "green" if revision.good else "red"
        cells = [escape(str(x)) for x in _row(revision)]
        cells[4] = f"[{colour}]{cells[4]}[/{colour}]"
        table.add_row(*cells)
    console().print(table)


@infra_task(help={
    "stack": "the stack to take back",
    "to": "the revision to bring back (default: the last healthy one whose files differ "
          "from what runs now; see invoke history)",
    "host": "roll back the stack on this inventory host, over SSH (fab -H HOST rollback)",
    "yes": "go ahead although an image changes its major version (its data may have been "
           "migrated by the newer version: data is never rolled back)",
    "dry": "say which revision would come back and what changes; touch nothing",
    "timeout": "seconds the stack may take to become healthy (default: HEALTH_TIMEOUT)",
}, interrupts="poll")
def rollback(c, stack="", to=0, host="", yes=False, dry=False, timeout=0, profile=""):
    """Bring a stack back to an earlier healthy revision: its files and images, health-gated.

    The revision's own rendered files come back (never a render of today's settings), with
    the images it ran. Data is not rolled back: when an image's major version differs, it
    refuses without --yes. The stacks that need this one are checked afterwards. The next
    `up` renders from your settings again: change them too, or it brings the newer revision
    back."""
    if not stack:
        raise Exit("error: --stack: name the stack to roll back (invoke history shows them)",
                   code=2)
    project = load(profile, write=False)
    _stacks(project, [stack])
    if host:
        _rollback_host(project, stack, to or None, host, yes, dry, timeout, profile)
        return
    from infra.bringup.run import plan_rollback, rollback_job
    from infra.render import stack_output_dir, write_stack

    chosen = plan_rollback(project.config.build_dir, stack, to or None)
    _tell(chosen, yes, dry)
    if dry:
        return

    def restore(name: str, files: Any) -> None:
        write_stack(stack_output_dir(project.config, name), dict(files),
                    project.config.build_dir)

    job = rollback_job(project, chosen, stack_output_dir(project.config, stack), restore,
                       int(timeout))
    restore(stack, job.stacks[stack].contents)
    _run_rollback(c, project, job, stack, chosen)


def _tell(chosen: Any, yes: bool, dry: bool) -> None:
    out = console()
    target, running = chosen.target, chosen.running
    out.print(f"{chosen.stack}: revision {running.rev} runs now ({running.action}, "
              f"{running.result}); bringing back revision {target.rev} ({target.time}, "
              f"{target.action})", markup=False, highlight=False)
    for use in target.images:
        now = running.image_of(use.service)
        if now is None or now.reference != use.reference:
            out.print(f"  {use.service}: {now.reference if now else '(none)'} -> "
                      f"{use.reference}", markup=False, highlight=False)
    out.print("  data is not rolled back: volumes stay as they are", markup=False)
    if chosen.majors and not yes:
        lines = "\n".join(f"  {m}" for m in chosen.majors)
        raise Exit(f"error: an image changes its major version between the revisions:\n"
                   f"{lines}\nthe newer version may have migrated the data, which the older "
                   "one may not read; back the data up, then run again with --yes", code=2)
    if dry:
        out.print("dry run: nothing changed", markup=False)


def _run_rollback(c: Any, project: Any, job: Any, stack: str, chosen: Any) -> None:
    from infra.bringup import schedule
    from infra.bringup.report import failure_report
    from infra.bringup.run import apply_run, dependents_health, plan_run

    out = console()
    planned = plan_run(c, job)
    lines: list[str] = []
    outcomes = apply_run(c, job, planned, schedule.Progress(), lines.append)
    outcome = outcomes[stack]
    for line in lines:
        out.print(line, markup=False, highlight=False)
    if not outcome.ok:
        failure = failure_report(outcomes)
        for line in failure.lines if failure else ():
            out.print(line, markup=False, highlight=False, soft_wrap=True)
        raise Exit(f"error: the rollback of {stack} to revision {chosen.target.rev} did not "
                   f"become healthy: {outcome.detail}", code=1)
    out.print(f"[green]{stack}: revision {chosen.target.rev} is back and healthy[/green] "
              f"({outcome.elapsed:.1f}s)")
    problems = {n: p for n, p in dependents_health(c, project.catalogue, stack).items() if p}
    for name, problem in problems.items():
        out.print(f"[yellow]{name} (needs {stack}): {problem}[/yellow]")
    if problems:
        raise Exit(f"error: stacks that need {stack} are not healthy after the rollback: "
                   f"{', '.join(problems)} (invoke up --stack NAME brings them up again)",
                   code=1)


def _rollback_host(project: Any, stack: str, to: int | None, host: str, yes: bool, dry: bool,
                   timeout: int, profile: str) -> None:
    from infra.deploy import run
    from infra.deploy.targets import resolve_targets
    from infra.inventory import inventory_of

    inventory = inventory_of(project.config, project.catalogue)
    (target,) = resolve_targets(inventory, [host])
    if not target.in_inventory:
        raise Exit(f"error: --host: {host!r} is not in env/inventory.yaml", code=2)
    conn = run.connect(target)
    try:
        host_project, remote = run.host_project(conn, target, project)
        from infra.bringup.run import plan_rollback, rollback_job

        chosen = plan_rollback(host_project.config.build_dir, stack, to)
        _tell(chosen, yes, dry)
        if dry:
            return
        restore = run.remote_restore(conn, remote)
        job = rollback_job(host_project, chosen, remote.stack_dir(stack), restore, int(timeout))
        restore(stack, job.stacks[stack].contents)
        _run_rollback(conn, host_project, job, stack, chosen)
    finally:
        conn.close()


ns = Collection(history, rollback)  # root tasks (tasks/__init__.py)
