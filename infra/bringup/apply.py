"""Apply a plan through an invoke/fabric context: every engine call is a ``c.run``."""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..catalogue import Catalogue, Stack, internal_networks
from ..errors import InfraError
from ..interrupt import cancelled
from ..mirror import mirror_image
from . import commands as cmd
from .enginehost import HELPER_ONLY, EngineHost, read_engine_host
from .facts import ContainerFact, parse_compose_ps
from .ownership import (
    MOUNT_POINT,
    KeyCopy,
    OwnershipChange,
    OwnershipFix,
    key_script,
    ownership_command,
    ownership_script,
    parse_ownership_output,
)
from .plan import SKIP, StackStep, UpPlan, required_networks
from .probes import (
    HttpCheck,
    host_probe_command,
    http_checks,
    parse_probe_output,
    probe_command,
    tls_checks,
    tls_probe_command,
)
from .progress import WAITING_FOR_HEALTH, ComposeProgress, last_health_output, plain_text
from .schedule import FAILED, HEALTHY, INTERRUPTED, UNCHANGED, ServiceFailure, StackOutcome

LOG_TAIL = 30


def create_networks(c: Any, names: Iterable[str], internal: Collection[str] = ()
                    ) -> dict[str, str]:
    """Create the networks (those in ``internal`` with no route outside the engine); returns
    name -> short ID of those created (docker prints it)."""
    created = {}
    for name in names:
        result = c.run(cmd.create_network(name, name in internal), hide=True, warn=True)
        if not result.ok and "already exists" not in result.stderr:
            raise InfraError(f"cannot create network {name}: {result.stderr.strip()}")
        if result.ok and result.stdout.strip():
            created[name] = result.stdout.strip().splitlines()[-1][:12]
    return created


def prepare_engine(c: Any, catalogue: Catalogue, names: Sequence[str], up_plan: UpPlan,
                   networks: Mapping[str, str], helper_image: str, data_root: str,
                   say: Callable[[str], None]) -> EngineHost:
    """Before the stacks: create the missing networks, read the facts that choose between the
    shell and a helper container (enginehost), fix volume ownership. Changes go to ``say``."""
    network_ids = {**networks, **create_networks(c, up_plan.networks_to_create,
                                                 internal_networks(catalogue))}
    for net in up_plan.networks_to_create:
        say(f"created network {net}")
    engine = read_engine_host(c, [network_ids[n] for n in required_networks(catalogue, names)
                                  if n in network_ids])
    for change in apply_ownership(c, helper_image, data_root, up_plan.ownership, dry=False,
                                  on_host=engine.chown_on_host, keys=up_plan.keys):
        if change.action != "ok":
            say(f"{change.action} {change.source} {change.before} -> {change.after}"
                if change.after else f"{change.action} {change.source}")
    return engine


def apply_ownership(c: Any, helper_image: str, data_root: str, fixes: Sequence[OwnershipFix],
                    dry: bool, on_host: bool = False, keys: Sequence[KeyCopy] = ()
                    ) -> list[OwnershipChange]:
    """Create missing data directories and fix their owner/mode, and write each container's
    copy of its keys: from inside the engine, or (``on_host``: a rootful engine on this
    machine, a root shell) by the shell itself."""
    if not fixes and not keys:
        return []
    root = shlex.quote(data_root)
    _check_key_originals(c, keys)
    if dry and not c.run(f"test -d {root}", hide=True, warn=True).ok:
        # mounting a missing folder would create it: report instead of touching anything
        return ([OwnershipChange(f.source, "would-create", "", f.owner_text) for f in fixes]
                + [OwnershipChange(k.copy, "would-key", "-", k.owner_text) for k in keys])
    if on_host:
        script = "\n".join(part for part in (
            ownership_script(fixes, dry, base=data_root),
            key_script(keys, [k.source for k in keys], dry)) if part)
        prefix = "" if dry else f"mkdir -p {root} && "
        result = c.run(f"{prefix}sh -c {shlex.quote(script)}", hide=True, warn=True)
        if not result.ok:
            raise InfraError(f"volume ownership fix failed under {data_root}: "
                             f"{(result.stderr or result.stdout).strip()[-800:]}")
        return parse_ownership_output(result.stdout)
    if not dry:
        c.run(f"mkdir -p {root}", hide=True)
    result = c.run(ownership_command(helper_image, data_root, fixes, dry, keys), hide=True,
                   warn=True)
    if not result.ok:
        raise InfraError(f"volume ownership fix failed in a {helper_image} container: "
                         f"{(result.stderr or result.stdout).strip()[-800:]} (is HELPER_IMAGE "
                         "pullable, through IMAGE_MIRROR when set?)")
    return parse_ownership_output(result.stdout)


