"""Which hosts a deploy goes to, and how to reach each one."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, Problem
from ..inventory import Host, Inventory


@dataclass(frozen=True)
class Target:
    """One host to act on: an inventory entry, or a plain SSH target given on the command line."""

    name: str
    host: Host
    in_inventory: bool = True
    connect_kwargs: dict[str, Any] = field(default_factory=dict)
    known_hosts: str = ""  # the inventory's known_hosts file, besides the user's

    @property
    def stacks(self) -> tuple[str, ...]:
        return self.host.stacks

    def connection_kwargs(self, timeout: int = 10) -> dict[str, Any]:
        """Keyword arguments for ``fabric.Connection`` (host, user, port, key, env)."""
        connect: dict[str, Any] = {**self.host.connect_kwargs(), **self.connect_kwargs}
        return {"host": self.host.address, "user": self.host.user, "port": self.host.port,
                "connect_timeout": timeout, "connect_kwargs": connect,
                "known_hosts": [self.known_hosts] if self.known_hosts else []}

    def run_env(self) -> dict[str, str]:
        """Environment for every remote command: the host's engine socket (rootless differs)."""
        socket = self.host.docker_socket
        return {"DOCKER_HOST": f"unix://{socket}"} if socket else {}


def split_host_string(value: str) -> tuple[str, str, int | None]:
    """``user@host:port`` (fab -H syntax) -> (user, host, port)."""
    user, _, rest = value.rpartition("@")
    host, port = rest, None
    if rest.count(":") == 1:
        host, _, number = rest.partition(":")
        port = int(number) if number.isdigit() else None
    return user, host, port


def resolve_targets(inventory: Inventory, names: Sequence[str], every: bool = False
                    ) -> list[Target]:
    """Hosts named by inventory name or address (``user@`` and ``:port`` allowed), or all.

    An unknown name is a plain SSH target with no stacks; deploying to it is an error with a fix.
    """
    if every:
        if not inventory.hosts:
            raise ConfigError(Problem("--all: env/inventory.yaml lists no hosts",
                                      file="env/inventory.yaml",
                                      fix="copy env/inventory.example.yaml and add hosts"))
        return [Target(h.name, h, known_hosts=inventory.known_hosts)
                for h in inventory.hosts.values()]
    if not names:
        raise ConfigError(Problem("no host given", key="--host",
                                  fix="name hosts with --host NAME (repeatable), -H a,b with "
                                      "fab, or --all for every inventory host"))
    targets: list[Target] = []
    for raw in dict.fromkeys(names):
        user, address, port = split_host_string(raw)
        found = inventory.find(address)
        if found is not None:
            host = Host(found.name, found.address, user or found.user, port or found.port,
                        found.key, found.docker_socket, found.rootless, found.stacks,
                        found.settings)
            targets.append(Target(found.name, host, known_hosts=inventory.known_hosts))
        else:
            targets.append(Target(raw, Host(raw, address, user or _default_user(), port or 22),
                                  in_inventory=False, known_hosts=inventory.known_hosts))
    return targets


def _default_user() -> str:
    return os.environ.get("USER") or "root"


def stacks_per_target(targets: Sequence[Target], requested: Sequence[str],
                      known: Sequence[str]) -> dict[str, list[str]]:
    """Target name -> stacks to deploy there (all placed ones, or those of ``--stack``).

    A host with no stacks placed, or a ``--stack`` placed on none of the hosts, is an error
    with a fix; with ``--stack``, hosts that do not hold it are left out.
    """
    problems = []
    chosen: dict[str, list[str]] = {}
    for target in targets:
        if not target.stacks:
            where = ("is not in env/inventory.yaml" if not target.in_inventory
                     else "has no stacks placed on it")
            problems.append(Problem(f"host {target.name} {where}: nothing to deploy",
                                    key=f"hosts.{target.name}", file="env/inventory.yaml",
                                    fix=f"add it with `stacks: [...]` (stacks: "
                                        f"{', '.join(known)})"))
            continue
        wanted = [s for s in target.stacks if not requested or s in requested]
        if wanted:
            chosen[target.name] = wanted
    for stack in requested:
        if stack not in known:
            problems.append(Problem(f"unknown stack {stack!r}", key="--stack",
                                    fix=f"choose from {', '.join(known)}"))
        elif not any(stack in t.stacks for t in targets):
            problems.append(Problem(f"--stack {stack} is placed on none of "
                                    f"{', '.join(t.name for t in targets)}",
                                    key="--stack", file="env/inventory.yaml",
                                    fix="deploy to the host it is placed on (invoke plan "
                                        "shows the placement), or place it there"))
    if problems:
        raise ConfigError(problems)
    return chosen
