"""The one bring-up run, for ``invoke up`` (this machine) and ``deploy`` (a host over SSH).

The caller renders and names where each stack's files are (``Job``); ``plan`` reads the
engine and the recorded state, ``apply`` creates the networks, fixes volume ownership and
brings the stacks up in dependency order, each health-gated, recording each one that became
healthy. Both take the connection (an invoke Context or a fabric Connection): every engine
call is a ``c.run``. Progress goes to a ``schedule.Progress``; engine changes to ``say``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..interrupt import current
from . import apply as engine_apply
from . import facts, plan, schedule, state
from .session import PreparedStack

if TYPE_CHECKING:
    from ..catalogue import Catalogue
    from ..project import Project


@dataclass(frozen=True)
class Job:
    """What one run brings up on one engine, and how."""

    catalogue: Catalogue
    stacks: Mapping[str, PreparedStack]  # name -> its compose target, file hashes, digest
    build_dir: Path  # where the run state of this engine is recorded
    data_root: str
    helper: str  # the helper image (mirrored when IMAGE_MIRROR is set)
    mirror: str
    timeout: int  # seconds each stack may take to become healthy
    jobs: int = 4  # independent stacks brought up at once

    @property
    def names(self) -> list[str]:
        return list(self.stacks)

    @classmethod
    def of(cls, project: Project, stacks: Mapping[str, PreparedStack], timeout: int = 0,
           jobs: int = 4) -> Job:
        """The run of ``stacks`` with the project's settings (``timeout`` 0: HEALTH_TIMEOUT)."""
        from .session import helper_image

        config = project.config
        return cls(project.catalogue, stacks, config.build_dir, str(config.path("DATA_ROOT")),
                   helper_image(config),
                   config.get("IMAGE_MIRROR"), int(timeout or config["HEALTH_TIMEOUT"]),
                   max(1, int(jobs)))


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

        def on_service(service: str, state_: str, detail: str) -> None:
            progress.service(name, service, state_, detail)

        try:
            outcome = engine_apply.bring_up_stack(
                c, job.catalogue[name], prepared.target, up_plan.steps[name], job.helper,
                job.timeout, engine=engine, mirror=job.mirror, on_service=on_service)
        except Exception as exc:
            if describe is None:
                raise  # the scheduler reports it as this stack's failure
            return schedule.StackOutcome(name, schedule.FAILED, time.monotonic() - begin,
                                         describe(exc))
        if outcome.status == schedule.HEALTHY:
            with lock:
                state.record_stack(job.build_dir, name,
                                   state.StackRecord(prepared.digest, prepared.files))
        return outcome

    order = planned.order
    deps = {n: list(job.catalogue[n].depends_on) for n in order}
    return schedule.run_in_order(order, deps, bring_up, progress, max_parallel=job.jobs)


def failed(outcomes: Mapping[str, schedule.StackOutcome]) -> Sequence[schedule.StackOutcome]:
    return [o for o in outcomes.values() if not o.ok]
