"""Backups with restic: back up, list, restore, and export the repository's password.

Thin: what a snapshot holds is infra.backup (from the catalogue's ``backup:`` per volume), the
commands run through infra.backuprun; the bring-up after a restore is up's, health-gated.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from invoke import Collection, Exit

from ._common import console, infra_task, load

STACK_HELP = "stack to act on (repeatable); default: every stack with something to back up"


def _paths(project: Any, name: str) -> Any:
    from infra.backuprun import StackPaths, in_engine
    from infra.bringup.commands import ComposeTarget, compose_up
    from infra.bringup.plan import project_name
    from infra.render import stack_output_dir

    config = project.config
    folder = stack_output_dir(config, name)
    rendered = ComposeTarget(project_name(name), folder, folder / "compose.yaml")
    timeout = int(config["HEALTH_TIMEOUT"])

    def up(services: Any) -> str:
        return compose_up(rendered, list(services), timeout, no_deps=True)

    staging = config.build_dir / "backup" / name
    return StackPaths(str(config.path("DATA_ROOT")), str(staging),
                      ComposeTarget.by_name(project_name(name)).base(), up,
                      in_engine(config.flag("ROOTLESS"), config.get("DOCKER_SOCKET")))


def _selected(project: Any, stack: list[str] | None) -> list[tuple[str, Any]]:
    from infra.backup import plan_stack

    names = list(stack or []) or project.catalogue.names()
    unknown = [n for n in names if n not in project.catalogue.stacks]
    if unknown:
        raise Exit(f"error: --stack: unknown stack {', '.join(unknown)} (stacks: "
                   f"{', '.join(project.catalogue.names())})", code=2)
    plans = [(n, plan_stack(project.catalogue[n])) for n in names]
    return [(n, p) for n, p in plans if not p.empty or stack]


def _host_tag(project: Any) -> str:
    import socket  # here, not at start-up: `invoke --list` stays instant

    return project.config.host or socket.gethostname()


def _require_root_or_say(c: Any, rootless: bool = False) -> None:
    """restic reads every service's files, owned by their containers' users: as root, or,
    with a rootless engine, as its user inside the engine's user namespace."""
    if rootless or getattr(c, "host", None):
        return
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise Exit("error: backup and restore read and write files owned by the containers' "
                   "users: run them as root (sudo -E invoke backup ...), or as the user of a "
                   "rootless engine (ROOTLESS=true)", code=2)


@infra_task(iterable=["stack"], help={"stack": STACK_HELP}, interrupts="raise")
def backup(c, stack=None, profile=""):
    """Snapshot each stack in turn into the restic repository (BACKUP_REPOSITORY).

    Databases are dumped in their running containers; services on single-file databases
    stop for the seconds of the snapshot and start again, health-gated, even when it fails;
    the rest is read live (the catalogue's backup: per volume; invoke plan shows it).
    Snapshots are tagged with stack, host and deploy revision, then thinned to
    BACKUP_KEEP_DAILY/WEEKLY/MONTHLY. Prints a table: stack, files, size added, duration.
    The repository's password is BACKUP_PASSWORD in env/secrets.env: without it the backups
    cannot be read; export it (invoke backup.password --to FILE) and keep it elsewhere."""
    from rich.table import Table

    from infra import history
    from infra.backup import human_bytes
    from infra.backuprun import back_up_stack, ensure_repository, forget, repository_of
    from infra.interrupt import track

    project = load(profile)
    _require_root_or_say(c, project.config.flag("ROOTLESS"))
    chosen = _selected(project, stack)
    repo = repository_of(project)
    out = console()
    if ensure_repository(c, repo):
        out.print(f"created the backup repository {repo.url} (its password: BACKUP_PASSWORD "
                  "in env/secrets.env; export it now: invoke backup.password --to FILE)",
                  markup=False, highlight=False)
    keep = {kind: int(project.config[f"BACKUP_KEEP_{kind.upper()}"])
            for kind in ("daily", "weekly", "monthly")}
    steps = track([name for name, _ in chosen])
    table = Table(title="Backup")
    for column in ("stack", "snapshot", "files", "new", "size added", "duration"):
        table.add_column(column)
    for name, plan in chosen:
        steps.begin(name)
        revisions = history.load(project.config.build_dir, name)
        tags = {"stack": name, "host": _host_tag(project),
                "rev": str(revisions[-1].rev) if revisions else "0"}
        with out.status(f"{name}: backing up", spinner="dots") as status:
            summary = back_up_stack(c, plan, _paths(project, name), repo, tags,
                                    f"stackyard-{_host_tag(project)}",
                                    lambda line: status.update(line))
            forget(c, repo, name, keep)
        table.add_row(name, summary.snapshot[:8], str(summary.files_total),
                      str(summary.files_new), human_bytes(summary.bytes_added),
                      f"{summary.seconds:.1f}s")
        steps.finish(name)
    out.print(table)


