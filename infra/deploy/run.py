"""Deploy one host through a fabric Connection; several hosts in parallel threads.

Per host: read its HOME and uid (this is also the connection check), load its configuration
(layout), render locally, upload what changed (upload), then the bring-up engine of
``invoke up`` (infra.bringup) over the connection: networks, volume ownership, health-gated
stacks in dependency order. Stacks placed elsewhere count as satisfied dependencies. Every
failure, from refused connections to an unhealthy service, ends as that host's result row.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..catalogue import key_volumes
from ..errors import InfraError
from . import layout as lay
from . import summary, upload
from .targets import Target

Say = Callable[[str, str], None]  # (host, message)


@dataclass(frozen=True)
class DeployOptions:
    timeout: int = 0  # seconds per stack; 0: HEALTH_TIMEOUT
    dry: bool = False
    jobs: int = 4  # stacks brought up at once on a host, when independent
    rollback: bool = True  # a failed change goes back to the stack's last healthy revision
    # a host's progress (stacks, and their services from compose's events): the live view
    progress_for: Callable[[str], Any] | None = None


def connect(target: Target, timeout: int = 10) -> Any:
    """A fabric Connection to the target; its engine socket exported for every command."""
    from fabric import Config

    from .connection import Connection

    config = Config(overrides={"run": {"env": target.run_env()}, "load_ssh_configs": False})
    return Connection(config=config, **target.connection_kwargs(timeout))


def probe_login(conn: Any, socket: str = "") -> tuple[str, str, str]:
    """The login's HOME and uid (also the connection check) and, for a rootless host, its
    engine socket's owner as ``<uid> <name>`` ('' when the login cannot see the socket)."""
    command = 'printf "%s\\n%s\\n" "$HOME" "$(id -u)"'
    if socket:
        command += f"; stat -c '%u %U' {shlex.quote(socket)} 2>/dev/null || true"
    probe = conn.run(command, hide=True, in_stream=False)
    home, uid, owner = [*probe.stdout.splitlines(), "", "", ""][:3]
    return home, uid, owner


def host_task_layer(conn: Any, host: Any, base: Any) -> Any:
    """The configuration layer of a task run on an inventory host through fab (status, down,
    host.storage, volumes.fix ...): the host's overrides, DATA_ROOT where deploy puts it, and
    the host's own local state folder. CERTS_DIR stays local: certs.trust sends the local CA.
    ``base``: the project's configuration (Config), before the host's layer."""
    home, uid, _ = probe_login(conn)
    root_setting = host.settings.get("DEPLOY_ROOT") or base.get("DEPLOY_ROOT")
    remote = lay.RemoteLayout(lay.deploy_root(root_setting, home, uid))
    return lay.host_layer(host, lay.local_build_dir(base.path("BUILD_DIR")), remote,
                          certs_remote=False)


def deploy_host(conn: Any, target: Target, stacks: Sequence[str], base: Any,
                options: DeployOptions, say: Say) -> summary.HostResult:
    """Deploy ``stacks`` to one host; never raises: every failure becomes the result, with
    the step it happened in (an interruption, with the step it cut off)."""
    from ..interrupt import cancelled

    begin = time.monotonic()
    stage = ["connecting"]

    def step(name: str, check: bool = True) -> None:
        stage[0] = name
        if check and cancelled():
            raise _Stopped(name)

    try:
        result = _deploy(conn, target, stacks, base, options, say, begin, step)
    except Exception as exc:  # one host's failure must not stop the others
        if cancelled():
            return summary.HostResult(target.name, tuple(stacks), summary.INTERRUPTED,
                                      time.monotonic() - begin, f"interrupted while {stage[0]}")
        return summary.HostResult(target.name, tuple(stacks), summary.FAILED,
                                  time.monotonic() - begin,
                                  f"while {stage[0]}: {summary.classify(exc)}")
    if cancelled() and result.result == summary.FAILED:
        return replace(result, result=summary.INTERRUPTED,
                       reason=f"interrupted while {stage[0]}")
    if result.result == summary.FAILED and not result.reason.startswith("while "):
        return replace(result, reason=f"while {stage[0]}: {result.reason}")
    return result


