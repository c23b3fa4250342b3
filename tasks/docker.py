"""Docker daemon configuration (seed: Rootless Docker Setup 5)."""

from __future__ import annotations

from invoke import Collection, Exit

from ._common import infra_task, load
from .host import DRY_HELP, USER_HELP, apply, rootless_user, say


@infra_task(help={"dry": DRY_HELP + " (prints the diff)",
                  "path": "daemon.json to manage (default: ~USER/.config/docker/daemon.json "
                          "when ROOTLESS=true, else /etc/docker/daemon.json)",
                  "restart_command": "how to restart the daemon after a change (default: "
                                     "DOCKER_RESTART_COMMAND, else systemctl [--user] restart "
                                     "docker where systemd runs)",
                  "user": USER_HELP})
def daemon_json(c, dry=False, path="", restart_command="", user="", profile=""):
    """Merge the seed's settings into daemon.json (backup, atomic write, restart on change)."""
    import shlex
    import time

    from infra.host import daemon_json as dj
    from infra.host.actions import Run
    from infra.host.facts import parse_passwd
    from infra.host.remote import as_user, is_root, out

    config = load(profile, write=False).config
    if path and (not path.startswith("/") or not path.isprintable()):
        raise Exit(f"error: --path {path!r} is not an absolute path\n    fix: give the "
                   "daemon.json's full path, e.g. /etc/docker/daemon.json", code=2)
    rootless_mode = config.flag("ROOTLESS")
    current = out(c, "id -un")
    root = is_root(c)
    name = rootless_user(c, user, config) if rootless_mode else current
    entry = parse_passwd(out(c, f"getent passwd {shlex.quote(name)}"))
    home = entry.home if entry else ""
    systemd = bool(out(c, "[ -d /run/systemd/system ] && echo y"))
    target = path or (f"{home}/{dj.ROOTLESS_PATH}" if rootless_mode else dj.ROOTFUL_PATH)
    facts = dj.read_facts(c, target, rootless_mode, entry.uid if entry else None, systemd)

    restart: list[Run] | None = None
    command = restart_command or config.get("DOCKER_RESTART_COMMAND")
    if command:
        restart = [Run(command)]
    elif systemd and rootless_mode and entry:
        restart = [Run(as_user(f"XDG_RUNTIME_DIR=/run/user/{entry.uid} systemctl --user "
                               "restart docker", name, current, root))]
    elif systemd:
        restart = [Run("systemctl restart docker", True)]

    user_owned = rootless_mode and not path and entry is not None and name != current
    owner = f"{entry.uid}:{entry.gid}" if user_owned and entry else ""
    prepare = ([Run(as_user(f"mkdir -p $HOME/{dj.ROOTLESS_PATH.rsplit('/', 1)[0]}", name,
                            current, root))] if rootless_mode and not path else None)
    desired = dj.desired_settings(config.public, home, rootless=rootless_mode)
    plan, diff = dj.plan_daemon_json(facts, desired, time.strftime("%Y%m%d-%H%M%S"), restart,
                                     sudo=not rootless_mode or (not root and name != current),
                                     owner=owner, prepare=prepare)
    if diff:
        say(diff.rstrip("\n"))
    apply(c, plan, dry)


ns = Collection("docker", daemon_json)
