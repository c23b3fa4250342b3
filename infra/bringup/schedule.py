"""Run stacks in dependency order, independent ones in parallel, stopping at the first failure.

A stack starts as soon as every stack it depends on is up (finer than waiting for a whole
layer). After a failure nothing new starts: stacks that need the failed one are ``blocked``,
others ``not started``; stacks already running finish and stay up.

Interrupted (Ctrl-C, SIGTERM: infra.interrupt), nothing new starts either; the stacks being
brought up get ``GRACE`` seconds to stop (their commands got the signal too), then are
reported ``interrupted``, never ``failed``: the signal, not the stack, stopped them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

HEALTHY, UNCHANGED, FAILED, BLOCKED, NOT_STARTED, INTERRUPTED = (
    "healthy", "unchanged", "failed", "blocked", "not started", "interrupted")
# a failed change whose stack went back to its last healthy revision: up, but the run failed
ROLLED_BACK = "rolled back"
GRACE = 1.2  # seconds the running stacks get to stop once interrupted (the user waits <= 2 s)
WAITING, STARTING = "waiting", "starting"
OK_STATES = {HEALTHY, UNCHANGED}


@dataclass(frozen=True)
class ServiceFailure:
    service: str
    state: str
    health_output: str = ""
    logs: str = ""


@dataclass(frozen=True)
class StackOutcome:
    stack: str
    status: str
    elapsed: float = 0.0
    detail: str = ""
    failures: tuple[ServiceFailure, ...] = ()
    rollback: str = ""  # a rolled-back change: where the stack went back to (run._roll_back)

    @property
    def ok(self) -> bool:
        return self.status in OK_STATES


@dataclass
class Progress:
    """Thread-safe per-stack state for a live display."""

    states: dict[str, str] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # told of every change (stack, state, elapsed): the --events stream
    listener: Callable[[str, str, float], None] | None = None
    # per stack, per service: (state, detail, since) from compose's events
    services: dict[str, dict[str, tuple[str, str, float]]] = field(default_factory=dict)
    service_listener: Callable[[str, str, str, str], None] | None = None

    def set(self, stack: str, state: str) -> None:
        with self.lock:
            self.states[stack] = state
            now = time.monotonic()
            if state == STARTING:
                self.started[stack] = now
            elif state not in (WAITING,):
                self.started.setdefault(stack, now)
                self.finished[stack] = now
            elapsed = now - self.started[stack] if stack in self.started else 0.0
        if self.listener is not None:
            self.listener(stack, state, elapsed)

    def service(self, stack: str, service: str, state: str, detail: str) -> None:
        """A service's progress inside a stack being brought up."""
        with self.lock:
            known = self.services.setdefault(stack, {})
            before = known.get(service)
            since = before[2] if before and before[0] == state else time.monotonic()
            known[service] = (state, detail, since)
        if self.service_listener is not None and (before is None or before[0] != state):
            self.service_listener(stack, service, state, detail)

    def doing(self, stack: str) -> str:
        """What a stack being brought up is on: the service it has waited on longest for
        health (what holds it up), else its latest service not yet done."""
        from .progress import FINAL, WAITING_FOR_HEALTH

        now = time.monotonic()
        with self.lock:
            if self.states.get(stack) != STARTING:
                return ""
            busy = [(since, service, state, detail) for service, (state, detail, since)
                    in self.services.get(stack, {}).items() if state not in FINAL]
        if not busy:
            return ""
        waiting = [item for item in busy if item[2] == WAITING_FOR_HEALTH]
        since, service, _, detail = min(waiting) if waiting else max(busy)
        return f"{service}: {detail} ({now - since:.0f}s)"

    def snapshot(self) -> list[tuple[str, str, float]]:
        now = time.monotonic()
        with self.lock:
            rows = []
            for stack, state in self.states.items():
                begin = self.started.get(stack)
                end = self.finished.get(stack, now)
                rows.append((stack, state, (end - begin) if begin is not None else 0.0))
            return rows


