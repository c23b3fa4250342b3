"""fabric's Connection with Nagle's algorithm off (imported only when connecting: fabric is slow
to import).

Paramiko leaves TCP_NODELAY unset. With Nagle on, the small packets of opening a session
channel wait for the peer's delayed ACK (40 ms on Linux): every ``run`` took at least 50 ms,
even ``true`` on a host next door. OpenSSH's own client sets TCP_NODELAY for this reason.
With it, a ``run`` on a namespace host takes about 14 ms (bench/ssh_run.py).
"""

from __future__ import annotations

import socket
from typing import Any

import fabric


class Connection(fabric.Connection):  # type: ignore[misc]
    def open(self) -> Any:
        result = super().open()
        disable_nagle(self.transport)
        return result


def disable_nagle(transport: Any) -> None:
    """Set TCP_NODELAY on the transport's socket (not on a gateway's channel or a proxy
    command, which have no TCP socket of their own)."""
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
