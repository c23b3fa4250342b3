"""Backup and restore through the context: restic on the engine's host, every command a
``c.run`` (infra.backup builds them and reads restic's output).

Backup of a stack: dump its databases in their running containers, stop what must stop,
snapshot, start again health-gated whatever happened, then apply the retention. Restore:
the snapshot goes to a staging folder first (a failed or partial restore leaves the live data
as it was), the stack stops, each volume is swapped for its restored copy (the old one kept
aside until the stack is healthy again), a database comes back from its dump into a fresh
cluster, and the stack is brought up health-gated.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import backup as bk
from .errors import ConfigError, InfraError, Problem
from .fsutil import atomic_write
from .interrupt import shielded

if TYPE_CHECKING:
    from .project import Project

q = shlex.quote
URL_SCHEMES = ("sftp:", "s3:", "rest:", "b2:", "azure:", "gs:", "swift:")


@dataclass(frozen=True)
class Repository:
    url: str  # what restic is given (a local folder, absolute, or a restic URL)
    password_file: str  # a 0600 file holding BACKUP_PASSWORD (never on a command line)
    options: tuple[str, ...] = ()  # restic -o options (an inventory host's ssh command)
    inside: str = ""  # a rootless engine's user namespace: the nsenter prefix (in_engine)

    def command(self, *args: str) -> str:
        extra = [part for option in self.options for part in ("-o", option)]
        return self.inside + bk.restic_command([*extra, *args], self.url, self.password_file)


def sftp_through_inventory(value: str, project: Project) -> tuple[str, tuple[str, ...]]:
    """``sftp:<inventory host>:/path``: that host's address, user, port and key, its key
    checked against the user's known_hosts and the inventory's (never accepted blindly);
    any other repository as it is."""
    if not value.startswith("sftp:"):
        return value, ()
    where, _, path = value.removeprefix("sftp:").partition(":")
    from .inventory import inventory_of

    inventory = inventory_of(project.config, project.catalogue)
    host = inventory.hosts.get(where)
    if host is None:
        return value, ()
    known = [os.path.expanduser("~/.ssh/known_hosts")]
    known += [inventory.known_hosts] if inventory.known_hosts else []
    ssh = ["ssh", "-p", str(host.port), "-o", "BatchMode=yes",
           "-o", "StrictHostKeyChecking=yes",
           "-o", "UserKnownHostsFile=" + " ".join(known)]
    ssh += ["-i", os.path.expanduser(host.key), "-o", "IdentitiesOnly=yes"] if host.key else []
    ssh += [f"{host.user}@{host.address}", "-s", "sftp"]
    return (f"sftp:{host.user}@{host.address}:{path}",
            ("sftp.command=" + " ".join(shlex.quote(part) for part in ssh),))


def repository_of(project: Project) -> Repository:
    """The configured repository, its password written to a private file for restic."""
    config = project.config
    value = config["BACKUP_REPOSITORY"]
    url, options = sftp_through_inventory(value, project)
    url = url if value.startswith(URL_SCHEMES) else str(config.path("BACKUP_REPOSITORY"))
    folder = config.build_dir / "backup"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    password = folder / "password"
    atomic_write(password, config.secrets["BACKUP_PASSWORD"] + "\n", 0o600)
    return Repository(url, str(password), options,
                      in_engine(config.flag("ROOTLESS"), config.get("DOCKER_SOCKET")))


def ensure_repository(c: Any, repo: Repository) -> bool:
    """Open the repository, creating it when there is none; True when it was created."""
    probe = c.run(repo.command("cat", "config"), hide=True, warn=True, in_stream=False)
    if probe.ok:
        return False
    text = (probe.stderr or probe.stdout).strip()
    if "wrong password" in text or "no key found" in text:
        raise ConfigError(Problem(f"the backup repository {repo.url} does not open with "
                                  "BACKUP_PASSWORD", key="BACKUP_PASSWORD",
                                  fix="put back the password it was made with (the one "
                                      "`invoke backup.password` exported) in env/secrets.env"))
    if not any(sign in text for sign in ("does not exist", "Is there a repository",
                                         "unable to open config file", "no such file")):
        raise InfraError(f"cannot open the backup repository {repo.url}: {_tail(text)}")
    made = c.run(repo.command("init"), hide=True, warn=True, in_stream=False)
    if not made.ok:
        raise InfraError(f"cannot create the backup repository {repo.url}: "
                         f"{_tail(made.stderr or made.stdout)}")
    return True


def _must(c: Any, command: str, what: str) -> Any:
    """Run ``command``; its failure is an error saying ``what`` failed, with the engine's or
    the shell's last words (never a traceback)."""
    result = c.run(command, hide=True, warn=True, in_stream=False)
    if not result.ok:
        raise InfraError(f"{what} failed: {_tail(result.stderr or result.stdout)}")
    return result


