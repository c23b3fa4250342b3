"""Preflight (seed P01, P02, P33): can this host run the stacks? Facts in, checks out."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..catalogue import Catalogue
from . import facts as f
from .remote import out, run

MIN_MEMORY = 8 * 10**9  # the seed's "8GB RAM"
MEMORY_SLACK = 0.9  # the kernel keeps some: an 8 GB machine reports ~7.7 GB in MemTotal
MIN_DISK = 50 * 10**9
MIN_DOCKER_MAJOR = 24
OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class DoctorFacts:
    kernel: str = "Linux"
    memory_bytes: int = 0
    disk: f.DiskSpace | None = None
    data_root: str = ""
    versions: f.DockerVersions = field(default_factory=f.DockerVersions)
    compose: str = ""
    listening: frozenset[int] = frozenset()
    container_ports: frozenset[int] = frozenset()
    rootless_expected: bool = False
    socket: str = "/var/run/docker.sock"
    socket_exists: bool = False
    info: f.DockerInfo | None = None
    xdg_runtime_dir: str = ""
    xdg_runtime_dir_exists: bool = False
    extra: dict[str, str] = field(default_factory=dict)


def required_ports(catalogue: Catalogue, values: Mapping[str, str]) -> dict[int, str]:
    """Published port -> who publishes it, from the catalogue; without stacks, every *_PORT."""
    ports: dict[int, str] = {}
    for stack in catalogue.stacks.values():
        for service in stack.services:
            for port in service.ports:
                ports.setdefault(port.published, f"{stack.name}.{service.name}")
    if not ports:
        for key, value in values.items():
            if key.endswith("_PORT") and value.isdigit():
                ports.setdefault(int(value), key)
    return dict(sorted(ports.items()))


def parse_container_ports(text: str) -> set[int]:
    """``docker ps --format '{{.Ports}}'``: host ports in '0.0.0.0:80->80/tcp, :::80->80/tcp'."""
    return {int(m) for m in re.findall(r":(\d+)->", text)}


def disk_probe(path: str) -> str:
    """df on ``path`` or its nearest existing parent (DATA_ROOT may not exist yet)."""
    q = shlex.quote(path)
    return f"d={q}; while [ ! -e \"$d\" ]; do d=$(dirname \"$d\"); done; df -Pk \"$d\""


def gather(c: Any, data_root: str, socket: str, rootless: bool) -> DoctorFacts:
    host = f"-H unix://{shlex.quote(socket)}"
    version = run(c, f"docker {host} version --format '{{{{json .}}}}'")
    info = out(c, f"docker {host} info --format '{{{{json .}}}}'")
    xdg = out(c, "printf %s \"$XDG_RUNTIME_DIR\"")
    return DoctorFacts(
        kernel=out(c, "uname -s"),
        memory_bytes=f.parse_meminfo_bytes(out(c, "cat /proc/meminfo")),
        disk=f.parse_df(out(c, disk_probe(data_root))),
        data_root=data_root,
        versions=f.parse_docker_version(version.stdout, version.stderr)
        if out(c, "command -v docker") else f.DockerVersions(error="docker: not found"),
        compose=out(c, f"docker {host} compose version --short"),
        listening=frozenset(f.parse_listening_ports(
            out(c, "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null"))),
        container_ports=frozenset(parse_container_ports(
            out(c, f"docker {host} ps --format '{{{{.Ports}}}}'"))),
        rootless_expected=rootless,
        socket=socket,
        socket_exists=bool(out(c, f"[ -S {shlex.quote(socket)} ] && echo y")),
        info=f.parse_docker_info(info) if info else None,
        xdg_runtime_dir=xdg,
        xdg_runtime_dir_exists=bool(xdg) and bool(out(c, f"[ -d {shlex.quote(xdg)} ] && echo y")),
    )


def _gb(size: int) -> str:
    return f"{size / 10**9:.1f} GB"


def evaluate(facts: DoctorFacts, ports: Mapping[int, str]) -> list[Check]:
    checks = [Check("operating system", OK if facts.kernel == "Linux" else FAIL,
                    facts.kernel or "unknown", "" if facts.kernel == "Linux" else
                    "the stacks need a Linux host (Docker Engine with cgroups)")]
    enough = facts.memory_bytes >= MIN_MEMORY * MEMORY_SLACK
    checks.append(Check("memory", OK if enough else WARN, f"{_gb(facts.memory_bytes)} "
                        f"(minimum {_gb(MIN_MEMORY)})",
                        "" if enough else "add memory, or bring up fewer stacks "
                                          "(monitoring and media are the largest)"))
    if facts.disk is None:
        checks.append(Check("disk space", WARN, f"could not measure under {facts.data_root}",
                            "check DATA_ROOT"))
    else:
        room = facts.disk.available_bytes >= MIN_DISK
        checks.append(Check("disk space", OK if room else WARN,
                            f"{_gb(facts.disk.available_bytes)} free on {facts.disk.mount} "
                            f"(DATA_ROOT {facts.data_root}; minimum {_gb(MIN_DISK)})",
                            "" if room else "free space, or set DATA_ROOT to a larger filesystem"))
    v = facts.versions
    install_fix = ("install Docker Engine >= 24 from Docker's repository: "
                   "invoke host.install-docker")
    if not v.client:
        checks.append(Check("docker client", FAIL, v.error or "not found", install_fix))
    else:
        new = f.major_version(v.client) >= MIN_DOCKER_MAJOR
        checks.append(Check("docker client", OK if new else WARN, v.client,
                            "" if new else install_fix))
    if not v.server:
        checks.append(Check("docker engine", FAIL, v.error or f"no answer on {facts.socket}",
                            "start the daemon (rootless: invoke host.rootless) and check "
                            "DOCKER_SOCKET"))
    else:
        new = f.major_version(v.server) >= MIN_DOCKER_MAJOR
        checks.append(Check("docker engine", OK if new else WARN,
                            f"{v.server} (API {v.api})" + ("" if new else
                                                           f", older than {MIN_DOCKER_MAJOR}.0"),
                            "" if new else install_fix))
    v2 = f.major_version(facts.compose) >= 2
    checks.append(Check("docker compose", OK if v2 else FAIL, facts.compose or "not found",
                        "" if v2 else "install the compose v2 plugin (docker-compose-plugin, "
                                      "or ~/.docker/cli-plugins/docker-compose)"))
    for port, owner in ports.items():
        if port not in facts.listening:
            checks.append(Check(f"port {port}", OK, f"free ({owner})"))
        elif port in facts.container_ports:
            checks.append(Check(f"port {port}", WARN, f"published by a running container "
                                f"(needed by {owner}; already up?)",
                                "`invoke ps` shows which; stop it if it is not ours"))
        else:
            checks.append(Check(f"port {port}", FAIL, f"in use by another program "
                                f"(needed by {owner})",
                                f"free it (`ss -ltnp 'sport = :{port}'` shows who) or change "
                                f"the port setting"))
    if facts.rootless_expected:
        checks += _rootless_checks(facts)
    return checks


def _rootless_checks(facts: DoctorFacts) -> list[Check]:
    checks = [Check("rootless socket", OK if facts.socket_exists else FAIL, facts.socket,
                    "" if facts.socket_exists else
                    "start the rootless daemon: invoke host.rootless (DOCKER_SOCKET must be "
                    "$XDG_RUNTIME_DIR/docker.sock)")]
    rootless = bool(facts.info and facts.info.rootless)
    checks.append(Check("rootless daemon", OK if rootless else FAIL,
                        "running rootless" if rootless else
                        ("the daemon on this socket is not rootless" if facts.info
                         else "no daemon answers"),
                        "" if rootless else "ROOTLESS=true: invoke host.rootless, and point "
                                            "DOCKER_SOCKET at /run/user/<uid>/docker.sock"))
    if facts.info:
        for warning in facts.info.warnings:
            if "cpuset" in warning or "io.weight" in warning or "cpu" in warning.lower():
                checks.append(Check("resource controls", WARN, warning,
                                    "invoke host.cgroup-delegation"))
    xdg_ok = facts.xdg_runtime_dir_exists
    checks.append(Check("XDG_RUNTIME_DIR", OK if xdg_ok else WARN,
                        facts.xdg_runtime_dir or "not set",
                        "" if xdg_ok else "log in through ssh or `machinectl shell` (not su/sudo), "
                                          "or export XDG_RUNTIME_DIR=/run/user/$(id -u)"))
    return checks


def hard_failures(checks: list[Check]) -> list[Check]:
    return [check for check in checks if check.status == FAIL]
