"""The one bring-up run, for ``invoke up`` (this machine) and ``deploy`` (a host over SSH).

The caller renders and names where each stack's files are (``Job``); ``plan_run`` reads the
engine and the recorded state, ``apply_run`` creates the networks, fixes volume ownership and
brings the stacks up in dependency order, each health-gated. Every stack it brings up gets a
revision in the deploy history (infra.history): healthy ones are recorded in the run state
too. A running stack that was healthy at its last revision and fails its gate after a change
is returned to that revision (``Job.rollback``): its kept files are put back where the stack's
files are (``Job.restore``: written here, uploaded to a host), brought up health-gated, and
the outcome says both (``rolled back``, not ok: the run still fails).

Both take the connection (an invoke Context or a fabric Connection): every engine call is a
``c.run``. Progress goes to a ``schedule.Progress``; engine changes to ``say``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import history
from ..interrupt import current
from . import apply as engine_apply
from . import commands, facts, plan, schedule, state
from .progress import FINAL
from .session import PreparedStack, stack_of

if TYPE_CHECKING:
    from ..catalogue import Catalogue
    from ..project import Project

# Puts a revision's files back where the stack's files are (stack, relative path -> content)
Restore = Callable[[str, Mapping[str, str]], None]


@dataclass(frozen=True)
class Job:
    """What one run brings up on one engine, and how."""

    catalogue: Catalogue
    stacks: Mapping[str, PreparedStack]  # name -> its compose target, file hashes, digest
    build_dir: Path  # where the run state (and the history) of this engine is recorded
    data_root: str
    helper: str  # the helper image (mirrored when IMAGE_MIRROR is set)
    mirror: str
    timeout: int  # seconds each stack may take to become healthy
    jobs: int = 4  # independent stacks brought up at once
    action: str = history.UP  # what the history calls this run
    host: str = ""  # the inventory host ('' this machine)
    settings: str = ""  # hash of the public settings (history.settings_hash)
    keep: int = 5  # healthy revisions whose files the history keeps (HISTORY_KEEP)
    rollback: bool = True  # a failed change goes back to the last healthy revision
    restore: Restore | None = None  # needed for rollbacks
    restores: int = 0  # a rollback run: the revision it brings back

    @property
    def names(self) -> list[str]:
        return list(self.stacks)

    @classmethod
    def of(cls, project: Project, stacks: Mapping[str, PreparedStack], timeout: int = 0,
           jobs: int = 4, **options: Any) -> Job:
        """The run of ``stacks`` with the project's settings (``timeout`` 0: HEALTH_TIMEOUT);
        ``options``: the other fields (action, rollback, restore ...)."""
        from .session import helper_image

        config = project.config
        return cls(project.catalogue, stacks, config.build_dir, str(config.path("DATA_ROOT")),
                   helper_image(config), config.get("IMAGE_MIRROR"),
                   int(timeout or config["HEALTH_TIMEOUT"]), max(1, int(jobs)),
                   host=config.host, settings=history.settings_hash(config.public),
                   keep=int(config.get("HISTORY_KEEP", "5") or 5), **options)


@dataclass(frozen=True)
class Planned:
    up_plan: plan.UpPlan
    networks: Mapping[str, str]  # the engine's networks: name -> ID

    @property
    def order(self) -> list[str]:
        return [n for layer in self.up_plan.layers for n in layer]


def plan_run(c: Any, job: Job) -> Planned:
    """Read the engine and the recorded state; plan what changes (nothing is touched)."""
    containers, networks = facts.read_engine_state(c)
    up_plan = plan.plan_up(job.catalogue, job.names,
                           {n: p.digest for n, p in job.stacks.items()},
                           {n: p.files for n, p in job.stacks.items()},
                           state.load_state(job.build_dir),
                           facts.containers_by_project(containers), networks)
    return Planned(up_plan, networks)


def apply_run(c: Any, job: Job, planned: Planned, progress: schedule.Progress,
              say: Callable[[str], None],
              describe: Callable[[Exception], str] | None = None
              ) -> dict[str, schedule.StackOutcome]:
    """Networks, ownership, then the stacks in order; outcomes per stack, in order.

    ``describe``: the text of an error a stack's bring-up raised (deploy names lost links)."""
    up_plan = planned.up_plan
    engine = engine_apply.prepare_engine(c, job.catalogue, job.names, up_plan,
                                         planned.networks, job.helper, job.data_root, say)
    current().check()  # interrupted while preparing: no stack starts
    lock = threading.Lock()
    begin = time.monotonic()

    def bring_up(name: str) -> schedule.StackOutcome:
        prepared = job.stacks[name]
        step = up_plan.steps[name]
        try:
            outcome, health = _gated(c, job, name, prepared, step, engine, progress)
        except Exception as exc:
            if describe is None:
                raise  # the scheduler reports it as this stack's failure
            return schedule.StackOutcome(name, schedule.FAILED, time.monotonic() - begin,
                                         describe(exc))
        if step.action == plan.SKIP or outcome.status == schedule.INTERRUPTED:
            return outcome
        before = history.load(job.build_dir, name)
        revision = _record(c, job, name, prepared, job.action, outcome, health, job.restores)
        if outcome.status == schedule.HEALTHY:
            with lock:
                state.record_stack(job.build_dir, name,
                                   state.StackRecord(prepared.digest, prepared.files))
            return outcome
        previous = history.current(before)
        # it ran, healthy at its last revision, and this change broke it: back to that one
        if (outcome.status == schedule.FAILED and job.rollback and job.restore is not None
                and step.action != plan.CREATE and previous is not None and previous.good
                and previous.kept and previous.digest != prepared.digest
                and not current().is_set()):
            return _roll_back(c, job, name, prepared, previous, revision, outcome, engine,
                              progress, lock)
        return outcome

    order = planned.order
    deps = {n: list(job.catalogue[n].depends_on) for n in order}
    return schedule.run_in_order(order, deps, bring_up, progress, max_parallel=job.jobs)


