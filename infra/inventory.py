"""Hosts for Fabric: ``env/inventory.yaml``, validated like the rest of the configuration.

Each host has an address, SSH user/port/key, its docker socket (rootless hosts differ), per-host
setting overrides (any key of env/defaults.env) and the stacks placed on it. A stack placed on no
host runs locally.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, Problem
from .settings import DOMAIN_RE, check_value
from .yamlfile import read_yaml

if TYPE_CHECKING:
    from .catalogue import Catalogue
    from .config import Config

INVENTORY_FILE = "inventory.yaml"
HOST_KEYS = ("address", "user", "port", "key", "docker_socket", "rootless", "stacks", "settings")


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    user: str = "root"
    port: int = 22
    key: str = ""
    docker_socket: str = ""
    rootless: bool = False
    stacks: tuple[str, ...] = ()
    settings: Mapping[str, str] = field(default_factory=dict)

    def overrides(self) -> dict[str, str]:
        """Setting overrides this host implies (explicit settings win)."""
        implied: dict[str, str] = {}
        if self.docker_socket:
            implied["DOCKER_SOCKET"] = self.docker_socket
        if self.rootless:
            implied["ROOTLESS"] = "true"
        return {**implied, **self.settings}

    def connect_kwargs(self) -> dict[str, Any]:
        return {"key_filename": os.path.expanduser(self.key)} if self.key else {}


@dataclass(frozen=True)
class Inventory:
    hosts: Mapping[str, Host]
    known_hosts: str = ""  # an OpenSSH known_hosts file for these hosts, besides the user's

    def placement(self, stacks: Iterable[str]) -> dict[str, str]:
        """stack -> host name ('' for local) for every stack of the catalogue."""
        where = {s: name for name, host in self.hosts.items() for s in host.stacks}
        return {s: where.get(s, "") for s in stacks}

    def find(self, name_or_address: str) -> Host | None:
        if name_or_address in self.hosts:
            return self.hosts[name_or_address]
        for host in self.hosts.values():
            if host.address == name_or_address:
                return host
        return None


def inventory_of(config: Config, catalogue: Catalogue) -> Inventory:
    """The project's inventory, validated against its stacks and settings."""
    return load_inventory(config.env_dir, catalogue.names(), list(config.settings))


def load_inventory(env_dir: Path, stacks: Iterable[str], known_settings: Iterable[str]
                   ) -> Inventory:
    """Read and validate env/inventory.yaml; an absent file is an empty inventory."""
    path = env_dir / INVENTORY_FILE
    if not path.is_file():
        return Inventory({})
    inventory = parse_inventory(read_yaml(path), str(path), list(stacks), list(known_settings))
    if inventory.known_hosts:  # relative to the inventory's folder
        known = Path(os.path.expanduser(inventory.known_hosts))
        inventory = Inventory(inventory.hosts, str(known if known.is_absolute()
                                                   else env_dir / known))
    return inventory


