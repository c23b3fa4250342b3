"""Package-level steps: remove the rootful engine, install Docker (Docker's repository or Debian's).

These need package archives this test machine cannot reach (Docker's), so they are tested as
plans: facts in, commands out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import facts as f
from .actions import Plan, PlanBuilder, Run, Write
from .remote import out, read_text, run

# The seed's step 1 ("apt remove docker docker-engine docker.io containerd runc").
ROOTFUL_PACKAGES = ("docker", "docker-engine", "docker.io", "containerd", "runc")
# The seed's step 2, plus the rootless extras (the setup tool) that its step 3 relies on.
DOCKER_CE_PACKAGES = ("docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin",
                      "docker-compose-plugin", "docker-ce-rootless-extras")
DEBIAN_PACKAGES = ("docker.io", "rootlesskit", "uidmap", "slirp4netns")
KEYRING = "/usr/share/keyrings/docker-archive-keyring.gpg"
SOURCES_LIST = "/etc/apt/sources.list.d/docker.list"
SOURCES = ("docker", "debian")


@dataclass(frozen=True)
class PackageFacts:
    installed: frozenset[str] = frozenset()
    systemd: bool = False
    docker_unit_active: bool = False
    docker_unit_enabled: bool = False
    dockerd_pids: tuple[int, ...] = ()
    os_release: dict[str, str] = field(default_factory=dict)
    architecture: str = "amd64"
    keyring_present: bool = False
    sources_list: str | None = None


def gather(c: Any) -> PackageFacts:
    names = " ".join(sorted({*ROOTFUL_PACKAGES, *DOCKER_CE_PACKAGES, *DEBIAN_PACKAGES}))
    query = run(c, f"dpkg-query -W -f '${{Package}} ${{db:Status-Abbrev}}\\n' {names}")
    systemd = bool(out(c, "[ -d /run/systemd/system ] && echo yes"))
    return PackageFacts(
        installed=frozenset(f.parse_dpkg_installed(query.stdout)),
        systemd=systemd,
        docker_unit_active=systemd and out(c, "systemctl is-active docker") == "active",
        docker_unit_enabled=systemd and out(c, "systemctl is-enabled docker") == "enabled",
        dockerd_pids=tuple(int(p) for p in out(c, "pidof dockerd").split() if p.isdigit()),
        os_release=f.parse_os_release(read_text(c, "/etc/os-release") or ""),
        architecture=out(c, "dpkg --print-architecture") or "amd64",
        keyring_present=bool(out(c, f"[ -s {KEYRING} ] && echo yes")),
        sources_list=read_text(c, SOURCES_LIST),
    )


def plan_remove_rootful(facts: PackageFacts) -> Plan:
    plan = PlanBuilder("remove rootful docker")
    if facts.systemd:
        if facts.docker_unit_active:
            plan.add("stop the rootful daemon", Run("systemctl stop docker docker.socket", True))
        if facts.docker_unit_enabled:
            plan.add("disable the rootful daemon at boot",
                     Run("systemctl disable docker docker.socket", True))
    elif facts.dockerd_pids:
        pids = " ".join(str(p) for p in facts.dockerd_pids)
        plan.note("systemd is not running: the rootful dockerd is stopped by its process id "
                  "and nothing else would restart it")
        plan.add(f"stop the rootful dockerd (pid {pids})", Run(f"kill -TERM {pids}", True))
    present = [p for p in ROOTFUL_PACKAGES if p in facts.installed]
    if present:
        plan.add(f"remove the distribution packages {', '.join(present)}",
                 Run(f"DEBIAN_FRONTEND=noninteractive apt-get remove -y {' '.join(present)}",
                     True))
    return plan.build()


def docker_repository_line(facts: PackageFacts) -> str:
    distro = facts.os_release.get("ID", "debian")
    codename = facts.os_release.get("VERSION_CODENAME") or facts.os_release.get(
        "UBUNTU_CODENAME", "")
    return (f"deb [arch={facts.architecture} signed-by={KEYRING}] "
            f"https://download.docker.com/linux/{distro} {codename} stable\n")


def plan_install_docker(facts: PackageFacts, source: str = "docker",
                        rootless: bool = False) -> Plan:
    from ..errors import ConfigError, Problem

    if source not in SOURCES:
        raise ConfigError(Problem(f"unknown package source {source!r}", key="--source",
                                  fix="use --source docker (Docker's repository) or "
                                      "--source debian (docker.io from the distribution)"))
    plan = PlanBuilder(f"install docker ({source} packages)")
    apt_install = "DEBIAN_FRONTEND=noninteractive apt-get install -y"
    if source == "debian":
        missing = [p for p in DEBIAN_PACKAGES if p not in facts.installed]
        if missing:
            plan.add(f"install {', '.join(missing)} from the distribution",
                     Run("apt-get update", True), Run(f"{apt_install} {' '.join(missing)}", True))
        return plan.build()
    distro = facts.os_release.get("ID", "")
    if distro not in ("debian", "ubuntu"):
        raise ConfigError(Problem(f"Docker's apt repository has no packages for {distro!r}",
                                  key="--source", fix="use --source debian, or install Docker "
                                                      "with the distribution's own procedure"))
    line = docker_repository_line(facts)
    if not facts.keyring_present:
        plan.add("add Docker's signing key",
                 Run(f"{apt_install} ca-certificates curl gnupg", True),
                 Run(f"curl -fsSL https://download.docker.com/linux/{distro}/gpg | "
                     f"gpg --dearmor --yes -o {KEYRING}", True))
    if facts.sources_list != line:
        plan.add("add Docker's apt repository", Write(SOURCES_LIST, line, 0o644, sudo=True))
    missing = [p for p in DOCKER_CE_PACKAGES if p not in facts.installed]
    if missing:
        plan.add(f"install {', '.join(missing)}",
                 Run("apt-get update", True), Run(f"{apt_install} {' '.join(missing)}", True))
        if rootless and facts.systemd:  # docker-ce's postinst starts the rootful daemon again
            plan.add("keep the rootful daemon off (ROOTLESS=true)",
                     Run("systemctl disable --now docker.service docker.socket", True))
    return plan.build()