def host_project(conn: Any, target: Target, base: Any) -> tuple[Any, lay.RemoteLayout]:
    """The project as ``target`` sees it (its configuration layer) and where its files are
    there. Reads the login's HOME and uid, which is also the connection check."""
    socket = target.host.docker_socket if target.host.rootless else ""
    home, uid, owner = probe_login(conn, socket)
    problem = lay.rootless_login_problem(target.name, socket, uid, owner)
    if problem:
        raise InfraError(problem)
    root_setting = target.host.settings.get("DEPLOY_ROOT") or base.config.get("DEPLOY_ROOT")
    remote = lay.RemoteLayout(lay.deploy_root(root_setting, home, uid))
    project = base.for_host(lay.host_layer(
        target.host, lay.local_build_dir(base.config.path("BUILD_DIR")), remote))
    return project, remote


def remote_restore(conn: Any, remote: lay.RemoteLayout) -> Callable[[str, Mapping[str, str]],
                                                                     None]:
    """A rollback's files (stack, relative path -> content) put in the stack's folder on the
    host: what differs is uploaded, what the revision did not have is removed."""
    def restore(name: str, files: Mapping[str, str]) -> None:
        directory = remote.stack_dir(name)
        wanted = upload.stack_files(directory, files)
        upload.apply_upload(conn, upload.plan_upload(
            wanted, upload.read_remote_checksums(conn, [directory]), [directory]))

    return restore


class _Stopped(Exception):
    """Raised between a host's steps once the run is interrupted."""