def run_in_order(order: Sequence[str], depends_on: Mapping[str, Sequence[str]],
                 bring_up: Callable[[str], StackOutcome], progress: Progress | None = None,
                 max_parallel: int = 4, cancelled: Callable[[], bool] | None = None
                 ) -> dict[str, StackOutcome]:
    """Call ``bring_up(stack)`` for every stack of ``order`` once its dependencies are OK."""
    from ..interrupt import cancelled as interrupt_cancelled

    cancelled = cancelled or interrupt_cancelled
    progress = progress or Progress()
    chosen = set(order)
    deps = {name: [d for d in depends_on.get(name, ()) if d in chosen] for name in order}
    for name in order:
        progress.set(name, WAITING)
    outcomes: dict[str, StackOutcome] = {}
    running: dict[Future[StackOutcome], str] = {}
    stopped = False

    def timed(name: str) -> StackOutcome:
        begin = time.monotonic()
        progress.set(name, STARTING)
        try:
            outcome = bring_up(name)
        except Exception as exc:  # report it as this stack's failure, keep the others' outcome
            outcome = StackOutcome(name, FAILED, detail=f"{type(exc).__name__}: {exc}")
        if not outcome.ok and cancelled():  # its commands got the signal: not its failure
            outcome = StackOutcome(name, INTERRUPTED, detail="interrupted while it ran")
        if not outcome.elapsed:
            outcome = replace(outcome, elapsed=time.monotonic() - begin)
        progress.set(name, outcome.status)
        return outcome

    pool = ThreadPoolExecutor(max_workers=max(1, max_parallel))
    deadline = None
    try:
        while True:
            if cancelled() and deadline is None:
                deadline = time.monotonic() + GRACE
            if not stopped and deadline is None:
                for name in order:
                    if name in outcomes or name in running.values():
                        continue
                    if all(d in outcomes and outcomes[d].ok for d in deps[name]):
                        running[pool.submit(timed, name)] = name
            if not running:
                break
            if deadline is not None and time.monotonic() >= deadline:
                for name in running.values():  # still stopping: reported as cut off
                    outcomes[name] = StackOutcome(name, INTERRUPTED,
                                                  detail="interrupted while it ran")
                    progress.set(name, INTERRUPTED)
                running.clear()
                break
            done, _ = wait(list(running), timeout=0.1, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                outcomes[name] = future.result()
                if not outcomes[name].ok:
                    stopped = True
    finally:
        # an interrupted run does not wait for threads still stopping (the task exits)
        pool.shutdown(wait=deadline is None, cancel_futures=True)
    failed = {n for n, o in outcomes.items() if o.status in (FAILED, BLOCKED, ROLLED_BACK)}
    for name in order:
        if name in outcomes:
            continue
        blockers = sorted(_transitive(name, deps) & failed)
        status = BLOCKED if blockers else NOT_STARTED
        detail = (f"needs {', '.join(blockers)}" if blockers else
                  "interrupted before it started" if cancelled() else "bring-up stopped")
        outcomes[name] = StackOutcome(name, status, detail=detail)
        progress.set(name, status)
    return {name: outcomes[name] for name in order}


def _transitive(name: str, deps: Mapping[str, Sequence[str]]) -> set[str]:
    seen: set[str] = set()
    frontier = list(deps.get(name, ()))
    while frontier:
        current = frontier.pop()
        if current not in seen:
            seen.add(current)
            frontier.extend(deps.get(current, ()))
    return seen


def interruption_report(outcomes: Mapping[str, StackOutcome], prefix: str = "") -> Any:
    """What finished, what was cut off, what never started (infra.interrupt.Report)."""
    from ..interrupt import Report

    def named(statuses: set[str]) -> tuple[str, ...]:
        return tuple(prefix + n for n, o in outcomes.items() if o.status in statuses)

    return Report(named({HEALTHY, UNCHANGED, FAILED}), named({INTERRUPTED}),
                  named({NOT_STARTED, BLOCKED}))
