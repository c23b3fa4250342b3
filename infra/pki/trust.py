"""Installing the root CA where docker hosts trust it (certs.d)."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrustTarget:
    path: str  # .../certs.d/<host:port>/ca.crt on the target host
    privileged: bool  # needs root (the rootful /etc/docker)


@dataclass(frozen=True)
class TrustResult:
    target: TrustTarget
    changed: bool


def trust_targets(addresses: Iterable[str], rootless: bool, home: str,
                  certs_d: str = "") -> list[TrustTarget]:
    """Where docker looks for a registry's CA: one ca.crt per registry host:port."""
    if certs_d:
        base, privileged = certs_d.rstrip("/"), False
    elif rootless:
        base, privileged = f"{home.rstrip('/')}/.config/docker/certs.d", False
    else:
        base, privileged = "/etc/docker/certs.d", True
    return [TrustTarget(f"{base}/{address}/ca.crt", privileged) for address in addresses]


def apply_trust(c: Any, targets: Sequence[TrustTarget], pem: str,
                dry: bool = False) -> list[TrustResult]:
    """Install the root certificate at each target through ``c`` (works over Fabric too)."""
    from ..host.remote import put_text

    as_root = c.run("id -u", hide=True).stdout.strip() == "0"
    results = []
    for target in targets:
        run = c.sudo if target.privileged and not as_root else c.run
        path = shlex.quote(target.path)
        current = run(f"cat {path}", hide=True, warn=True)
        changed = not (current.ok and current.stdout == pem)
        if changed and not dry:  # the one atomic write every host step uses
            put_text(c, target.path, pem, 0o644, sudo=target.privileged and not as_root)
        results.append(TrustResult(target, changed))
    return results