def _check_key_originals(c: Any, keys: Sequence[KeyCopy]) -> None:
    """Every original must exist before a container copies it (a missing bind source would
    fail later, less clearly); names with a comma cannot be given to --mount."""
    if not keys:
        return
    odd = [k.source for k in keys if "," in k.source]
    if odd:
        raise InfraError(f"key file path {odd[0]!r} contains a comma, which docker's --mount "
                         "cannot take: move CERTS_DIR to a path without one")
    test = " && ".join(f"test -f {shlex.quote(k.source)}" for k in keys)
    if not c.run(test, hide=True, warn=True).ok:
        listing = c.run("for f in " + " ".join(shlex.quote(k.source) for k in keys)
                        + '; do [ -f "$f" ] || echo "$f"; done', hide=True, warn=True)
        missing = listing.stdout.split() or [k.source for k in keys]
        raise InfraError(f"key file {missing[0]} is missing (a container needs a copy of "
                         "it): run `invoke certs` first")


def compose_ps(c: Any, target: cmd.ComposeTarget) -> list[ContainerFact]:
    result = c.run(cmd.compose(target, "ps", "-a", "--format", "json"), hide=True, warn=True)
    return parse_compose_ps(result.stdout) if result.ok else []


def bring_up_stack(c: Any, stack: Stack, target: cmd.ComposeTarget, step: StackStep,
                   helper_image: str, timeout: int, log_tail: int = LOG_TAIL,
                   engine: EngineHost = HELPER_ONLY, mirror: str = "",
                   on_service: Callable[[str, str, str], None] | None = None) -> StackOutcome:
    """Bring one stack up and wait until every service is healthy (or a job exited 0).

    ``engine``: the facts (enginehost) that let the shell run the HTTP probes (curl) instead
    of a helper container, and run the compose binary directly. ``mirror``: IMAGE_MIRROR, for
    the image a TLS probe runs in. ``on_service(service, state, detail)``: told of each
    service's progress (pulling n/m layers, created, starting, waiting for health with the
    check's last output, healthy), from compose's own events.
    """
    if step.action == SKIP:
        return StackOutcome(stack.name, UNCHANGED, detail=step.reason)
    target = replace(target, program=engine.compose_program)
    begin = time.monotonic()
    daemons = [s.name for s in stack.services if not s.oneshot]
    jobs = [s.name for s in stack.services if s.oneshot]

    def remaining() -> int:
        return max(1, int(timeout - (time.monotonic() - begin)))

    def interrupted() -> StackOutcome | None:
        """Between steps: stop here when the run was interrupted (nothing new starts)."""
        if cancelled():
            return StackOutcome(stack.name, INTERRUPTED, time.monotonic() - begin,
                                "interrupted while it ran")
        return None

    def failed(failures: Sequence[ServiceFailure], detail: str) -> StackOutcome:
        return StackOutcome(stack.name, FAILED, time.monotonic() - begin, detail,
                            tuple(failures))

    if daemons:
        result = _compose_up(c, target, daemons, remaining(), on_service)
        if stop := interrupted():
            return stop
        if result.ok and step.recreate:
            result = c.run(cmd.compose_up(target, step.recreate, remaining(), force_recreate=True,
                                          no_deps=True), hide=True, warn=True)
        if not result.ok:
            error = _last_lines(result.stderr or result.stdout, 6)
            return failed(collect_failures(c, stack, target, daemons, log_tail, error), error)
        # compose's exit code is not the gate on its own: a service with a health check must
        # be healthy now, as the engine says (a `--wait` that ended early was seen in CI)
        checked = {s.name for s in stack.services if s.name in daemons and s.health
                   and s.health.command}
        if checked:
            states = {f.service: f.health or f.state for f in compose_ps(c, target)}
            unhealthy = sorted(s for s in checked if states.get(s) != "healthy")
            if unhealthy:
                error = ("compose reported the stack up, but the engine says "
                         + ", ".join(f"{s} is {states.get(s, 'absent')}" for s in unhealthy))
                return failed(collect_failures(c, stack, target, unhealthy, log_tail, error),
                              error)
    # each service is probed on its home network (internal services only answer there)
    for network, checks in _by_network(http_checks(stack, daemons)).items():
        if stop := interrupted():
            return stop
        probe = (host_probe_command(checks, target.project, network, remaining())
                 if engine.probe_on_host else
                 probe_command(helper_image, network, checks, remaining()))
        result = c.run(probe, hide=True, warn=True)
        bad = [r for r in parse_probe_output(result.stdout) if not r.healthy]
        if bad or not result.ok:
            failures = [ServiceFailure(r.service, "no answer", r.detail,
                                       service_logs(c, target, r.service, log_tail))
                        for r in bad]
            return failed(failures, "HTTP health probe failed" if bad
                          else _last_lines(result.stderr, 6))
    for check in tls_checks(stack, daemons):
        if stop := interrupted():
            return stop
        image = mirror_image(check.image, mirror)
        result = c.run(tls_probe_command(image, check.network, check, remaining()), hide=True,
                       warn=True)
        if not any(r.healthy for r in parse_probe_output(result.stdout)):
            why = " ".join(r.detail for r in parse_probe_output(result.stdout)) \
                or _last_lines(result.stderr, 4)
            return failed([ServiceFailure(check.service, "TLS check failed", why,
                                          service_logs(c, target, check.service, log_tail))],
                          f"{check.service} does not present a certificate of our CA for "
                          f"{check.name} on port {check.port}")
    for job in jobs:
        if stop := interrupted():
            return stop
        started = c.run(cmd.compose_start_oneshot(target, [job]), hide=True, warn=True)
        waited = c.run(cmd.compose_wait(target, job), hide=True, warn=True) if started.ok \
            else started
        code = waited.stdout.strip().splitlines()[-1] if waited.ok and waited.stdout.strip() \
            else ""
        if not started.ok or not waited.ok or code not in ("0", ""):
            return failed([ServiceFailure(job, f"exited {code or '?'}",
                                          _last_lines(waited.stderr, 4),
                                          service_logs(c, target, job, log_tail))],
                          f"one-shot job {job} failed")
    return StackOutcome(stack.name, HEALTHY, time.monotonic() - begin)


