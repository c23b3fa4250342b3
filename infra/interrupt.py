"""Ctrl-C and SIGTERM for long tasks: stop starting, say where it stopped, exit 130 (or 143).

The first signal cancels: nothing new starts (the scheduler and every step loop ask
``cancelled()``), a terminal's Ctrl-C has already reached our child processes (one process
group), a SIGTERM is passed on to them as a SIGINT, and the registered callbacks run (deploy
closes its SSH connections, so a command waiting on a host returns at once; the command
itself finishes there, which is harmless: every step is idempotent and the next run picks up
from it). Work that can stop halfway stops. The task then reports what finished, what was cut
off and what never started, and the command that resumes: the same one, since every task
converges. A second signal stops at once.

Sequential tasks get ``Interrupted`` raised where they are; threaded ones (up, deploy) are
told through ``cancelled()`` and report from their own lists (``Report``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

EXIT_CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal


class Interrupted(Exception):
    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 130)


@dataclass
class Cancellation:
    event: threading.Event = field(default_factory=threading.Event)
    signum: int = 0
    callbacks: list[Callable[[], None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    raise_in_main: bool = True  # sequential tasks: raise Interrupted where the main thread is
    steps: Steps | None = None  # a sequential task's steps, for its report
    shield: str = ""  # a section that must not stop halfway (why), see ``shielded``
    pending: int = 0  # a signal that arrived inside it

    def is_set(self) -> bool:
        return self.event.is_set()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        with self.lock:
            self.callbacks.append(callback)
        if self.is_set():
            callback()

    def cancel(self, signum: int) -> None:
        with self.lock:
            if self.event.is_set():
                return
            self.signum = signum
            self.event.set()
            callbacks = list(self.callbacks)
        for callback in callbacks:
            with contextlib.suppress(Exception):  # one failing must not hide the interruption
                callback()

    def check(self) -> None:
        """Raise ``Interrupted`` when cancelled (between steps of a loop)."""
        if self.is_set():
            raise Interrupted(self.signum)


_NONE = Cancellation()  # what code outside a task sees: never cancelled
_current: Cancellation = _NONE


def current() -> Cancellation:
    return _current


def cancelled() -> bool:
    return _current.is_set()


def resume_command() -> str:
    """The command line that started this run: running it again converges."""
    program = os.path.basename(sys.argv[0]) if sys.argv else "invoke"
    if program.startswith("__main__") or program.endswith(".py"):
        program = "invoke"
    return shlex.join([program, *sys.argv[1:]])


@contextmanager
def handling(raise_in_main: bool = True) -> Iterator[Cancellation]:
    """Install the handlers for one task run (main thread only; elsewhere: a no-op)."""
    global _current
    if threading.current_thread() is not threading.main_thread() or _current is not _NONE:
        yield _current  # a task called from a task (host.prepare) keeps the outer handling
        return
    cancellation = Cancellation(raise_in_main=raise_in_main)
    passing_on = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if passing_on.is_set() and signum == signal.SIGINT:
            return  # our own SIGTERM passed on to the children
        if cancellation.is_set():
            sys.stderr.write(f"\n{signal.Signals(signum).name} again: stopping at once\n")
            sys.stderr.flush()
            os._exit(EXIT_CODES.get(signum, 130))
        sys.stderr.write(f"\n{signal.Signals(signum).name}: stopping; nothing new starts "
                         "(again to stop at once)\n")
        sys.stderr.flush()
        if signum == signal.SIGTERM:
            passing_on.set()
            with contextlib.suppress(OSError):  # as Ctrl-C from a terminal: children stop too
                os.killpg(os.getpgrp(), signal.SIGINT)
        cancellation.cancel(signum)
        if cancellation.shield:
            sys.stderr.write(f"finishing first: {cancellation.shield}\n")
            cancellation.pending = signum
            return
        if cancellation.raise_in_main:
            raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in EXIT_CODES}
    _current = cancellation
    try:
        yield cancellation
    finally:
        _current = _NONE
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def shielded(why: str) -> Iterator[None]:
    """A section an interruption must not cut in half (``why`` is said when one arrives):
    the signal takes effect when it ends."""
    cancellation = current()
    outer, cancellation.shield = cancellation.shield, why
    try:
        yield
    finally:
        cancellation.shield = outer
    if not outer and cancellation.pending and cancellation.raise_in_main:
        signum, cancellation.pending = cancellation.pending, 0
        raise Interrupted(signum)


@dataclass
class Steps:
    """What a sequential task planned, did and was doing: its interruption report."""

    planned: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    running: str = ""

    def begin(self, name: str) -> None:
        """``name`` starts (the one running before it, if any, is done)."""
        current().check()
        if self.running:
            self.finish(self.running)
        if name not in self.planned:
            self.planned.append(name)
        self.running = name

    def finish(self, name: str) -> None:
        if name not in self.done:
            self.done.append(name)
        self.running = ""

    def report(self) -> Report:
        rest = [s for s in self.planned if s not in self.done and s != self.running]
        return Report(tuple(self.done), (self.running,) if self.running else (), tuple(rest))


def track(planned: list[str]) -> Steps:
    """The steps of a sequential task: reported when it is interrupted."""
    steps = Steps(list(planned))
    current().steps = steps
    return steps


@dataclass(frozen=True)
class Report:
    finished: tuple[str, ...] = ()
    cut_off: tuple[str, ...] = ()
    not_started: tuple[str, ...] = ()

    def lines(self, signum: int = signal.SIGINT) -> list[str]:
        def listed(items: tuple[str, ...]) -> str:
            return ", ".join(items) if items else "nothing"

        return [f"interrupted ({signal.Signals(signum or signal.SIGINT).name})",
                f"  finished:      {listed(self.finished)}",
                f"  cut off:       {listed(self.cut_off)}",
                f"  never started: {listed(self.not_started)}",
                f"  to resume, run the same command again: {resume_command()}"]

    def as_event(self, signum: int = signal.SIGINT) -> dict[str, Any]:
        return {"event": "interrupted", "signal": signal.Signals(signum or 2).name,
                "finished": list(self.finished), "cut_off": list(self.cut_off),
                "not_started": list(self.not_started), "resume": resume_command()}
