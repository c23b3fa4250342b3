"""fabric's Connection, verifying the host's key and with Nagle's algorithm off (imported only
when connecting: fabric is slow to import).

Host keys: fabric accepts any key by default (paramiko's AutoAddPolicy, no known_hosts
loaded), and a deploy then uploads 0600 secrets and private keys to whoever answers. This
Connection checks the host's key against the user's ~/.ssh/known_hosts and the inventory's
own ``known_hosts:`` file: an unknown host is refused with its fingerprint and how to accept it
once, deliberately; a key that differs from the recorded one is refused loudly. Nothing is
added to any known_hosts file by this code.

Paramiko leaves TCP_NODELAY unset. With Nagle on, the small packets of opening a session
channel wait for the peer's delayed ACK (40 ms on Linux): every ``run`` took at least 50 ms,
even ``true`` on a host next door. OpenSSH's own client sets TCP_NODELAY for this reason.
With it, a ``run`` on a namespace host takes about 14 ms (bench/ssh_run.py).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from collections.abc import Sequence
from typing import Any

import fabric
import paramiko

from ..errors import ConfigError, InfraError, Problem

USER_KNOWN_HOSTS = "~/.ssh/known_hosts"


class UnverifiedHost(InfraError):
    """The host's key is not recorded anywhere we trust: nothing is sent to it."""

    exit_code = 2


class HostKeyChanged(InfraError):
    """The host presented another key than the one recorded for it."""

    exit_code = 2


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint (as `ssh-keygen -lf` prints it)."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _key_file_kind(key_type: str) -> str:
    """The word in sshd's host key file name: ed25519, ecdsa, rsa."""
    for kind in ("ed25519", "ecdsa", "rsa", "dsa"):
        if kind in key_type:
            return kind
    return key_type


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    def __init__(self, port: int, files: Sequence[str]):
        self.port = port
        self.files = files

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        host = hostname.removeprefix("[").split("]")[0]
        where = self.files[-1] if self.files else USER_KNOWN_HOSTS
        raise UnverifiedHost(
            f"SSH host {known_hosts_name(host, self.port)} is not in a known_hosts file "
            f"({', '.join(self.files) or USER_KNOWN_HOSTS}); it offered a {key.get_name()} key "
            f"{fingerprint(key)}. Refused: nothing is sent to a host that is not verified.\n"
            f"    fix: compare that fingerprint with the host's own (on it: ssh-keygen -lf "
            f"/etc/ssh/ssh_host_{_key_file_kind(key.get_name())}_key.pub), then record it "
            f"once: ssh-keyscan -p {self.port} -t {key.get_name()} {host} >> {where}")


class Connection(fabric.Connection):  # type: ignore[misc]
    """``known_hosts``: more known_hosts files (the inventory's), besides the user's."""

    def __init__(self, *args: Any, known_hosts: Sequence[str] = (), **kwargs: Any) -> None:
        # before fabric's __init__ (it builds the jump hosts), and past invoke's attribute
        # proxy (which needs a config that does not exist yet)
        self.__dict__["extra_known_hosts"] = tuple(known_hosts)
        super().__init__(*args, **kwargs)
        self.known_hosts_files = verify_host_keys(self.client, known_hosts, int(self.port))

    def get_gateway(self) -> Any:
        """A jump host (ProxyJump) is verified like the host itself: fabric builds its own
        Connection for it, which would accept any key."""
        return self._verified(super().get_gateway())

    def _verified(self, gateway: Any) -> Any:
        if not isinstance(gateway, fabric.Connection) or isinstance(gateway, Connection):
            return gateway
        return Connection(gateway.host, user=gateway.user, port=gateway.port,
                          config=gateway.config, gateway=self._verified(gateway.gateway),
                          connect_kwargs=gateway.connect_kwargs,
                          connect_timeout=gateway.connect_timeout,
                          known_hosts=self.extra_known_hosts)

    def open(self) -> Any:
        try:
            result = super().open()
        except paramiko.BadHostKeyException as exc:
            raise HostKeyChanged(
                f"SSH host {known_hosts_name(self.host, int(self.port))} presented a "
                f"{exc.key.get_name()} key {fingerprint(exc.key)}, but known_hosts records "
                f"{fingerprint(exc.expected_key)} for it. REFUSED: this is what a machine in "
                "the middle looks like.\n"
                "    fix: if the host was reinstalled or its keys were replaced on purpose, "
                "check the new fingerprint on the host, remove the old entry (ssh-keygen -R "
                f"'{known_hosts_name(self.host, int(self.port))}' -f FILE) and record the new "
                "one") from None
        disable_nagle(self.transport)
        notice_dead_links(self.transport)
        return result


def verify_host_keys(client: paramiko.SSHClient, extra: Sequence[str], port: int = 22
                     ) -> list[str]:
    """Trust only recorded keys: the user's known_hosts (when present) and ``extra`` (which
    must exist). Returns the files read."""
    files = []
    user_file = os.path.expanduser(USER_KNOWN_HOSTS)
    if os.path.isfile(user_file):
        client.load_system_host_keys(user_file)
        files.append(user_file)
    for path in extra:
        if not path:
            continue
        try:
            client.load_system_host_keys(path)
        except OSError as exc:
            raise ConfigError(Problem(f"cannot read the known_hosts file {path}: "
                                      f"{exc.strerror or exc}", key="known_hosts",
                                      file="env/inventory.yaml",
                                      fix="create it (ssh-keyscan HOST >> FILE, after "
                                          "checking the fingerprints) or fix the path")) from None
        files.append(path)
    client.set_missing_host_key_policy(_RefuseUnknown(port, files))
    return files


KEEPALIVE_SECONDS = 5  # an SSH keepalive this often keeps data in flight on an idle link
DEAD_LINK_SECONDS = 15  # ... and the kernel drops the connection when it stays unanswered


def notice_dead_links(transport: Any) -> None:
    """A host whose link is cut mid-command is noticed within ~20 s: SSH keepalives keep a
    packet in flight, and TCP_USER_TIMEOUT makes the kernel give up on one unanswered that
    long (without them a read on a dead link waits for TCP's retries, ~15 minutes). A command
    that legitimately runs for minutes is unaffected: the host answers keepalives meanwhile."""
    transport.set_keepalive(KEEPALIVE_SECONDS)
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        user_timeout = getattr(socket, "TCP_USER_TIMEOUT", 18)  # Linux's value
        sock.setsockopt(socket.IPPROTO_TCP, user_timeout, DEAD_LINK_SECONDS * 1000)


def disable_nagle(transport: Any) -> None:
    """Set TCP_NODELAY on the transport's socket (not on a gateway's channel or a proxy
    command, which have no TCP socket of their own)."""
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