@infra_task(iterable=["stack"], help={"stack": STACK_HELP,
                                      "json": "print the snapshots as one JSON document"})
def snapshots(c, stack=None, json=False, profile=""):
    """The repository's snapshots: stack, host, revision, time and folders."""
    from infra.backuprun import ensure_repository, repository_of
    from infra.backuprun import snapshots as listed

    project = load(profile, write=False)
    _require_root_or_say(c, project.config.flag("ROOTLESS"))
    repo = repository_of(project)
    ensure_repository(c, repo)
    found = [s for s in listed(c, repo) if not stack or s.tags.get("stack") in stack]
    if json:
        from infra import jsonout

        print(jsonout.document("snapshots", snapshots=[
            {"id": s.id, "time": s.time, "tags": dict(s.tags), "paths": list(s.paths)}
            for s in found]))
        return
    from rich.table import Table

    table = Table(title=f"Snapshots in {repo.url}")
    for column in ("id", "time", "stack", "host", "rev", "folders"):
        table.add_column(column)
    for s in found:
        table.add_row(s.short, s.time[:19], s.tags.get("stack", ""), s.tags.get("host", ""),
                      s.tags.get("rev", ""), str(len(s.paths)))
    console().print(table)


@infra_task(help={"to": "the file to write it to (created 0600; refused if it exists)"})
def password(c, to="", profile=""):
    """Export the backup repository's password to a file of your choice (0600).

    Without this password the backups cannot be read by anyone: keep the file somewhere
    other than this machine. It is never printed."""
    if not to:
        raise Exit("error: --to: name the file to write the password to", code=2)
    project = load(profile)
    target = os.path.abspath(os.path.expanduser(to))
    try:
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise Exit(f"error: {target} exists: choose another file (it is never overwritten)",
                   code=2) from None
    except OSError as exc:
        raise Exit(f"error: cannot create {target}: {exc.strerror}", code=2) from None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(project.config.secrets["BACKUP_PASSWORD"] + "\n")
    console().print(f"wrote the backup password to {target} (mode 0600)", markup=False,
                    highlight=False)