def _gated(c: Any, job: Job, name: str, prepared: PreparedStack, step: plan.StackStep,
           engine: Any, progress: schedule.Progress
           ) -> tuple[schedule.StackOutcome, dict[str, float]]:
    """One stack's health-gated bring-up, and each service's seconds until it was done."""
    begin = time.monotonic()
    health: dict[str, float] = {}

    def on_service(service: str, state_: str, detail: str) -> None:
        if state_ in FINAL and service not in health:
            health[service] = round(time.monotonic() - begin, 1)
        progress.service(name, service, state_, detail)

    outcome = engine_apply.bring_up_stack(
        c, job.catalogue[name], prepared.target, step, job.helper, job.timeout,
        engine=engine, mirror=job.mirror, on_service=on_service)
    return outcome, health


def _record(c: Any, job: Job, name: str, prepared: PreparedStack, action: str,
            outcome: schedule.StackOutcome, health: Mapping[str, float], restored: int = 0
            ) -> history.Revision:
    images = _images(c, name)
    result = history.HEALTHY if outcome.status == schedule.HEALTHY else history.FAILED
    revision = history.Revision(
        0, name, datetime.now(UTC).isoformat(timespec="seconds"), history.login(),
        action, prepared.digest, job.settings, result, job.host, images, dict(health),
        restored, detail="" if result == history.HEALTHY else outcome.detail[:300])
    return history.record(job.build_dir, revision, prepared.contents or None, job.keep)


def _images(c: Any, name: str) -> tuple[history.ImageUse, ...]:
    result = c.run(commands.stack_images(plan.project_name(name)), hide=True, warn=True,
                   in_stream=False)
    if not result.ok:  # the history still records the run, without image IDs
        return ()
    return tuple(history.ImageUse(*row) for row in facts.parse_stack_images(result.stdout))