def collect_failures(c: Any, stack: Stack, target: cmd.ComposeTarget, services: Sequence[str],
                     log_tail: int = LOG_TAIL, compose_error: str = "") -> list[ServiceFailure]:
    """Which services did not become healthy, with their health output and last log lines.

    Blame, in order: services that are unhealthy, exited or restarting; else services the
    engine could not start (still "created": the compose error says why); else services
    whose health check had not passed when the timeout struck.
    """
    facts = {f.service: f for f in compose_ps(c, target)}
    broken, created, starting = [], [], []
    for name in services:
        fact = facts.get(name)
        if fact is None or fact.state == "created":
            created.append(name)
        elif fact.state != "running" or fact.health == "unhealthy":
            broken.append(fact)
        elif fact.health == "starting":
            starting.append(fact)
    if not broken and created:
        errors = [line for line in compose_error.splitlines() if "rror" in line]
        return [ServiceFailure(name, "could not start", "\n".join(errors) or compose_error,
                               service_logs(c, target, name, log_tail)) for name in created]
    return [ServiceFailure(f.service, f.health or f.state,
                           _inspect_health(c, f.container_id or f.name),
                           service_logs(c, target, f.service, log_tail))
            for f in broken or starting]


def service_logs(c: Any, target: cmd.ComposeTarget, service: str, tail: int) -> str:
    result = c.run(cmd.compose_logs(target, [service], tail=tail), hide=True, warn=True)
    return (result.stdout or result.stderr).rstrip()