@infra_task(help={
    "stack": "the stack to restore",
    "snapshot": "the snapshot ID (or its first 8 characters; default: the stack's latest)",
    "yes": "restore although the stack has data newer than the snapshot (that data is lost)",
    "timeout": "seconds the stack may take to become healthy (default: HEALTH_TIMEOUT)",
}, interrupts="raise")
def restore(c, stack="", snapshot="", yes=False, timeout=0, profile=""):
    """Put a stack's data back from a snapshot and bring it up, health-gated.

    The snapshot is restored to a staging folder first (the live data stays as it is if that
    fails); then the stack stops, each volume is swapped for its restored copy with its
    numeric owners and modes, a database is loaded from its dump into a fresh cluster, and
    the stack comes up. Refuses without --yes when the stack has files newer than the
    snapshot."""
    from infra import backup as bk
    from infra.backuprun import newer_data, repository_of, restore_stack
    from infra.backuprun import snapshots as listed
    from infra.bringup import apply
    from infra.bringup.enginehost import read_engine_host
    from infra.bringup.ownership import ownership_fixes
    from infra.bringup.session import helper_image

    from .lifecycle import bring_up

    if not stack:
        raise Exit("error: --stack: name the stack to restore", code=2)
    project = load(profile)
    _require_root_or_say(c, project.config.flag("ROOTLESS"))
    ((name, plan),) = _selected(project, [stack])
    if plan.empty:
        raise Exit(f"error: {name} has nothing to restore (its volumes are excluded from "
                   "backups)", code=2)
    repo = repository_of(project)
    chosen = bk.choose_snapshot(listed(c, repo), name, snapshot)
    paths = _paths(project, name)
    newer = newer_data(c, plan, paths, chosen)
    if newer and not yes:
        raise Exit(f"error: {name} has data newer than snapshot {chosen.short} "
                   f"({chosen.time[:19]}), e.g. {newer[0]}: restoring loses it; run again with "
                   "--yes to restore anyway (or back up first: invoke backup --stack "
                   f"{name})", code=2)
    out = console()
    config = project.config

    def stop_stack() -> None:
        stopped = c.run(f"{paths.compose_base} stop", hide=True, warn=True, in_stream=False)
        if not stopped.ok:
            raise Exit(f"error: cannot stop {name} to restore it: {stopped.stderr.strip()}; "
                       "the live data is untouched", code=1)

    def prepare_volumes() -> None:
        engine = read_engine_host(c)
        apply.apply_ownership(c, helper_image(config), str(config.path("DATA_ROOT")),
                              ownership_fixes([project.catalogue[name]]), dry=False,
                              on_host=engine.chown_on_host)

    def up() -> None:
        bring_up(c, project, [name], no_deps=True, timeout=int(timeout), action="restore")

    restore_stack(c, plan, paths, repo, chosen, stop_stack, prepare_volumes, up,
                  lambda line: out.print(line, markup=False, highlight=False))
    out.print(f"[green]{name}: restored from snapshot {chosen.short} ({chosen.time[:19]}) "
              "and healthy[/green]")




@infra_task(help={"dry": "show the units (or the cron line) and write nothing"})
def schedule(c, dry=False, profile=""):
    """Run `invoke backup` on a timer: a systemd service and timer (BACKUP_SCHEDULE).

    A system unit (/etc/systemd/system, as root) for a rootful engine; a user unit
    (~/.config/systemd/user) for a rootless one, whose user runs its backups. Without systemd
    it prints the crontab line to add instead."""
    import shutil
    import sys
    from pathlib import Path

    from infra import backup as bk
    from infra.fsutil import atomic_write

    project = load(profile, write=False)
    config = project.config
    invoke = shutil.which("invoke") or str(Path(sys.executable).parent / "invoke")
    root = str(project.root)
    out = console()
    if not Path("/run/systemd/system").is_dir():
        out.print("no systemd on this machine: add this line to root's crontab "
                  "(crontab -e as root):", markup=False)
        print(bk.cron_line(invoke, root, config.profile, config["BACKUP_SCHEDULE"]))
        return
    units = bk.schedule_units(invoke, root, config.profile, config["BACKUP_SCHEDULE"])
    rootless = config.flag("ROOTLESS")  # the engine's user runs its backups: a user unit
    folder = (Path.home() / ".config" / "systemd" / "user" if rootless
              else Path("/etc/systemd/system"))
    systemctl = "systemctl --user" if rootless else "systemctl"
    for name, text in units.items():
        out.print(f"{'would write' if dry else 'writing'} {folder / name}", markup=False)
        if dry:
            print(text)
    if dry:
        return
    _require_root_or_say(c, rootless)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        atomic_write(folder / name, text, 0o644)
    c.run(f"{systemctl} daemon-reload && {systemctl} enable --now {bk.SCHEDULE_UNIT}.timer",
          hide=True)
    out.print(f"enabled {bk.SCHEDULE_UNIT}.timer ({config['BACKUP_SCHEDULE']}); see "
              f"`{systemctl} list-timers {bk.SCHEDULE_UNIT}.timer`", markup=False)