def _roll_back(c: Any, job: Job, name: str, failed_stack: PreparedStack,
               previous: history.Revision, failed_revision: history.Revision,
               outcome: schedule.StackOutcome, engine: Any, progress: schedule.Progress,
               lock: threading.Lock) -> schedule.StackOutcome:
    """Put the last healthy revision back and bring it up; the outcome tells both."""
    assert job.restore is not None
    contents = history.kept_files(job.build_dir, previous)
    keys = failed_stack.files.get(plan.KEYS_STATE, "")
    restored = stack_of(name, contents, keys, failed_stack.target.directory or ".")
    job.restore(name, contents)
    changed = tuple(sorted(p for p in set(restored.files) | set(failed_stack.files)
                           if restored.files.get(p) != failed_stack.files.get(p)))
    step = plan.StackStep(name, plan.UPDATE, f"rolling back to revision {previous.rev}",
                          recreate=plan.services_mounting(job.catalogue[name], changed),
                          changed_files=changed)
    back, health = _gated(c, job, name, restored, step, engine, progress)
    revision = _record(c, job, name, restored, history.AUTO_ROLLBACK, back, health,
                       restored=previous.rev)
    if back.status == schedule.HEALTHY:
        with lock:
            state.record_stack(job.build_dir, name,
                               state.StackRecord(restored.digest, restored.files))
        ending = (f"rolled back to revision {previous.rev} (healthy again as revision "
                  f"{revision.rev}, the failed change is revision {failed_revision.rev})")
    else:
        ending = (f"the rollback to revision {previous.rev} failed too: {back.detail} (the "
                  f"failed change is revision {failed_revision.rev})")
    return schedule.StackOutcome(name, schedule.ROLLED_BACK if back.ok else schedule.FAILED,
                                 outcome.elapsed + back.elapsed,
                                 f"{outcome.detail}; {ending}".strip("; "),
                                 outcome.failures + back.failures, rollback=ending)


@dataclass(frozen=True)
class RollbackPlan:
    stack: str
    running: history.Revision  # what runs now
    target: history.Revision  # what comes back
    majors: tuple[str, ...]  # services whose image changes major version between them


def plan_rollback(build_dir: Path, stack: str, to: int | None) -> RollbackPlan:
    """Which revision a rollback brings back (``to``: a revision number; default: the last
    healthy one whose files differ from what runs); ``ConfigError`` with the fix otherwise."""
    revisions = history.load(build_dir, stack)
    target = history.rollback_target(revisions, to)
    running = history.current(revisions)
    assert running is not None
    return RollbackPlan(stack, running, target, tuple(history.major_changes(running, target)))


def rollback_job(project: Project, rollback: RollbackPlan, directory: str | Path,
                 restore: Restore, timeout: int = 0) -> Job:
    """The run that brings ``rollback.target`` back: its kept files (put in place by
    ``restore`` when applied), gated like any bring-up, recorded as a ``rollback``."""
    from .ownership import keys_state

    contents = history.kept_files(project.config.build_dir, rollback.target)
    keys = keys_state(project.catalogue[rollback.stack])
    prepared = stack_of(rollback.stack, contents, keys, directory)
    return Job.of(project, {rollback.stack: prepared}, timeout, 1, action=history.ROLLBACK,
                  rollback=False, restore=restore, restores=rollback.target.rev)


def dependents_health(c: Any, catalogue: Catalogue, stack: str) -> dict[str, str]:
    """Each running stack that needs ``stack`` (transitively): '' when its services are
    healthy, else what is wrong (a rollback re-checks them: they talk to it)."""
    from ..catalogue import dependents

    containers, _ = facts.read_engine_state(c)
    by_project = facts.containers_by_project(containers)
    found = {}
    for name in sorted(dependents(catalogue, stack)):
        running = by_project.get(plan.project_name(name), [])
        if running:
            found[name] = plan.service_problem(catalogue[name], running)
    return found
