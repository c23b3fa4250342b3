"""Per-host results: one row per host (host, stacks, result, time), failures with a reason."""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

OK, UNCHANGED, FAILED = "deployed", "unchanged", "failed"
INTERRUPTED, NOT_STARTED = "interrupted", "not started"
HEADERS = ("host", "stacks", "result", "uploaded", "time", "reason")


@dataclass(frozen=True)
class HostResult:
    host: str
    stacks: tuple[str, ...]
    result: str
    elapsed: float = 0.0
    reason: str = ""
    uploaded: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    stack_status: dict[str, str] = field(default_factory=dict)
    details: tuple[str, ...] = ()  # failure output worth printing (health, logs)

    @property
    def ok(self) -> bool:
        return self.result not in (FAILED, INTERRUPTED, NOT_STARTED)


def classify(exc: BaseException) -> str:
    """A short, honest reason for a host that could not be deployed."""
    try:
        import paramiko
    except ImportError:  # pragma: no cover - fabric depends on paramiko
        paramiko = None  # type: ignore[assignment]
    if paramiko is not None:
        if isinstance(exc, paramiko.AuthenticationException):
            return "auth failed: the key was not accepted (check user and key in the inventory)"
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            codes = {getattr(e, "errno", None) for e in exc.errors.values()}
            if errno.ECONNREFUSED in codes:
                return "connection refused (is sshd running on that port?)"
            return f"unreachable: {exc}"
        if isinstance(exc, paramiko.ssh_exception.SSHException):
            return f"ssh error: {exc}"
    if isinstance(exc, socket.gaierror):
        return f"unknown host: {exc.strerror or exc}"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "unreachable: connection timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is sshd running on that port?)"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"unreachable: {exc.strerror}"
    if isinstance(exc, EOFError):
        return "connection lost (the host stopped answering, or closed it)"
    text = str(exc).strip() or type(exc).__name__
    from ..errors import InfraError

    if isinstance(exc, InfraError):  # ours: every line matters (the cause, then its fix)
        return text
    # the engine's and compose's errors too: the cause is often on a later line
    return text if len(text) <= 4000 else text[:4000] + " ..."


def rows(results: Sequence[HostResult]) -> list[tuple[str, ...]]:
    """Table rows: a reason of several lines shows its first, with a pointer to the whole
    (printed below the table)."""
    def short(reason: str) -> str:
        lines = reason.strip().splitlines()
        return lines[0] + (" (whole cause below)" if len(lines) > 1 else "") if lines else "-"

    return [(r.host, ", ".join(r.stacks) or "-", r.result, str(len(r.uploaded)),
             f"{r.elapsed:.1f}s", short(r.reason)) for r in results]


def exit_code(results: Sequence[HostResult]) -> int:
    return 0 if all(r.ok for r in results) else 1


def interruption_report(results: Sequence[HostResult]) -> Any:
    """Which hosts finished, which were cut off (and in which step), which never started."""
    from ..interrupt import Report

    return Report(tuple(f"{r.host} ({r.result})" for r in results
                        if r.result not in (INTERRUPTED, NOT_STARTED)),
                  tuple(f"{r.host} ({r.reason})" for r in results if r.result == INTERRUPTED),
                  tuple(r.host for r in results if r.result == NOT_STARTED))