@infra_task(iterable=["stack"], help={
    "stack": STACK_HELP,
    "timeout": "seconds the drill's stack may take to become healthy (default: HEALTH_TIMEOUT)",
}, interrupts="raise")
def drill(c, stack=None, timeout=0, profile=""):
    """Prove the backups restore: each stack's latest snapshot, into a scratch project.

    The scratch copy has its own folder, project name and networks (no route out), no
    published ports and no Traefik labels: nothing is shared with the live stack, which keeps
    serving. It comes up with its health checks (a database loaded from its dump first), then
    everything the drill created is removed. Prints each stack's result, how old its newest
    restorable data is and how long it took; writes them to BUILD_DIR/<profile>/backup/
    drills.json and, as Prometheus text, to DATA_ROOT/drills/drills.prom, which the monitoring
    stack's Alloy reads for the Backups dashboard in Grafana. Exit 1 when a drill fails."""
    import json as json_module
    import time

    import yaml
    from rich.table import Table

    from infra import backup as bk
    from infra.backuprun import drill_stack, repository_of
    from infra.backuprun import snapshots as listed
    from infra.fsutil import atomic_write
    from infra.render import stack_output_dir

    project = load(profile, write=False)
    _require_root_or_say(c, project.config.flag("ROOTLESS"))
    config = project.config
    repo = repository_of(project)
    found = listed(c, repo)
    out = console()
    results = []
    for name, plan in _selected(project, stack):
        mine = [s for s in found if s.tags.get("stack") == name]
        if not mine:
            out.print(f"{name}: no snapshot yet (invoke backup --stack {name})", markup=False)
            continue
        rendered = stack_output_dir(config, name)
        document = yaml.safe_load((rendered / "compose.yaml").read_text(encoding="utf-8"))

        def compose_text(scratch_data: str, name: str = name, plan: Any = plan,
                         document: Any = document) -> str:
            from infra.render import dump_yaml

            return dump_yaml(bk.drill_compose(document, name, str(config.path("DATA_ROOT")),
                                              scratch_data, plan.included))

        with out.status(f"{name}: drill", spinner="dots") as status:
            results.append(drill_stack(
                c, plan, _paths(project, name), repo, mine[-1],
                str(config.build_dir / "backup" / "drills" / name), str(rendered),
                compose_text, lambda path, text: atomic_write(Path(path), text, 0o600),
                int(timeout or config["HEALTH_TIMEOUT"]), time.time(), status.update))
    folder = config.build_dir / "backup"
    metrics = bk.drill_metrics(results, time.time())
    atomic_write(folder / "drills.prom", metrics, 0o644)
    # where the monitoring stack's Alloy reads it (its `drills` volume), on this machine
    shared = config.path("DATA_ROOT") / "drills"
    shared.mkdir(parents=True, exist_ok=True)
    atomic_write(shared / "drills.prom", metrics, 0o644)
    atomic_write(folder / "drills.json", json_module.dumps(
        [r.__dict__ for r in results], indent=1) + "\n", 0o644)
    table = Table(title="Restore drills")
    for column in ("stack", "snapshot", "result", "data age", "restore", "total"):
        table.add_column(column)
    for r in results:
        table.add_row(r.stack, r.snapshot, "[green]restored, healthy[/green]" if r.ok
                      else "[red]failed[/red]", f"{r.age_seconds / 3600:.1f} h",
                      f"{r.restore_seconds:.1f}s", f"{r.total_seconds:.1f}s")
    out.print(table)
    failed = [r for r in results if not r.ok]
    for r in failed:
        out.print(f"{r.stack}: {r.detail}", markup=False, highlight=False)
    if failed:
        raise Exit(f"error: the drill of {', '.join(r.stack for r in failed)} failed: its "
                   "backups may not restore (see above)", code=1)


backups = Collection("backup")  # `invoke backup` is its default task
backups.add_task(backup, default=True)
backups.add_task(snapshots)
backups.add_task(password)
backups.add_task(schedule)
backups.add_task(drill)
ns = Collection(restore)  # root tasks (tasks/__init__.py)
ns.add_collection(backups)