def _tail(text: str, lines: int = 4) -> str:
    return " / ".join(line for line in text.strip().splitlines()[-lines:] if line.strip())


@dataclass(frozen=True)
class StackPaths:
    data_root: str
    staging: str  # this stack's backup folder on the engine's host (its dumps)
    compose_base: str  # `docker compose -p NAME`
    compose_up: Callable[[Sequence[str]], str]  # `... up -d --wait SERVICES` (rendered files)
    inside: str = ""  # a rootless engine's user namespace: the nsenter prefix (in_engine)

    def data(self, source: str) -> str:
        return f"{self.data_root.rstrip('/')}/{source}"

    def fs(self, command: str) -> str:
        """A shell command on the stack's files, where their owners mean what the containers
        see (inside a rootless engine's user namespace)."""
        return f"{self.inside}sh -c {q(command)}" if self.inside else command


def in_engine(rootless: bool, socket: str) -> str:
    """The prefix that runs a command inside a rootless engine's user and mount namespaces
    (files owned by subordinate UIDs are then readable and chown-able as the containers'
    users; '' for a rootful engine). Its dockerd writes its pid beside its socket."""
    if not rootless:
        return ""
    pidfile = f"{os.path.dirname(socket) or '.'}/docker.pid"
    return f"nsenter -U --preserve-credentials -m -t \"$(cat {q(pidfile)})\" "


def back_up_stack(c: Any, plan: bk.StackBackup, paths: StackPaths, repo: Repository,
                  tags: Mapping[str, str], host: str, say: Callable[[str], None]
                  ) -> bk.Summary:
    """One stack's snapshot, with the least downtime; stopped services always start again."""
    for dump in plan.dumps:
        say(f"{plan.stack}: pg_dump of {dump.database} in {dump.service}")
        done = c.run(bk.dump_command(paths.compose_base, dump,
                                     f"{paths.staging}/{dump.file}"), hide=True, warn=True,
                     in_stream=False)
        if not done.ok:
            raise InfraError(f"the dump of {plan.stack}/{dump.service} failed: "
                             f"{_tail(done.stderr)} (is the stack up? invoke up --stack "
                             f"{plan.stack})")
    stopped: tuple[str, ...] = ()
    failure: BaseException | None = None
    try:
        if plan.stop:
            say(f"{plan.stack}: stopping {', '.join(plan.stop)} for the snapshot")
            _must(c, f"{paths.compose_base} stop {' '.join(q(s) for s in plan.stop)}",
                  f"stopping {', '.join(plan.stop)}")
            stopped = plan.stop
        sources = [paths.data(s) for s in plan.included]
        sources += [f"{paths.staging}/{bk.DUMPS}"] if plan.dumps else []
        say(f"{plan.stack}: snapshot of {len(sources)} folder(s)")
        result = c.run(repo.command(*bk.backup_args(sources, tags, host)), hide=True,
                       warn=True, in_stream=False)
        if not result.ok:
            raise InfraError(f"restic could not back up {plan.stack}: "
                             f"{_tail(result.stderr or result.stdout)}")
        return bk.parse_summary(result.stdout)
    except BaseException as exc:
        failure = exc
        raise
    finally:
        if stopped:
            say(f"{plan.stack}: starting {', '.join(stopped)} again")
            started = c.run(paths.compose_up(stopped), hide=True, warn=True, in_stream=False)
            if not started.ok and failure is None:
                raise InfraError(f"{plan.stack}: {', '.join(stopped)} did not become healthy "
                                 f"after the snapshot: {_tail(started.stderr)}")