def _deploy(conn: Any, target: Target, stacks: Sequence[str], base: Any,
            options: DeployOptions, say: Say, begin: float,
            step: Callable[..., None] = lambda name, check=True: None) -> summary.HostResult:
    from ..bringup import schedule
    from ..bringup.ownership import keys_state
    from ..bringup.run import Job, apply_run, plan_run
    from ..bringup.session import prepared_stack
    from ..history import DEPLOY
    from ..render import render_stacks

    step("connecting")
    project, remote = host_project(conn, target, base)
    step("rendering")
    rendered = render_stacks(project, names=list(stacks), write=not options.dry)
    say(target.name, f"rendered {', '.join(stacks)} for {remote.root} "
                     f"({time.monotonic() - begin:.1f}s)")
    files = [f for name in stacks
             for f in upload.stack_files(remote.stack_dir(name), rendered[name].files)]
    keys = [v.source for n in stacks for _, v in key_volumes(project.catalogue[n])]
    keys += [s.health.tls.ca for n in stacks for s in project.catalogue[n].services
             if s.health and s.health.tls]  # the CA a TLS health probe checks against
    files += certificate_files(rendered, remote, base.config.path("CERTS_DIR"), keys)
    stack_dirs = [remote.stack_dir(n) for n in stacks]
    step("comparing files")
    checksums = upload.read_remote_checksums(conn, [*stack_dirs, remote.certs_dir])
    transfer = upload.plan_upload(files, checksums, stack_dirs)
    if options.dry:
        for item in transfer.upload:
            say(target.name, f"would upload {item.remote_path}")
        for path in transfer.delete:
            say(target.name, f"would remove {path}")
        return summary.HostResult(target.name, tuple(stacks), "dry run",
                                  time.monotonic() - begin, "",
                                  tuple(f.remote_path for f in transfer.upload))
    step("uploading")
    upload.apply_upload(conn, transfer, private_dirs=[remote.certs_dir])
    uploaded = tuple(f.remote_path for f in transfer.upload)
    if uploaded or transfer.delete:
        say(target.name, f"uploaded {len(uploaded)} file(s), removed {len(transfer.delete)}, "
                         f"{transfer.unchanged} unchanged")

    # the key files, as they are here (the host's are uploaded copies of them): a changed one
    # updates its stack even when the upload that carried it was cut off before the bring-up
    local_certs, prefix = base.config.path("CERTS_DIR"), remote.certs_dir + "/"

    def local(source: str) -> Path:
        return local_certs / source.removeprefix(prefix) if source.startswith(prefix) \
            else Path(source)

    job = Job.of(project, {n: prepared_stack(rendered[n], keys_state(project.catalogue[n], local),
                                             remote.stack_dir(n)) for n in stacks},
                 options.timeout, options.jobs, action=DEPLOY, rollback=options.rollback,
                 restore=remote_restore(conn, remote))
    step("reading the engine")
    planned = plan_run(conn, job)
    planned = replace(planned, up_plan=_recreate_for_changed_files(
        planned.up_plan, project.catalogue, uploaded, remote))
    result_kwargs: dict[str, Any] = {"uploaded": uploaded, "deleted": tuple(transfer.delete)}
    if planned.up_plan.empty:
        state_of = {n: schedule.UNCHANGED for n in stacks}
        outcome = summary.UNCHANGED if not uploaded and not transfer.delete else summary.OK
        return summary.HostResult(target.name, tuple(stacks), outcome,
                                  time.monotonic() - begin, stack_status=state_of,
                                  **result_kwargs)
    progress = (options.progress_for(target.name) if options.progress_for
                else schedule.Progress())
    step("creating networks and fixing ownership")
    shown = progress.listener

    def stack_changed(stack: str, state_: str, elapsed: float) -> None:
        if state_ == schedule.STARTING:  # the engine is prepared (a scheduler thread: no raise)
            step("bringing up " + ", ".join(planned.order), check=False)
            stack_step = planned.up_plan.steps[stack]
            say(target.name, f"{stack}: {stack_step.action} ({stack_step.reason})")
        elif state_ != schedule.WAITING:
            say(target.name, f"{stack}: {state_} ({time.monotonic() - begin:.1f}s)")
        if shown:
            shown(stack, state_, elapsed)

    progress.listener = stack_changed
    outcomes = apply_run(conn, job, planned, progress, lambda line: say(target.name, line),
                         describe=summary.classify)
    interrupted = [n for n, o in outcomes.items() if o.status == schedule.INTERRUPTED]
    if interrupted:
        step(f"bringing up {', '.join(interrupted)}")
    statuses = {n: o.status for n, o in outcomes.items()}
    failed = [o for o in outcomes.values() if not o.ok]
    if failed:
        return summary.HostResult(target.name, tuple(stacks), summary.FAILED,
                                  time.monotonic() - begin, failure_reason(failed),
                                  stack_status=statuses, details=failure_details(failed),
                                  **result_kwargs)
    return summary.HostResult(target.name, tuple(stacks), summary.OK,
                              time.monotonic() - begin, stack_status=statuses,
                              **result_kwargs)


def _recreate_for_changed_files(up_plan: Any, catalogue: Any, uploaded: Sequence[str],
                                remote: lay.RemoteLayout) -> Any:
    """A stack recorded as unchanged whose files on the host differed gets them re-mounted."""
    from ..bringup.plan import SKIP, UPDATE, StackStep, services_mounting

    steps = dict(up_plan.steps)
    for name, step in up_plan.steps.items():
        prefix = remote.stack_dir(name) + "/"
        changed = [p.removeprefix(prefix) for p in uploaded if p.startswith(prefix)]
        if step.action == SKIP and changed:
            steps[name] = StackStep(name, UPDATE, "files on the host differed",
                                    recreate=services_mounting(catalogue[name], changed),
                                    changed_files=tuple(changed))
    return replace(up_plan, steps=steps)


def certificate_files(rendered: Mapping[str, Any], remote: lay.RemoteLayout,
                      local_certs: Path, keys: Sequence[str] = ()) -> list[upload.LocalFile]:
    """The certificates the rendered compose files mount from the host's CERTS_DIR, and the
    keys (``keys``: their paths on the host) containers get copies of."""
    import yaml

    prefix = remote.certs_dir + "/"
    names: set[str] = {k.removeprefix(prefix) for k in keys if k.startswith(prefix)}
    for item in rendered.values():
        document = yaml.safe_load(item.files["compose.yaml"]) or {}
        for service in (document.get("services") or {}).values():
            for volume in service.get("volumes") or []:
                source = str(volume).split(":", 1)[0]
                if source.startswith(prefix):
                    names.add(source.removeprefix(prefix))
    files = []
    for name in sorted(names):
        path = local_certs / name
        if not path.is_file():
            raise InfraError(f"certificate {path} is missing (a stack mounts it): run "
                             "`invoke certs` first")
        files.append(upload.LocalFile(prefix + name, path.read_bytes(),
                                      upload.SECRET_MODE if upload.is_secret(name)
                                      else upload.PUBLIC_MODE))
    return files