def _inspect_health(c: Any, container: str) -> str:
    result = c.run(cmd.inspect_health(container), hide=True, warn=True)
    return _last_lines(result.stdout, 8) if result.ok else ""


def _last_lines(text: str, count: int) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return "\n".join(lines[-count:])


def down_stack(c: Any, target: cmd.ComposeTarget | None, project: str, remove_volumes: bool
               ) -> None:
    base = (target or cmd.ComposeTarget.by_name(project)).base()
    args = "down --remove-orphans" + (" --volumes" if remove_volumes else "")
    result = c.run(f"{base} {args}", hide=True, warn=True)
    if not result.ok:
        raise InfraError(f"docker compose down failed for {project}: "
                         f"{_last_lines(result.stderr, 6)}")


def remove_data(c: Any, helper_image: str, data_root: str, sources: Sequence[str]) -> None:
    """Delete data directories from inside the engine (under rootless they belong to subuids)."""
    if not sources or not c.run(f"test -d {shlex.quote(data_root)}", hide=True, warn=True).ok:
        return
    script = "set -e; " + "; ".join(f"rm -rf {shlex.quote(MOUNT_POINT + '/' + s)}"
                                    for s in sources)
    c.run(cmd.helper_run(helper_image, script, mounts=[f"{data_root}:{MOUNT_POINT}"]),
          hide=True)


def _compose_up(c: Any, target: cmd.ComposeTarget, services: Sequence[str], wait: int,
                on_service: Callable[[str, str, str], None] | None) -> Any:
    """``compose up --wait``; with ``on_service``, its JSON progress read as it comes, and the
    health check's last output fetched every few seconds for a service it waits on. Its
    result's stderr is plain text again (the failure report reads it)."""
    if on_service is None:
        return c.run(cmd.compose_up(target, services, wait), hide=True, warn=True)
    sink = ComposeProgress(target.project, on_service)
    done = threading.Event()

    def watch_health() -> None:
        while not done.wait(3):
            for service in sink.waiting_for_health():
                answer = c.run(cmd.inspect_health(f"{target.project}-{service}-1"),
                               hide=True, warn=True)
                output = last_health_output(answer.stdout) if answer.ok else ""
                if output:
                    sink.note_health(service, output)
                    on_service(service, WAITING_FOR_HEALTH, sink.services[service].detail())

    watcher = threading.Thread(target=watch_health, daemon=True)
    watcher.start()
    try:
        result = c.run(cmd.compose_up(target, services, wait, progress_json=True),
                       hide="out", err_stream=sink, warn=True)
    finally:
        done.set()
    if not result.ok and "unknown flag: --progress" in result.stderr:  # an older compose
        return c.run(cmd.compose_up(target, services, wait), hide=True, warn=True)
    result.stderr = plain_text(result.stderr)
    return result


def _by_network(checks: Sequence[HttpCheck]) -> dict[str, list[HttpCheck]]:
    grouped: dict[str, list[HttpCheck]] = {}
    for check in checks:
        grouped.setdefault(check.network, []).append(check)
    return grouped
