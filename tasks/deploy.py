"""Deploy stacks to the inventory hosts (env/inventory.yaml) over SSH, in parallel.

One body for both entry points: ``invoke deploy --host a --host b`` and ``fab -H a,b deploy``
(fab's executor, infra/deploy/fabexec.py, hands the -H list to this task as --host instead
of calling it once per host, so hosts run in parallel threads, not one after another).
"""

from __future__ import annotations

from typing import Any

from invoke import Collection, Exit

from ._common import LiveView, console, exit_interrupted, infra_task, load


@infra_task(iterable=["host", "stack"], help={
    "host": "inventory name or address (repeatable; user@ and :port allowed); "
            "fab: -H a,b",
    "all": "deploy every host of env/inventory.yaml",
    "stack": "deploy only this stack (repeatable) on the hosts it is placed on",
    "dry": "render and compare checksums; print what would be uploaded; touch nothing",
    "timeout": "seconds each stack may take to become healthy (default: HEALTH_TIMEOUT)",
    "jobs": "stacks brought up at once on each host when independent (default 4)",
    "events": "also write each state change as a JSON line to this file ('-': standard "
              "output; infra/events.py, each with its host)",
    "no_rollback": "keep a stack whose change failed its health gate as it is (for "
                   "debugging), instead of returning it to its last healthy revision",
}, interrupts="poll")
def deploy(c, host=None, all=False, stack=None, dry=False, timeout=0, jobs=4, events="",
           no_rollback=False, profile=""):
    """Render per host, upload what changed, bring its stacks up health-gated; hosts in parallel.

    Prints a table of host, stacks, result, uploads and time; a host that cannot be reached or
    whose stacks do not become healthy is named with the step and the whole reason, the
    others still deploy, and the exit code is non-zero. A host whose link is lost is noticed
    within ~20 s. Ctrl-C or SIGTERM: every connection closes at once, nothing new starts, and
    it says which hosts finished, which were cut off (and in which step), which never
    started; the same command resumes (exit 130, or 143).
    """
    import threading

    from infra.deploy import run, summary
    from infra.deploy.targets import resolve_targets, stacks_per_target
    from infra.inventory import inventory_of

    names = list(host or [])
    if not names and not all and getattr(c, "host", None):
        names = [c.host]  # called through a stock fab executor: this connection's host
    # generates missing secrets once, before the threads (a dry run: in memory only)
    project = load(profile, write=not dry)
    catalogue, config = project.catalogue, project.config
    inventory = inventory_of(config, catalogue)
    targets = resolve_targets(inventory, names, every=all)
    per_target = stacks_per_target(targets, list(stack or []), catalogue.names())
    from infra.bringup import schedule
    from infra.events import Events

    out = console()
    lock = threading.Lock()
    stream = Events(events)
    live = _HostsView() if out.is_terminal else None

    def say(name: str, message: str) -> None:
        stream.emit("host", host=name, message=message)
        if live is not None:
            live.note(name, message)
            return
        with lock:
            out.print(f"[bold]{name}[/bold] {message}", markup=True, highlight=False)

    def progress_for(name: str) -> Any:
        def stack_changed(stack_: str, state: str, elapsed: float) -> None:
            stream.emit("stack", host=name, stack=stack_, state=state,
                        elapsed=round(elapsed, 1))

        def service_changed(stack_: str, service: str, state: str, detail: str) -> None:
            stream.emit("service", host=name, stack=stack_, service=service, state=state,
                        detail=detail)
            if live is None:
                say(name, f"{stack_}/{service}: {detail}")

        progress = schedule.Progress(listener=stack_changed, service_listener=service_changed)
        if live is not None:
            live.hosts[name] = progress
        return progress

    for target in targets:
        if target.name in per_target:
            say(target.name, f"-> {target.host.user}@{target.host.address}:{target.host.port} "
                             f"stacks {', '.join(per_target[target.name])}")
    options = run.DeployOptions(timeout=int(timeout), dry=dry, jobs=max(1, int(jobs)),
                                rollback=not no_rollback,
                                progress_for=progress_for)
    if live is not None:
        with live:
            results = run.deploy_all(targets, per_target, project, options, say)
    else:
        results = run.deploy_all(targets, per_target, project, options, say)
    from infra.interrupt import current

    cancel = current()
    if cancel.is_set():
        interrupted = summary.interruption_report(results)
        stream.emit(**interrupted.as_event(cancel.signum))
        _print_summary(results)
        exit_interrupted(interrupted, cancel.signum)
    stream.emit("done", ok=not [r for r in results if not r.ok],  # `all` is a flag here
                hosts={r.host: {"result": r.result, "reason": r.reason} for r in results})
    stream.close()
    _print_summary(results)
    code = summary.exit_code(results)
    if code:
        failed = [r for r in results if not r.ok]
        # every cause whole, with its fix, last: never cut to a line
        raise Exit("error: deploy failed on " + ", ".join(r.host for r in failed) + "\n"
                   + "\n".join(f"{r.host}: {r.reason}" for r in failed), code=code)


class _HostsView(LiveView):
    """A terminal's live view of a deploy: a section per host (its last step), its stacks
    with their state and time, and what each is on (a service and what it waits for)."""

    def __init__(self) -> None:
        self.hosts: dict[str, Any] = {}  # host -> schedule.Progress
        self.notes: dict[str, str] = {}

    def note(self, host: str, message: str) -> None:
        self.notes[host] = message

    def table(self) -> Any:
        from rich.markup import escape
        from rich.table import Table

        table = Table(box=None, show_header=False)
        for host in sorted(set(self.hosts) | set(self.notes)):
            table.add_row(f"[bold]{escape(host)}[/bold]", "", "",
                          f"[dim]{escape(self.notes.get(host, ''))}[/dim]")
            progress = self.hosts.get(host)
            if progress is None:
                continue
            for stack, state, elapsed in progress.snapshot():
                table.add_row(f"  {escape(stack)}", escape(state), f"{elapsed:5.1f}s",
                              f"[dim]{escape(progress.doing(stack))}[/dim]")
        return table


def _print_summary(results: list[Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from infra.deploy import summary

    out = console()
    for result in results:
        for line in result.details:
            out.print(f"{result.host}: {line}", markup=False)
    table = Table(title="Deploy")
    for header in summary.HEADERS:
        table.add_column(header)
    colours = {summary.OK: "green", summary.UNCHANGED: "green", summary.FAILED: "red"}
    for row, result in zip(summary.rows(results), results, strict=True):
        colour = colours.get(result.result, "yellow")
        table.add_row(*(escape(c) for c in row[:2]), f"[{colour}]{escape(row[2])}[/{colour}]",
                      *(escape(c) for c in row[3:]))
    out.print(table)


ns = Collection(deploy)  # root tasks (tasks/__init__.py)
