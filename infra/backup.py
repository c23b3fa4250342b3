"""Backups with restic: what each stack's snapshot holds and how it is made consistent.

Declared in the catalogue, per data volume (``backup:``, catalogue.BACKUP_MODES):

- ``live``: read while the service runs (append-only or self-consistent stores: TSDB blocks
  with their WAL, uploaded files);
- ``stop``: the services that mount it stop for the seconds of the snapshot and start again,
  health-gated, whatever happened (single-file databases: SQLite);
- ``dump:postgres``: ``pg_dump`` in the running container (over its local socket); the dump
  is snapshotted, the cluster's live files are not;
- ``exclude``: not backed up (caches; the media library unless BACKUP_MEDIA_LIBRARY_ENABLED).

The plan is data (``plan_stack``); the commands are strings run through the context
(``restic_command``, ``dump_command``); restic's ``--json`` output is read by
``parse_summary``/``parse_snapshots``. A snapshot is tagged ``stack:<name>``,
``host:<host>`` and ``rev:<deploy revision>``.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from .catalogue import Stack
from .errors import ConfigError, Problem

LIVE, STOP, EXCLUDE, DUMP_POSTGRES = "live", "stop", "exclude", "dump:postgres"
SNAPSHOT_RE = re.compile(r"^[0-9a-f]{8,64}$")
DUMPS = "dumps"  # the folder (in the stack's backup staging folder) the dumps are written to


@dataclass(frozen=True)
class VolumeBackup:
    source: str  # relative to DATA_ROOT
    mode: str
    services: tuple[str, ...]  # the services that mount it


@dataclass(frozen=True)
class Dump:
    service: str
    kind: str  # postgres
    user: str  # the database role the dump runs as (the container's POSTGRES_USER)
    database: str
    uid: str  # the container user the dump command runs as
    source: str  # the volume whose live files the dump stands for
    owner: str = ""  # uid:gid of that volume's folder ('' when the catalogue sets none)
    mode: str = ""  # its mode (0700 for a PostgreSQL cluster)

    @property
    def file(self) -> str:
        return f"{DUMPS}/{self.service}.sql"


@dataclass(frozen=True)
class StackBackup:
    stack: str
    volumes: tuple[VolumeBackup, ...]
    stop: tuple[str, ...]  # services stopped for the snapshot
    dumps: tuple[Dump, ...]

    @property
    def included(self) -> tuple[str, ...]:
        """The sources whose files the snapshot holds (nested ones are inside their parent)."""
        chosen = sorted(v.source for v in self.volumes if v.mode in (LIVE, STOP))
        return tuple(s for s in chosen
                     if not any(s != p and s.startswith(p + "/") for p in chosen))

    @property
    def empty(self) -> bool:
        return not self.included and not self.dumps


def plan_stack(stack: Stack) -> StackBackup:
    """What a backup of ``stack`` holds, and what it stops or dumps (nothing is touched)."""
    by_source: dict[str, list[tuple[str, str]]] = {}
    folders: dict[str, tuple[str, str]] = {}  # source -> (owner, mode) as declared first
    for service in stack.services:
        for volume in service.volumes:
            if volume.kind == "data":
                by_source.setdefault(volume.source, []).append((service.name, volume.backup))
                owner = f"{volume.owner[0]}:{volume.owner[1]}" if volume.owner else ""
                folders.setdefault(volume.source, (owner, volume.mode))
    volumes, problems = [], []
    for source, uses in sorted(by_source.items()):
        modes = {mode for _, mode in uses}
        if len(modes) > 1:
            problems.append(Problem(f"volume {source} is backed up as {' and '.join(sorted(modes))}"
                                    " by different services", key=f"{stack.name}.volumes",
                                    file=str(stack.directory / "stack.yaml"),
                                    fix="give every mount of one source the same backup:"))
            continue
        volumes.append(VolumeBackup(source, modes.pop(), tuple(s for s, _ in uses)))
    if problems:
        raise ConfigError(problems)
    # a nested source follows its parent's mode (media-library/media in media-library)
    stop = sorted({s for v in volumes if v.mode == STOP for s in v.services})
    dumps = []
    for kept in (v for v in volumes if v.mode == DUMP_POSTGRES):
        service = stack.service(kept.services[0])
        env = dict(service.environment)
        uid = (service.user or "70").split(":", 1)[0]
        dumps.append(Dump(service.name, "postgres", str(env.get("POSTGRES_USER", "postgres")),
                          str(env.get("POSTGRES_DB", env.get("POSTGRES_USER", "postgres"))),
                          uid, kept.source, *folders.get(kept.source, ("", ""))))
    non_oneshot = {s.name for s in stack.services if not s.oneshot}
    return StackBackup(stack.name, tuple(volumes), tuple(s for s in stop if s in non_oneshot),
                       tuple(dumps))


# ---------------------------------------------------------------- commands (strings)


def dump_command(compose_base: str, dump: Dump, target: str) -> str:
    """pg_dump of the database inside its running container, written to ``target`` (a file
    on the engine's host) through a temp file, so a failed dump never replaces a good one."""
    q = shlex.quote
    inside = (f"pg_dump --username={q(dump.user)} --dbname={q(dump.database)} --clean "
              "--if-exists --no-owner")
    return (f"mkdir -p {q(str(PurePosixPath(target).parent))} && "
            f"{compose_base} exec -T -u {q(dump.uid)} {q(dump.service)} {inside} "
            f"> {q(target + '.tmp')} && mv {q(target + '.tmp')} {q(target)}")


def load_dump_command(compose_base: str, dump: Dump, source: str) -> str:
    """Feed a dump into the (fresh) database inside its running container, stopping at the
    first error."""
    q = shlex.quote
    return (f"{compose_base} exec -T -u {q(dump.uid)} {q(dump.service)} psql --quiet "
            f"--username={q(dump.user)} --dbname={q(dump.database)} -v ON_ERROR_STOP=1 "
            f"< {q(source)}")


def restic_command(args: Sequence[str], repository: str, password_file: str) -> str:
    """A restic command line: its repository and password file given by environment
    variables on the line (never the password itself)."""
    q = shlex.quote
    return (f"env RESTIC_REPOSITORY={q(repository)} RESTIC_PASSWORD_FILE={q(password_file)} "
            f"restic {' '.join(q(a) for a in args)}")


def backup_args(paths: Iterable[str], tags: Mapping[str, str], host: str) -> list[str]:
    return ["backup", "--json", "--host", host,
            *[f"--tag={k}:{v}" for k, v in tags.items()], *paths]


def forget_args(stack: str, keep: Mapping[str, int]) -> list[str]:
    """Retention of one stack's snapshots (per host: a snapshot's revision tag differs from
    one backup to the next, so grouping by tags would keep them all)."""
    return ["forget", "--json", "--prune", "--tag", f"stack:{stack}", "--group-by", "host",
            *[f"--keep-{k}={v}" for k, v in keep.items() if v > 0]]


# ---------------------------------------------------------------- restic's output


@dataclass(frozen=True)
class Summary:
    snapshot: str
    files_new: int
    files_changed: int
    files_total: int
    bytes_added: int
    seconds: float


def parse_summary(text: str) -> Summary:
    """The summary of ``restic backup --json`` (its last JSON line of that type)."""
    for line in reversed(text.splitlines()):
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("message_type") == "summary":
            return Summary(str(message.get("snapshot_id", "")),
                           int(message.get("files_new", 0)),
                           int(message.get("files_changed", 0)),
                           int(message.get("total_files_processed", 0)),
                           int(message.get("data_added", 0)),
                           float(message.get("total_duration", 0.0)))
    raise ValueError("restic printed no summary")


@dataclass(frozen=True)
class Snapshot:
    id: str
    time: str
    tags: Mapping[str, str]
    paths: tuple[str, ...]

    @property
    def short(self) -> str:
        return self.id[:8]


def parse_snapshots(text: str) -> list[Snapshot]:
    """``restic snapshots --json``, oldest first (entries of another shape are skipped)."""
    try:
        listed = json.loads(text or "[]")
    except ValueError:
        raise ValueError("restic's snapshot list is not JSON") from None
    found = []
    for item in listed if isinstance(listed, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        tags = dict(str(t).split(":", 1) for t in item.get("tags") or [] if ":" in str(t))
        found.append(Snapshot(item["id"], str(item.get("time", "")), tags,
                              tuple(str(p) for p in item.get("paths") or [])))
    return sorted(found, key=lambda s: s.time)


def choose_snapshot(snapshots: Sequence[Snapshot], stack: str, wanted: str = "") -> Snapshot:
    """The stack's latest snapshot, or the one ``wanted`` names (a unique ID prefix)."""
    mine = [s for s in snapshots if s.tags.get("stack") == stack]
    if wanted:
        if not SNAPSHOT_RE.match(wanted):
            raise ConfigError(Problem(f"{wanted!r} is not a snapshot ID", key="--snapshot",
                                      fix="give the ID (or its first 8 characters) that "
                                          "`invoke backup.list` shows"))
        matches = [s for s in snapshots if s.id.startswith(wanted)]
        if not matches:
            raise ConfigError(Problem(f"no snapshot {wanted} in the repository",
                                      key="--snapshot", fix=f"choose one of {stack}'s: "
                                      + (", ".join(s.short for s in mine) or "none yet")))
        chosen = matches[-1]
        if chosen.tags.get("stack") != stack:
            raise ConfigError(Problem(f"snapshot {chosen.short} is of stack "
                                      f"{chosen.tags.get('stack', '(none)')}, not {stack}",
                                      key="--snapshot", fix=f"choose one of {stack}'s: "
                                      + (", ".join(s.short for s in mine) or "none yet")))
        return chosen
    if not mine:
        raise ConfigError(Problem(f"the repository has no snapshot of {stack}", key="--stack",
                                  fix=f"run `invoke backup --stack {stack}` first"))
    return mine[-1]


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def as_rows(plans: Sequence[StackBackup], sizes: Mapping[str, int] | None = None
            ) -> list[tuple[Any, ...]]:
    """(stack, volume, how, services, size) for the plan's backup section."""
    rows = []
    for plan in plans:
        for volume in plan.volumes:
            stopped = ", ".join(s for s in volume.services if s in plan.stop)
            how = {LIVE: "live", STOP: f"stop {stopped}", EXCLUDE: "excluded",
                   DUMP_POSTGRES: "pg_dump in the container"}[volume.mode]
            size = (sizes or {}).get(volume.source)
            rows.append((plan.stack, volume.source, how, ", ".join(volume.services),
                         human_bytes(size) if size is not None else ""))
    return rows


# ---------------------------------------------------------------- a schedule


SCHEDULE_UNIT = "stackyard-backup"


def schedule_units(invoke: str, project_root: str, profile: str, calendar: str
                   ) -> dict[str, str]:
    """A systemd service and timer that run `invoke backup` in the project (file name ->
    text); ``calendar``: systemd's OnCalendar (daily, *-*-* 03:30:00)."""
    env = f"Environment=INFRA_PROFILE={profile}\n" if profile else ""
    service = (f"[Unit]\nDescription=Stackyard: back up every stack (restic)\n"
               "After=docker.service\nWants=docker.service\n\n"
               f"[Service]\nType=oneshot\nWorkingDirectory={project_root}\n{env}"
               f"ExecStart={invoke} backup\n")
    timer = (f"[Unit]\nDescription=Stackyard: back up every stack ({calendar})\n\n"
             f"[Timer]\nOnCalendar={calendar}\nPersistent=true\nRandomizedDelaySec=10m\n\n"
             "[Install]\nWantedBy=timers.target\n")
    return {f"{SCHEDULE_UNIT}.service": service, f"{SCHEDULE_UNIT}.timer": timer}


def cron_line(invoke: str, project_root: str, profile: str, calendar: str = "") -> str:
    """The crontab line for hosts without systemd (root's crontab): at the calendar's time of
    day when it names one (``*-*-* HH:MM[:SS]``), at midnight for ``daily``, else 03:30."""
    match = re.match(r"^\*-\*-\* (\d{1,2}):(\d{2})", calendar)
    hour, minute = ((int(match[1]), int(match[2])) if match
                    else (0, 0) if calendar == "daily" else (3, 30))
    env = f"INFRA_PROFILE={shlex.quote(profile)} " if profile else ""
    return (f"{minute} {hour} * * * cd {shlex.quote(project_root)} && {env}"
            f"{shlex.quote(invoke)} backup >>/var/log/stackyard-backup.log 2>&1")


# ---------------------------------------------------------------- restore drills


def drill_project(stack: str) -> str:
    return f"drill-{stack}"


def drill_compose(document: Mapping[str, Any], stack: str, data_root: str, scratch_data: str,
                  sources: Iterable[str]) -> dict[str, Any]:
    """A stack's compose document as a scratch copy for a restore drill: its restored
    volumes (``sources``) read from ``scratch_data`` instead of DATA_ROOT, networks of its
    own with no route out (nothing shared with the live stack), no published ports, no
    Traefik labels (the live Traefik would route to it)."""
    import copy

    moved = {f"{data_root.rstrip('/')}/{s}": f"{scratch_data.rstrip('/')}/{s}"
             for s in sorted(sources, key=len, reverse=True)}
    result = copy.deepcopy(dict(document))
    project = drill_project(stack)
    result["name"] = project
    result["networks"] = {key: {"name": f"{project}_{key}", "internal": True}
                          for key in (document.get("networks") or {})}
    for service in (result.get("services") or {}).values():
        service.pop("ports", None)
        service.pop("container_name", None)
        labels = service.get("labels")
        if isinstance(labels, dict):
            service["labels"] = {k: v for k, v in labels.items()
                                 if not k.startswith("traefik.")}
        volumes = []
        for volume in service.get("volumes") or []:
            text = str(volume)
            host, sep, rest = text.partition(":")
            for live, scratch in moved.items():
                if host == live or host.startswith(live + "/"):
                    host = scratch + host[len(live):]
                    break
            volumes.append(host + sep + rest)
        if "volumes" in service:
            service["volumes"] = volumes
    return result


@dataclass(frozen=True)
class DrillResult:
    stack: str
    snapshot: str
    snapshot_time: str
    ok: bool
    restore_seconds: float  # restic restore into the scratch folder
    total_seconds: float  # restore, bring-up with health checks, teardown
    age_seconds: float  # how old the newest restorable data is (now - snapshot time)
    detail: str = ""


def drill_metrics(results: Sequence[DrillResult], now: float) -> str:
    """The drills as Prometheus text (what a scraper or node_exporter's textfile reads)."""
    lines = ["# HELP stackyard_backup_drill_ok 1 when the last drill's restore came up healthy",
             "# TYPE stackyard_backup_drill_ok gauge"]
    lines += [f'stackyard_backup_drill_ok{{stack="{r.stack}"}} {int(r.ok)}' for r in results]
    lines += ["# HELP stackyard_backup_drill_data_age_seconds age of the newest restorable "
              "data at the last drill", "# TYPE stackyard_backup_drill_data_age_seconds gauge"]
    lines += [f'stackyard_backup_drill_data_age_seconds{{stack="{r.stack}"}} '
              f"{r.age_seconds:.0f}" for r in results]
    lines += ["# HELP stackyard_backup_drill_seconds how long the last drill took",
              "# TYPE stackyard_backup_drill_seconds gauge"]
    lines += [f'stackyard_backup_drill_seconds{{stack="{r.stack}"}} {r.total_seconds:.1f}'
              for r in results]
    lines += ["# HELP stackyard_backup_drill_timestamp_seconds when the last drill ran",
              "# TYPE stackyard_backup_drill_timestamp_seconds gauge"]
    lines += [f'stackyard_backup_drill_timestamp_seconds{{stack="{r.stack}"}} {now:.0f}'
              for r in results]
    return "\n".join(lines) + "\n"


_TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


def epoch_of(text: str) -> float:
    """A restic snapshot time (RFC 3339, nanoseconds, Z or an offset) as seconds since the
    epoch."""
    from datetime import datetime

    match = _TIME_RE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a snapshot time")
    zone = match[3] if match[3] and match[3] != "Z" else "+00:00"
    return datetime.fromisoformat(match[1] + zone).timestamp() + float(match[2] or 0)