def parse_inventory(doc: Any, file: str, stacks: list[str], known_settings: list[str]
                    ) -> Inventory:
    problems: list[Problem] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("hosts", {}), dict):
        raise ConfigError(Problem("expected a mapping 'hosts:' of host name -> settings",
                                  file=file, fix="see the example at the top of the file"))
    extra = sorted(set(doc) - {"hosts", "known_hosts"})
    if extra:
        problems.append(Problem(f"unknown top-level key(s) {extra}", file=file,
                                fix="only 'hosts:' and 'known_hosts:' are allowed at the top "
                                    "level"))
    known_hosts = doc.get("known_hosts") or ""
    if not isinstance(known_hosts, str):
        problems.append(Problem("known_hosts is the path of an OpenSSH known_hosts file",
                                key="known_hosts", file=file,
                                fix="known_hosts: known_hosts (relative to this file's folder)"))
        known_hosts = ""
    hosts: dict[str, Host] = {}
    placed: dict[str, str] = {}
    for name, spec in (doc.get("hosts") or {}).items():
        where = f"hosts.{name}"
        if not isinstance(spec, dict):
            problems.append(Problem("expected a mapping", key=where, file=file,
                                    fix="give at least address:"))
            continue
        for key in spec:
            if key not in HOST_KEYS:
                close = difflib.get_close_matches(str(key), HOST_KEYS, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                problems.append(Problem(f"unknown key {key!r}", key=where, file=file,
                                        fix=f"{hint}allowed: {', '.join(HOST_KEYS)}"))
        if not DOMAIN_RE.match(str(name).lower()):
            problems.append(Problem(f"host name {name!r} is not a valid name", key=where,
                                    file=file, fix="use letters, digits, '-' and '.'"))
        address = str(spec.get("address", ""))
        if not address:
            problems.append(Problem("has no address", key=where, file=file,
                                    fix="add address: <IP or DNS name>"))
        elif check_value("X_ADDRESS", address) and not DOMAIN_RE.match(address.lower()):
            problems.append(Problem(f"address {address!r} is neither an IP nor a host name",
                                    key=where, file=file, fix="use e.g. 10.0.0.20 or box.lan"))
        port = str(spec.get("port", 22))
        if check_value("X_PORT", port):
            problems.append(Problem(f"port {port!r} is not a TCP port", key=where, file=file,
                                    fix="use a number from 1 to 65535"))
        socket = str(spec.get("docker_socket", ""))
        if socket and check_value("X_SOCKET", socket):
            problems.append(Problem(f"docker_socket {socket!r} is not an absolute path",
                                    key=where, file=file, fix="e.g. /run/user/1000/docker.sock"))
        host_stacks = [str(s) for s in spec.get("stacks") or []]
        for stack in host_stacks:
            if stack not in stacks:
                close = difflib.get_close_matches(stack, stacks, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                problems.append(Problem(f"unknown stack {stack!r}", key=where, file=file,
                                        fix=f"{hint}stacks: {', '.join(stacks)}"))
            elif stack in placed:
                problems.append(Problem(f"stack {stack!r} is also placed on {placed[stack]}",
                                        key=where, file=file,
                                        fix="place each stack on one host"))
            placed.setdefault(stack, str(name))
        raw_settings = spec.get("settings") or {}
        if not isinstance(raw_settings, dict):
            problems.append(Problem("settings is a mapping of KEY: value", key=where, file=file,
                                    fix="e.g. settings: {DATA_ROOT: /srv/data}"))
            raw_settings = {}
        for key, value in raw_settings.items():
            if value is None or isinstance(value, dict | list):
                problems.append(Problem(f"setting {key} has no single value", key=where,
                                        file=file, fix=f'write {key}: "value" (quote it)'))
        overrides = {str(k): (str(v).lower() if isinstance(v, bool) else str(v))
                     for k, v in raw_settings.items()
                     if v is not None and not isinstance(v, dict | list)}
        rootless = spec.get("rootless", False)
        if not isinstance(rootless, bool):  # "false" would read as true
            problems.append(Problem(f"rootless {rootless!r} is not true or false", key=where,
                                    file=file, fix="write rootless: true or rootless: false"))
            rootless = False
        for key, value in overrides.items():
            if key not in known_settings:
                close = difflib.get_close_matches(key, known_settings, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                problems.append(Problem(f"unknown setting {key!r}", key=where, file=file,
                                        fix=f"{hint}use keys from env/defaults.env"))
            elif value and (found := check_value(key, value)):
                problems.append(Problem(f"{key}: {found[0]}", key=where, file=file,
                                        fix=found[1]))
        hosts[str(name)] = Host(
            name=str(name), address=address, user=str(spec.get("user", "root")),
            port=int(port) if port.isdigit() else 22, key=str(spec.get("key", "")),
            docker_socket=socket, rootless=rootless,
            stacks=tuple(host_stacks), settings=overrides)
    if problems:
        raise ConfigError(problems)
    return Inventory(hosts, known_hosts)