def forget(c: Any, repo: Repository, stack: str, keep: Mapping[str, int]) -> None:
    result = c.run(repo.command(*bk.forget_args(stack, keep)), hide=True, warn=True,
                   in_stream=False)
    if not result.ok:
        raise InfraError(f"restic could not apply the retention to {stack}: "
                         f"{_tail(result.stderr)}")


def snapshots(c: Any, repo: Repository, stack: str = "") -> list[bk.Snapshot]:
    args = ["snapshots", "--json"] + (["--tag", f"stack:{stack}"] if stack else [])
    result = c.run(repo.command(*args), hide=True, warn=True, in_stream=False)
    if not result.ok:
        raise InfraError(f"cannot list the snapshots of {repo.url}: {_tail(result.stderr)}")
    return bk.parse_snapshots(result.stdout)


def newer_data(c: Any, plan: bk.StackBackup, paths: StackPaths, snapshot: bk.Snapshot
               ) -> list[str]:
    """The stack's files changed after the snapshot was taken (the first few)."""
    folders = [paths.data(s) for s in plan.included + tuple(d.source for d in plan.dumps)]
    if not folders:
        return []
    stamp = snapshot.time.replace("T", " ")[:19]
    found = c.run(paths.fs(f"find {' '.join(q(f) for f in folders)} -newermt "
                           f"{q(stamp + ' UTC')} -type f 2>/dev/null | head -n 5"),
                  hide=True, warn=True, in_stream=False)
    return [line for line in found.stdout.splitlines() if line.strip()]


def restore_stack(c: Any, plan: bk.StackBackup, paths: StackPaths, repo: Repository,
                  snapshot: bk.Snapshot, stop_stack: Callable[[], None],
                  prepare_volumes: Callable[[], None], bring_up: Callable[[], None],
                  say: Callable[[str], None]) -> list[str]:
    """Restore ``snapshot`` over the stack's volumes; returns the folders kept aside (the
    data as it was), removed once the stack is healthy."""
    staging = f"{paths.staging}/restore-{snapshot.short}"
    say(f"{plan.stack}: restoring snapshot {snapshot.short} to a staging folder")
    _must(c, paths.fs(f"rm -rf {q(staging)} && mkdir -p {q(staging)}"),
          f"preparing the staging folder {staging} (the live data is untouched)")
    result = c.run(repo.command("restore", snapshot.id, "--target", staging), hide=True,
                   warn=True, in_stream=False)
    if not result.ok:
        c.run(paths.fs(f"rm -rf {q(staging)}"), hide=True, warn=True, in_stream=False)
        raise InfraError(f"restic could not restore {snapshot.short} of {plan.stack}; the live "
                         f"data is untouched: {_tail(result.stderr or result.stdout)}")
    missing = [s for s in plan.included
               if not c.run(paths.fs(f"test -d {q(staging + paths.data(s))}"), hide=True,
                            warn=True, in_stream=False).ok]
    if missing:
        c.run(paths.fs(f"rm -rf {q(staging)}"), hide=True, warn=True, in_stream=False)
        raise InfraError(f"snapshot {snapshot.short} does not hold {', '.join(missing)} of "
                         f"{plan.stack}; the live data is untouched")
    say(f"{plan.stack}: stopping the stack")
    stop_stack()
    suffix = f".pre-restore-{int(time.time())}"
    aside = []
    # Ctrl-C waits for the swap to end: a volume moved aside but not yet replaced is not a
    # state to leave (renames: it takes milliseconds)
    with shielded("swapping the restored volumes into place"):
        for source in plan.included + tuple(d.source for d in plan.dumps):
            live = paths.data(source)
            _must(c, paths.fs(f"if [ -e {q(live)} ]; then mv {q(live)} {q(live + suffix)}; fi"),
                  f"moving {live} aside")
            aside.append(live + suffix)
            if source in plan.included:
                _must(c, paths.fs(f"mkdir -p {q(str(Path(live).parent))} && "
                                  f"mv {q(staging + live)} {q(live)}"),
                      f"putting the restored {source} in place (the data as it was: "
                      f"{live + suffix})")
    prepare_volumes()  # a dumped database's folder, fresh, with its owner and mode
    for dump in plan.dumps:
        say(f"{plan.stack}: loading the dump of {dump.database} into {dump.service}")
        _must(c, paths.compose_up([dump.service]), f"starting {dump.service} for its dump "
              f"(the data as it was: {', '.join(aside)})")
        loaded = c.run(bk.load_dump_command(paths.compose_base, dump,
                                            f"{staging}{paths.staging}/{dump.file}"),
                       hide=True, warn=True, in_stream=False)
        if not loaded.ok:
            raise InfraError(f"the dump of {plan.stack}/{dump.service} did not load: "
                             f"{_tail(loaded.stderr)}; the data as it was is kept in "
                             + ", ".join(aside))
    say(f"{plan.stack}: bringing the stack up")
    bring_up()
    c.run(paths.fs(f"rm -rf {q(staging)} " + " ".join(q(a) for a in aside)), hide=True,
          warn=True, in_stream=False)
    return aside