def failure_reason(failed: Sequence[Any]) -> str:
    from ..bringup.schedule import ROLLED_BACK

    parts = []
    for outcome in failed:
        services = [f"{f.service} ({f.state})" for f in outcome.failures]
        if services:
            parts.append(f"unhealthy service {', '.join(dict.fromkeys(services))} in "
                         f"{outcome.stack}")
        else:
            parts.append(f"{outcome.stack} {outcome.status}: {outcome.detail}"[:200])
        if outcome.status == ROLLED_BACK:  # what runs there now
            parts[-1] += ", " + outcome.rollback
    return "; ".join(parts)


def failure_details(failed: Sequence[Any]) -> tuple[str, ...]:
    lines = []
    for outcome in failed:
        for failure in outcome.failures:
            if failure.health_output:
                lines.append(f"{outcome.stack}/{failure.service} health: "
                             f"{failure.health_output}")
            if failure.logs:
                lines.append(f"{outcome.stack}/{failure.service} logs:\n{failure.logs}")
    return tuple(lines)


def deploy_all(targets: Sequence[Target], per_target: Mapping[str, Sequence[str]], base: Any,
               options: DeployOptions, say: Say,
               connector: Callable[[Target], Any] = connect) -> list[summary.HostResult]:
    """Every target in its own thread (SSH and the engines wait, they do not compute).

    Interrupted (infra.interrupt): every connection is closed at once, so no host starts
    anything new and no command is waited for (one already running on a host finishes there;
    each is idempotent, and the same deploy resumes); hosts still stopping after the grace
    period are reported as cut off."""
    from ..bringup.schedule import GRACE
    from ..interrupt import current

    cancel = current()
    open_connections: dict[str, Any] = {}
    lock = threading.Lock()

    def close_all() -> None:
        with lock:
            connections = list(open_connections.values())
        for conn in connections:
            conn.close()

    cancel.on_cancel(close_all)

    def one(target: Target) -> summary.HostResult:
        begin = time.monotonic()
        stacks = tuple(per_target[target.name])
        if cancel.is_set():
            return summary.HostResult(target.name, stacks, summary.NOT_STARTED, 0.0,
                                      "interrupted before it started")
        try:
            conn = connector(target)
        except Exception as exc:
            if cancel.is_set():
                return summary.HostResult(target.name, stacks, summary.INTERRUPTED,
                                          time.monotonic() - begin,
                                          "interrupted while connecting")
            return summary.HostResult(target.name, stacks, summary.FAILED,
                                      time.monotonic() - begin,
                                      f"while connecting: {summary.classify(exc)}")
        with lock:
            open_connections[target.name] = conn
        if cancel.is_set():
            conn.close()
        try:
            return deploy_host(conn, target, stacks, base, options, say)
        finally:
            with lock:
                open_connections.pop(target.name, None)
            conn.close()

    chosen = [t for t in targets if t.name in per_target]
    if not chosen:
        return []
    pool = ThreadPoolExecutor(max_workers=len(chosen))
    futures = {t.name: pool.submit(one, t) for t in chosen}
    deadline = None
    try:
        while not all(f.done() for f in futures.values()):
            if cancel.is_set():
                deadline = deadline or time.monotonic() + GRACE
                if time.monotonic() >= deadline:
                    break
            wait(list(futures.values()), timeout=0.1)
    finally:
        pool.shutdown(wait=deadline is None, cancel_futures=True)
    return [futures[t.name].result() if futures[t.name].done() else
            summary.HostResult(t.name, tuple(per_target[t.name]), summary.INTERRUPTED, 0.0,
                               "interrupted while it ran") for t in chosen]
