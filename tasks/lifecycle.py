"""Bring-up and day-2 operations: up, down, restart, ps, logs, pull, status.

Thin: arguments in, the core (infra.bringup) plans and applies, rich prints. Every engine call
goes through ``c.run`` (docker / docker compose CLI).
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any

from invoke import Collection, Exit

from ._common import LiveView, console, exit_interrupted, infra_task, load

if TYPE_CHECKING:
    from infra.bringup.run import Job, Planned
    from infra.project import Project

STACK_HELP = "stack to act on (repeatable); default: every stack"
JSON_HELP = "print one JSON document instead of the table (its shape: infra/jsonout.py)"
DRY_HELP = "print the plan (what would be created, fixed, started or stopped); touch nothing"


def _helper_image(project: Project) -> str:
    from infra.bringup.session import helper_image

    return helper_image(project.config)


def _engine_host(c: Any) -> Any:
    from infra.bringup.enginehost import read_engine_host

    return read_engine_host(c)


def _plan_up(c: Any, project: Project, stack: list[str] | None, no_deps: bool, dry: bool,
             timeout: int = 0, jobs: int = 4, rollback: bool = True, action: str = "up"
             ) -> tuple[Job, Planned]:
    """The run (stacks rendered, written unless dry) and its plan against the engine."""
    from infra.bringup import plan, session
    from infra.bringup.run import Job, plan_run

    names = plan.select_stacks(project.catalogue, stack, no_deps)
    job = Job.of(project, session.prepare_stacks(project, names, write=not dry), timeout, jobs,
                 rollback=rollback, restore=_restore_here(project), action=action)
    return job, plan_run(c, job)


def _restore_here(project: Project) -> Any:
    """A rollback's files, written where this machine's rendered stacks are."""
    from infra.render import stack_output_dir, write_stack

    def restore(name: str, files: Any) -> None:
        config = project.config
        write_stack(stack_output_dir(config, name), dict(files), config.build_dir)

    return restore


@infra_task(iterable=["stack"], help={
    "stack": "stack to bring up (repeatable), with its dependencies; default: every stack",
    "no_deps": "bring up only the named stacks, not their dependencies",
    "dry": DRY_HELP,
    "timeout": "seconds each stack may take to become healthy (default: HEALTH_TIMEOUT)",
    "jobs": "stacks brought up at the same time when independent (default 4; 1: one by one)",
    "events": "also write each state change as a JSON line to this file ('-': standard "
              "output; the shape is in infra/events.py)",
    "no_rollback": "keep a stack whose change failed its health gate as it is (for "
                   "debugging), instead of returning it to its last healthy revision",
}, interrupts="poll")
def up(c, stack=None, no_deps=False, dry=False, timeout=0, jobs=4, events="", no_rollback=False,
       profile=""):
    """Bring the stacks up in dependency order, each one health-gated.

    Every stack it changes gets a revision in the deploy history (invoke history). A stack
    that was healthy and fails its gate after a change goes back to its last healthy
    revision, and the run still fails, saying both (--no-rollback: keep the failed change).

    Ctrl-C or SIGTERM: nothing new starts, what runs stops, and it says what finished, what
    was cut off and what never started; the same command resumes (exit 130, or 143)."""
    _on_this_machine(c, "up")
    project = load(profile, write=not dry)
    bring_up(c, project, stack, no_deps, dry, timeout, jobs, events, not no_rollback)


def bring_up(c: Any, project: Project, stack: list[str] | None, no_deps: bool = False,
             dry: bool = False, timeout: int = 0, jobs: int = 4, events: str = "",
             rollback: bool = True, action: str = "up") -> None:
    """The body of ``up`` (and of ``update``'s bring-up, recorded as ``action``)."""
    from infra.bringup import report
    from infra.events import Events
    from infra.interrupt import Interrupted, Report, current

    out = console()
    from infra.bringup.certificates import ensure_certificates

    cancel = current()
    everything = stack or project.catalogue.names()
    stream = Events(events)
    try:
        stream.emit("step", step="certificates", state="started")
        cert_steps = ensure_certificates(c, project, dry)
        cancel.check()
        stream.emit("step", step="plan", state="started")
        job, planned = _plan_up(c, project, stack or None, no_deps, dry, timeout, jobs,
                                rollback, action)
        cancel.check()
    except Interrupted as exc:
        exc.report = Report((), (), tuple(everything))  # type: ignore[attr-defined]
        stream.emit(**exc.report.as_event(exc.signum))  # type: ignore[attr-defined]
        raise
    config = project.config
    names, up_plan = job.names, planned.up_plan
    if dry:
        lines = [f"would {line}" for line in cert_steps]
        lines += [f"would create network {n}" for n in up_plan.networks_to_create]
        lines += [f"would ensure {config.path('DATA_ROOT') / f.source} exists"
                  + (f", owned by {f.owner_text}" if f.owner else "")
                  + (f", mode {f.mode}" if f.mode else "") for f in up_plan.ownership]
        lines += [f"would give {k.stack}/{k.service} its own copy of {k.source} "
                  f"({config.path('DATA_ROOT') / k.copy}, owned by {k.owner_text}, mode 0400)"
                  for k in up_plan.keys]
        lines += [f"would {line}" for line in report.up_plan_lines(up_plan)
                  if not line.startswith("create network")]
        for line in lines:
            out.print(line)
        return
    for line in cert_steps:
        out.print(f"[cyan]{line}[/cyan]")
    if up_plan.empty:
        out.print(f"[green]up to date[/green]: {', '.join(names)} unchanged since the last "
                  "successful bring-up")
        stream.emit("done", ok=True, stacks=dict.fromkeys(names, "unchanged"))
        _print_urls(project, names, {n: "unchanged" for n in names})
        return
    stream.emit("step", step="engine", state="started")
    outcomes = _run_bringup(c, job, planned, stream)
    if cancel.is_set():
        from infra.bringup.schedule import interruption_report

        interrupted = interruption_report(outcomes)
        stream.emit(**interrupted.as_event(cancel.signum))
        exit_interrupted(interrupted, cancel.signum)
    failure = report.failure_report(outcomes)
    stream.emit("done", ok=all(o.ok for o in outcomes.values()),
                stacks={n: o.status for n, o in outcomes.items()},
                **({"failure": {"summary": failure.summary, "lines": list(failure.lines),
                                "fixes": list(failure.fixes)}} if failure else {}))
    stream.close()
    _print_urls(project, [n for n, o in outcomes.items() if o.ok],
                {n: o.status for n, o in outcomes.items()})
    if failure:  # one block: each cause once, the evidence, then what stopped and the fix
        for line in failure.lines:  # whole lines: a cause is never cut or re-wrapped
            out.print(line, markup=False, highlight=False, soft_wrap=True)
        raise Exit(failure.final, code=1)


def _on_this_machine(c: Any, task: str) -> None:
    """`fab -H box up` would render here and hand the host compose files it does not have:
    bringing stacks up on a host is `deploy` (render for that host, upload, bring up there)."""
    host = getattr(c, "host", None)
    if host:
        raise Exit(f"error: {task} works on this machine's engine; for {host} run "
                   f"`fab -H {host} deploy` (or `invoke deploy --host {host}`), which renders "
                   "for the host, uploads what changed and brings its stacks up there", code=2)


def _run_bringup(c: Any, job: Job, planned: Planned, stream: Any) -> dict[str, Any]:
    """The run with this terminal's view: live, or a plain line per change (CI, pipes)."""
    from infra.bringup import report, schedule
    from infra.bringup.run import apply_run
    from infra.interrupt import Interrupted, Report

    out = console()

    def changed(stack: str, state_: str, elapsed: float) -> None:
        stream.emit("stack", stack=stack, state=state_, elapsed=round(elapsed, 1))
        if not out.is_terminal and state_ != schedule.WAITING:
            # CI, pipes: one plain line per change, no control codes
            out.print(f"{stack}: {state_} ({elapsed:.1f}s)", markup=False, highlight=False)

    def service_changed(stack: str, service: str, state_: str, detail: str) -> None:
        stream.emit("service", stack=stack, service=service, state=state_, detail=detail)
        if not out.is_terminal:
            out.print(f"{stack}/{service}: {detail}", markup=False, highlight=False,
                      soft_wrap=True)

    changes: list[str] = []
    progress = schedule.Progress(listener=changed, service_listener=service_changed)
    try:
        with _live(progress) if out.is_terminal else contextlib.nullcontext():
            return apply_run(c, job, planned, progress, changes.append)
    except Interrupted as exc:
        if not progress.snapshot():  # before the first stack: while preparing the engine
            exc.report = Report((), ("networks and volume ownership",),  # type: ignore[attr-defined]
                                tuple(job.names))
            stream.emit(**exc.report.as_event(exc.signum))  # type: ignore[attr-defined]
        raise
    finally:
        if changes:
            out.print(report.prepared_summary(changes), markup=False, highlight=False)


class _live(LiveView):
    """One line per stack: its state, elapsed time, and what it is on."""

    def __init__(self, progress: Any):
        self.progress = progress

    def table(self) -> Any:
        from rich.markup import escape
        from rich.table import Table

        colours = {"healthy": "green", "unchanged": "green", "failed": "red", "blocked": "red",
                   "not started": "yellow", "starting": "cyan", "interrupted": "yellow"}
        table = Table(box=None, show_header=False)
        for stack, state, elapsed in self.progress.snapshot():
            colour = colours.get(state, "dim")
            table.add_row(stack, f"[{colour}]{state}[/{colour}]", f"{elapsed:5.1f}s",
                          f"[dim]{escape(self.progress.doing(stack))}[/dim]")
        return table


def _print_urls(project: Project, names: list[str], statuses: dict[str, str]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from infra.bringup import report

    https = project.config.get("TRAEFIK_HTTPS_PORT", "443")
    table = Table(title="Routed URLs")
    for column in ("stack", "service", "url", "status"):
        table.add_column(column)
    for name, service, url, status in report.url_rows(project.catalogue, names, statuses, https):
        colour = "green" if status in ("healthy", "unchanged") else "red"
        table.add_row(name, service, escape(url), f"[{colour}]{escape(status)}[/{colour}]")
    if table.row_count:
        console().print(table)


def _confirm_volume_deletion(names: list[str], yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise Exit("error: --volumes deletes the data of " + ", ".join(names)
                   + "; refusing without a terminal to confirm. Pass --yes to confirm.", code=2)
    answer = input(f"Delete the volumes and data of {', '.join(names)}? Type 'yes': ")
    if answer.strip().lower() != "yes":
        raise Exit("aborted: nothing was stopped or deleted", code=1)


@infra_task(iterable=["stack"], help={
    "stack": STACK_HELP, "dry": DRY_HELP,
    "volumes": "also delete the stacks' volumes and DATA_ROOT data (asks for confirmation)",
    "yes": "confirm --volumes without asking",
})
def down(c, stack=None, volumes=False, yes=False, dry=False, profile=""):
    """Stop and remove the stacks in reverse dependency order; data stays unless --volumes."""
    from infra.bringup import apply, facts, plan, report, state
    from infra.bringup.ownership import ownership_fixes

    project = load(profile, write=not dry)
    if volumes and not dry:  # before touching the engine at all
        _confirm_volume_deletion(list(stack or project.catalogue.names()), yes)
    containers = facts.containers_by_project(facts.read_containers(c))
    down_plan = plan.plan_down(project.catalogue, stack or None, containers, volumes)
    if dry:
        for line in report.down_plan_lines(down_plan):
            console().print(f"would {line}")
        return
    helper = _helper_image(project)
    data_root = str(project.config.path("DATA_ROOT"))
    from infra.interrupt import track

    steps = track(list(down_plan.order))
    for name in down_plan.order:
        steps.begin(name)
        step = down_plan.steps[name]
        if step.action == plan.STOP or volumes:
            apply.down_stack(c, None, plan.project_name(name), volumes)
        if volumes:
            sources = [f.source for f in ownership_fixes([project.catalogue[name]])]
            apply.remove_data(c, helper, data_root, sources)
        state.forget_stack(project.config.build_dir, name)
        console().print(f"{'stopped' if step.action == plan.STOP else 'not running'}: {name}"
                        + (" (volumes and data deleted)" if volumes else ""))
        steps.finish(name)


def _selected(project: Project, stack: list[str] | None) -> list[str]:
    from infra.bringup import plan

    return plan.select_stacks(project.catalogue, stack or None, no_deps=True)


def _compose_base(name: str) -> str:
    from infra.bringup.commands import ComposeTarget
    from infra.bringup.plan import project_name

    # day-2 commands work by project name: the rendered files are not needed to find containers
    return ComposeTarget.by_name(project_name(name)).base()


@infra_task(iterable=["stack", "service"], help={"stack": STACK_HELP,
                                                 "service": "service to restart (repeatable)"})
def restart(c, stack=None, service=None, profile=""):
    """Restart the stacks' containers (all, or the named services)."""
    import shlex

    project = load(profile)
    names = _selected(project, stack)
    from infra.interrupt import track

    steps = track(names)
    for name in names:
        steps.begin(name)
        c.run(f"{_compose_base(name)} restart " + " ".join(shlex.quote(s) for s in service or ()),
              warn=True)
        steps.finish(name)


@infra_task(iterable=["stack"], help={"stack": STACK_HELP, "json": JSON_HELP})
def ps(c, stack=None, json=False, profile=""):
    """List the stacks' containers (docker compose ps; --json: for scripts)."""
    project = load(profile, write=False)
    if json:
        from infra import jsonout
        from infra.bringup import facts, report

        containers = facts.containers_by_project(facts.read_containers(c))
        rows = report.status_rows(project.catalogue, _selected(project, stack), containers,
                                  project.config.get("TRAEFIK_HTTPS_PORT", "443"))
        print(jsonout.document("ps", services=jsonout.status_rows(rows)))
        return
    for name in _selected(project, stack):
        console().print(f"[bold]{name}[/bold]")
        c.run(f"{_compose_base(name)} ps -a", warn=True)


@infra_task(iterable=["stack", "service"], help={
    "stack": STACK_HELP, "service": "only this service (repeatable)",
    "follow": "keep following new lines", "tail": "lines to show per container (default: all)"})
def logs(c, stack=None, service=None, follow=False, tail=-1, profile=""):
    """Show the stacks' logs."""
    import shlex

    project = load(profile, write=False)
    names = _selected(project, stack)
    if service:
        owners = {s.name: st.name for st in project.catalogue.stacks.values()
                  for s in st.services}
        unknown = [s for s in service if s not in owners]
        if unknown:
            raise Exit(f"error: unknown service {', '.join(unknown)} (--service); "
                       f"choose from {', '.join(sorted(owners))}", code=2)
        names = [n for n in names if n in {owners[s] for s in service}] if not stack else names
    args = ["logs", "--no-color"] + (["-f"] if follow else []) + (
        [f"--tail {int(tail)}"] if tail >= 0 else [])
    for name in names:
        own = [s for s in service or () if s in {x.name for x in project.catalogue[name].services}]
        if service and not own:
            continue
        c.run(f"{_compose_base(name)} {' '.join(args)} " + " ".join(shlex.quote(s) for s in own),
              warn=True, pty=follow and sys.stdout.isatty())


@infra_task(iterable=["stack"], help={"stack": STACK_HELP})
def pull(c, stack=None, profile=""):
    """Pull the stacks' images (through IMAGE_MIRROR when it is set)."""
    from infra.bringup import session

    _on_this_machine(c, "pull")
    project = load(profile)
    names = _selected(project, stack)
    from infra.interrupt import current, track

    steps = track(names)
    for name, prepared in session.prepare_stacks(project, names).items():
        from infra.bringup.commands import compose

        steps.begin(name)
        console().print(f"[bold]{name}[/bold]")
        result = c.run(compose(prepared.target, "pull"), warn=True)
        current().check()  # its pull got the signal: interrupted, not failed
        if not result.ok:
            raise Exit(f"error: pulling the images of {name} failed", code=1)
        steps.finish(name)


@infra_task(iterable=["stack"], help={"stack": STACK_HELP, "json": JSON_HELP})
def status(c, stack=None, json=False, profile=""):
    """A table of every service: stack, state, health, ports, URL (--json: for scripts)."""
    from rich.markup import escape
    from rich.table import Table

    from infra.bringup import facts, report

    project = load(profile, write=False)
    names = _selected(project, stack)
    containers = facts.containers_by_project(facts.read_containers(c))
    rows = report.status_rows(project.catalogue, names, containers,
                              project.config.get("TRAEFIK_HTTPS_PORT", "443"))
    if json:
        from infra import jsonout

        print(jsonout.document("status", services=jsonout.status_rows(rows)))
        return
    table = Table(title="Stacks")
    for column in ("stack", "service", "state", "health", "ports", "url"):
        table.add_column(column)
    for row in rows:
        colour = "green" if row.state == "running" or row.state.startswith("done (0") else "red"
        table.add_row(row.stack, row.service, f"[{colour}]{escape(row.state)}[/{colour}]",
                      escape(row.health), escape(row.ports), escape(row.url))
    console().print(table)




@infra_task(iterable=["stack"], help={"stack": STACK_HELP,
                                      "dry": "only read and report the current owners"})
def fix(c, stack=None, dry=False, profile=""):
    """Create the stacks' data folders and fix their owners, as the engine sees them (P21)."""
    from infra.bringup import apply
    from infra.bringup.ownership import ownership_fixes

    project = load(profile, write=not dry)
    stacks = [project.catalogue[n] for n in _selected(project, stack)]
    changes = apply.apply_ownership(c, _helper_image(project),
                                    str(project.config.path("DATA_ROOT")),
                                    ownership_fixes(stacks), dry=dry,
                                    on_host=_engine_host(c).chown_on_host)
    for change in changes:
        console().print(f"{change.action:13} {change.source} {change.before} {change.after}")


volumes = Collection("volumes")
volumes.add_task(fix)
ns = Collection(up, down, restart, ps, logs, pull, status)  # root tasks (tasks/__init__.py)
ns.add_collection(volumes)
