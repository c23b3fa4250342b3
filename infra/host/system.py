"""System-wide settings a rootless engine needs: low ports for Traefik, cgroup delegation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .actions import Plan, PlanBuilder, Run, Write
from .remote import out, read_text

PORTS_SYSCTL_FILE = "/etc/sysctl.d/50-unprivileged-ports.conf"
PORTS_SYSCTL_KEY = "net.ipv4.ip_unprivileged_port_start"
DELEGATE_FILE = "/etc/systemd/system/user@.service.d/delegate.conf"
DELEGATE_TEXT = "[Service]\nDelegate=cpu cpuset io memory pids\n"  # the seed's troubleshooting fix


@dataclass(frozen=True)
class PortFacts:
    current_start: int
    file_text: str | None


def gather_ports(c: Any) -> PortFacts:
    value = out(c, f"sysctl -n {PORTS_SYSCTL_KEY}")
    return PortFacts(int(value) if value.isdigit() else 1024, read_text(c, PORTS_SYSCTL_FILE))


def plan_unprivileged_ports(facts: PortFacts, lowest_port: int = 80) -> Plan:
    """Let unprivileged processes (rootlesskit's port driver) bind from ``lowest_port`` up."""
    plan = PlanBuilder("unprivileged low ports")
    wanted = f"{PORTS_SYSCTL_KEY} = {lowest_port}\n"
    if facts.file_text != wanted:
        plan.add(f"persist {PORTS_SYSCTL_KEY}={lowest_port} in {PORTS_SYSCTL_FILE}",
                 Write(PORTS_SYSCTL_FILE, wanted, sudo=True))
    if facts.current_start > lowest_port:
        plan.add(f"apply it now (currently {facts.current_start})",
                 Run(f"sysctl -w {PORTS_SYSCTL_KEY}={lowest_port}", True))
    return plan.build()


@dataclass(frozen=True)
class DelegationFacts:
    systemd: bool
    drop_in: str | None
    controllers: str  # the user's delegated controllers ("" when unknown)
    uid: int


def gather_delegation(c: Any, uid: int) -> DelegationFacts:
    path = f"/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service/cgroup.controllers"
    return DelegationFacts(
        systemd=bool(out(c, "[ -d /run/systemd/system ] && echo yes")),
        drop_in=read_text(c, DELEGATE_FILE),
        controllers=out(c, f"cat {path} 2>/dev/null"),
        uid=uid,
    )


def plan_cgroup_delegation(facts: DelegationFacts) -> Plan:
    plan = PlanBuilder("cgroup delegation")
    if facts.drop_in == DELEGATE_TEXT:
        return plan.build()
    steps: list[Run | Write] = [Write(DELEGATE_FILE, DELEGATE_TEXT, sudo=True)]
    if facts.systemd:
        steps.append(Run("systemctl daemon-reload", True))
        plan.note(f"the user's running service manager picks this up on its next start: "
                  f"`sudo systemctl restart user@{facts.uid}.service` (ends its sessions)")
    else:
        plan.note("systemd is not running: the drop-in is written for when it does; no "
                  "daemon-reload, and cgroups are not delegated now")
    plan.add("delegate cpu, cpuset, io, memory and pids to user services", *steps)
    return plan.build()