def drill_stack(c: Any, plan: bk.StackBackup, paths: StackPaths, repo: Repository,
                snapshot: bk.Snapshot, scratch: str, rendered_dir: str,
                compose_text: Callable[[str], str], write: Callable[[str, str], None],
                timeout: int, now: float, say: Callable[[str], None]) -> bk.DrillResult:
    """Restore ``snapshot`` into a scratch project (its own folder, networks and project
    name; no ports, no Traefik labels), bring it up with its health checks, tear it all
    down. ``compose_text(scratch_data)``: the drill's compose file (backup.drill_compose)."""
    begin = time.monotonic()
    project = bk.drill_project(plan.stack)
    stack_dir, data = f"{scratch}/stack", f"{scratch}/data"
    base = (f"docker compose -p {q(project)} --project-directory {q(stack_dir)} "
            f"-f {q(stack_dir + '/compose.yaml')}")
    restored_in = 0.0
    ok, detail = False, ""
    try:
        _must(c, paths.fs(f"rm -rf {q(scratch)} && mkdir -p {q(stack_dir)} {q(data)} && "
                          f"cp -a {q(rendered_dir)}/. {q(stack_dir)}/"),
              "preparing the drill's folder")
        write(f"{stack_dir}/compose.yaml", compose_text(data))
        say(f"{plan.stack}: restoring snapshot {snapshot.short} into {scratch}")
        result = c.run(repo.command("restore", snapshot.id, "--target", f"{scratch}/restore"),
                       hide=True, warn=True, in_stream=False)
        if not result.ok:
            raise InfraError(f"restic could not restore {snapshot.short}: "
                             f"{_tail(result.stderr or result.stdout)}")
        for source in plan.included:
            target = f"{data}/{source}"
            _must(c, paths.fs(f"mkdir -p {q(str(Path(target).parent))} && "
                              f"mv {q(scratch + '/restore' + paths.data(source))} {q(target)}"),
                  f"placing the restored {source}")
        for dump in plan.dumps:
            folder = f"{data}/{dump.source}"
            _must(c, paths.fs(f"mkdir -p {q(folder)}"
                              + (f" && chown {q(dump.owner)} {q(folder)}" if dump.owner else "")
                              + (f" && chmod {q(dump.mode)} {q(folder)}" if dump.mode else "")),
                  f"a fresh folder for {dump.service}'s database")
        restored_in = time.monotonic() - begin
        wait = f"up -d --wait --wait-timeout {int(timeout)}"
        for dump in plan.dumps:
            say(f"{plan.stack}: loading the dump into the drill's {dump.service}")
            _must(c, f"{base} {wait} --no-deps {q(dump.service)}",
                  f"starting the drill's {dump.service}")
            _must(c, bk.load_dump_command(base, dump, f"{scratch}/restore{paths.staging}/"
                                          f"{dump.file}"), f"loading {dump.service}'s dump")
        say(f"{plan.stack}: bringing the drill up with its health checks")
        _must(c, f"{base} {wait}", "the drill's bring-up (its health checks)")
        ok = True
    except InfraError as exc:
        detail = str(exc)
    finally:
        say(f"{plan.stack}: tearing the drill down")
        c.run(f"{base} down --volumes --remove-orphans --timeout 5", hide=True, warn=True,
              in_stream=False)
        c.run(paths.fs(f"rm -rf {q(scratch)}"), hide=True, warn=True, in_stream=False)
    return bk.DrillResult(plan.stack, snapshot.short, snapshot.time, ok, restored_in,
                          time.monotonic() - begin,
                          max(0.0, now - bk.epoch_of(snapshot.time)), detail)
