"""Parsers for what host probes print: pure functions, text in, data out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SUBID_MINIMUM = 65536  # rootless needs a full 16-bit range (too few: "lchown ... invalid argument")


@dataclass(frozen=True)
class SubIdRange:
    owner: str  # user name or uid, as written in the file
    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count  # exclusive


def parse_subids(text: str) -> list[SubIdRange]:
    """/etc/subuid or /etc/subgid: ``owner:start:count`` lines (malformed lines are ignored)."""
    ranges = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            ranges.append(SubIdRange(parts[0], int(parts[1]), int(parts[2])))
    return ranges


def ranges_of(ranges: list[SubIdRange], user: str, uid: int) -> list[SubIdRange]:
    return [r for r in ranges if r.owner in (user, str(uid))]


def next_free_subid_start(ranges: list[SubIdRange], floor: int = 100000) -> int:
    """Where a new range can start without overlapping any existing one."""
    return max([floor, *(r.end for r in ranges)])


@dataclass(frozen=True)
class Passwd:
    user: str
    uid: int
    gid: int
    home: str
    shell: str


def parse_passwd(line: str) -> Passwd | None:
    """One ``getent passwd`` line."""
    parts = line.strip().split(":")
    if len(parts) < 7 or not parts[2].isdigit():
        return None
    return Passwd(parts[0], int(parts[2]), int(parts[3]), parts[5], parts[6])


def parse_os_release(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def parse_dpkg_installed(text: str) -> set[str]:
    """``dpkg-query -W -f '${Package} ${db:Status-Abbrev}\\n'``: packages installed (ii/iU...)."""
    installed = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].startswith("i"):
            installed.add(parts[0])
    return installed


def parse_meminfo_bytes(text: str) -> int:
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class DiskSpace:
    mount: str
    available_bytes: int


def parse_df(text: str) -> DiskSpace | None:
    """``df -Pk PATH``: the last line's available KiB and mount point."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    parts = lines[-1].split()
    if len(parts) < 6 or not parts[3].isdigit():
        return None
    return DiskSpace(parts[5], int(parts[3]) * 1024)


def parse_listening_ports(text: str) -> set[int]:
    """TCP ports in LISTEN state from /proc/net/tcp and /proc/net/tcp6 (hex ``addr:port``)."""
    ports = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[3] == "0A" and ":" in parts[1]:
            ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


@dataclass(frozen=True)
class DockerVersions:
    client: str = ""
    server: str = ""
    api: str = ""
    error: str = ""


def parse_docker_version(text: str, stderr: str = "") -> DockerVersions:
    """``docker version --format '{{json .}}'`` (prints the client part even without a server)."""
    try:
        data = json.loads(text.strip().splitlines()[-1]) if text.strip() else {}
    except (json.JSONDecodeError, IndexError):
        data = {}
    client = (data.get("Client") or {}).get("Version", "")
    server_part = data.get("Server") or {}
    return DockerVersions(client, server_part.get("Version", ""),
                          server_part.get("ApiVersion", ""),
                          "" if server_part else stderr.strip().splitlines()[-1:][0]
                          if stderr.strip() else "")


def major_version(version: str) -> int:
    head = version.lstrip("v").split(".", 1)[0]
    return int(head) if head.isdigit() else 0


@dataclass(frozen=True)
class DockerInfo:
    rootless: bool
    cgroup_driver: str
    cgroup_version: str
    docker_root: str
    logging_driver: str
    registry_mirrors: tuple[str, ...]
    insecure_registries: tuple[str, ...]
    warnings: tuple[str, ...]


def parse_docker_info(text: str) -> DockerInfo | None:
    """``docker info --format '{{json .}}'``."""
    try:
        data: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError:
        return None
    registry = data.get("RegistryConfig") or {}
    insecure = [c for c in registry.get("InsecureRegistryCIDRs") or []]
    insecure += [name for name, idx in (registry.get("IndexConfigs") or {}).items()
                 if not idx.get("Secure", True)]
    return DockerInfo(
        rootless=any("rootless" in option for option in data.get("SecurityOptions") or []),
        cgroup_driver=data.get("CgroupDriver", ""),
        cgroup_version=str(data.get("CgroupVersion", "")),
        docker_root=data.get("DockerRootDir", ""),
        logging_driver=data.get("LoggingDriver", ""),
        registry_mirrors=tuple(registry.get("Mirrors") or ()),
        insecure_registries=tuple(insecure),
        warnings=tuple(data.get("Warnings") or ()),
    )
