"""Host preparation (seed: Rootless Docker Setup 1-4, Storage Structure, cgroup delegation).

Each task reads the host's state first, prints what it will change, changes only that, and says
"nothing to do" on a second run. ``--dry`` shows the plan without changing anything. The same
bodies run over SSH: ``fab -H user@host host.storage``.
"""

from __future__ import annotations

from typing import Any

from invoke import Collection

from ._common import console, infra_task, load

DRY_HELP = "show what would change, change nothing"
USER_HELP = "the rootless user (default: ROOTLESS_USER, else the user running the task)"


def say(text: str) -> None:
    console().print(text, markup=False, highlight=False)


def rootless_user(c: Any, user: str, config: Any) -> str:
    from infra.host.remote import out

    return user or config.get("ROOTLESS_USER") or out(c, "id -un")


def apply(c: Any, plan: Any, dry: bool) -> bool:
    from infra.host.remote import apply_plan

    return apply_plan(c, plan, dry, say)


@infra_task(help={"dry": DRY_HELP})
def remove_rootful(c, dry=False):
    """Stop and disable the rootful Docker daemon and remove the distribution packages."""
    from infra.host import packages

    apply(c, packages.plan_remove_rootful(packages.gather(c)), dry)


@infra_task(help={"source": "docker: Docker's apt repository (docker-ce ...); debian: the "
                            "distribution's docker.io rootlesskit uidmap slirp4netns",
                  "dry": DRY_HELP})
def install_docker(c, source="docker", dry=False, profile=""):
    """Install Docker: Docker's apt repository and packages, or Debian's with --source debian."""
    from infra.host import packages

    rootless = load(profile, write=False).config.flag("ROOTLESS")
    apply(c, packages.plan_install_docker(packages.gather(c), source, rootless), dry)


@infra_task(help={"user": USER_HELP, "dry": DRY_HELP})
def rootless(c, user="", dry=False, profile=""):
    """Rootless Docker for a user: prerequisites, setup tool, profile lines, daemon, linger."""
    from infra.host import rootless as rl

    config = load(profile, write=False).config
    facts = rl.gather(c, rootless_user(c, user, config))
    apply(c, rl.plan_rootless(facts), dry)
    if not dry:
        say(f"DOCKER_HOST=unix://{facts.socket} (set DOCKER_SOCKET={facts.socket} and "
            "ROOTLESS=true in your profile)")


@infra_task(help={"port": "lowest port unprivileged programs may bind (default: the lower of "
                          "TRAEFIK_HTTP_PORT and TRAEFIK_HTTPS_PORT)", "dry": DRY_HELP})
def unprivileged_ports(c, port=0, dry=False, profile=""):
    """Let a rootless Traefik bind 80/443 (sysctl net.ipv4.ip_unprivileged_port_start)."""
    from infra.host import system

    config = load(profile, write=False).config
    lowest = int(port) or min(int(config["TRAEFIK_HTTP_PORT"]), int(config["TRAEFIK_HTTPS_PORT"]))
    apply(c, system.plan_unprivileged_ports(system.gather_ports(c), lowest), dry)


@infra_task(help={"user": USER_HELP, "dry": DRY_HELP})
def cgroup_delegation(c, user="", dry=False, profile=""):
    """Delegate cpu, cpuset, io, memory and pids to user services (systemd drop-in)."""
    from infra.host import system
    from infra.host.facts import parse_passwd
    from infra.host.remote import out

    config = load(profile, write=False).config
    entry = parse_passwd(out(c, f"getent passwd {rootless_user(c, user, config)}"))
    facts = system.gather_delegation(c, entry.uid if entry else 0)
    apply(c, system.plan_cgroup_delegation(facts), dry)


@infra_task(help={"stack": "only this stack's directories (repeatable); default: all",
                  "user": USER_HELP + "; owns the directories when ROOTLESS=true",
                  "dry": DRY_HELP}, iterable=["stack"])
def storage(c, stack=None, user="", dry=False, profile=""):
    """Create the data directories under DATA_ROOT (from the catalogue), with owners."""
    from infra.host import storage as st
    from infra.host.facts import parse_passwd
    from infra.host.remote import out

    project = load(profile, write=not dry)
    config = project.config
    data_root = str(config.path("DATA_ROOT"))
    dirs = st.data_dirs(project.catalogue, data_root, stack or None)
    rootless_mode = config.flag("ROOTLESS")
    name = rootless_user(c, user, config)
    entry = parse_passwd(out(c, f"getent passwd {name}"))
    ids = (entry.uid, entry.gid) if entry else (0, 0)
    existing = st.gather(c, [data_root, *(d.path for d in dirs)])
    plan = st.plan_storage(dirs, data_root, existing, rootless_mode, ids,
                           run_as_user=name == out(c, "id -un"))
    apply(c, plan, dry)


@infra_task(help={"source": "package source for host.install-docker: docker or debian",
                  "user": USER_HELP, "dry": DRY_HELP})
def prepare(c, source="docker", user="", dry=False, profile=""):
    """Run the host steps in order (rootless ones only when ROOTLESS=true).

    remove-rootful, install-docker, rootless, unprivileged-ports, cgroup-delegation, storage.
    """
    from infra.interrupt import track

    config = load(profile, write=False).config
    if dry:
        say("dry run: each step is planned against the host as it is now, so later steps may "
            "list work an earlier step would already do")
    rootless_on = config.flag("ROOTLESS")
    plan = [("remove-rootful", lambda: remove_rootful(c, dry=dry), rootless_on),
            ("install-docker", lambda: install_docker(c, source=source, dry=dry,
                                                      profile=profile), True),
            ("rootless", lambda: rootless(c, user=user, dry=dry, profile=profile), rootless_on),
            ("unprivileged-ports", lambda: unprivileged_ports(c, dry=dry, profile=profile),
             rootless_on),
            ("cgroup-delegation", lambda: cgroup_delegation(c, user=user, dry=dry,
                                                            profile=profile), rootless_on),
            ("storage", lambda: storage(c, user=user, dry=dry, profile=profile), True)]
    chosen = [(name, run) for name, run, wanted in plan if wanted]
    steps = track([name for name, _ in chosen])
    for name, run in chosen:
        steps.begin(name)
        run()
    steps.finish(name)


@infra_task(help={"user": USER_HELP, "socket": "engine socket (default: DOCKER_SOCKET)"})
def status(c, user="", socket="", profile=""):
    """Docker versions, rootless or not, socket, daemon.json, subuids, cgroups, linger."""
    from rich.markup import escape
    from rich.table import Table

    from infra.host.status import gather_rows

    config = load(profile, write=False).config
    table = Table(title="host status")
    table.add_column("item")
    table.add_column("value")
    for item, value in gather_rows(c, socket or config["DOCKER_SOCKET"],
                                   user or config.get("ROOTLESS_USER")):
        table.add_row(escape(item), escape(value))
    console().print(table)


ns = Collection("host", remove_rootful, install_docker, rootless, unprivileged_ports,
                cgroup_delegation, storage, prepare, status)
