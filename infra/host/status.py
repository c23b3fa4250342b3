"""host.status: what the engine and the host say about rootless operation, as rows."""

from __future__ import annotations

import shlex
from typing import Any

from . import facts as f
from .daemon_json import ROOTFUL_PATH, ROOTLESS_PATH
from .remote import out, read_text, run


def gather_rows(c: Any, socket: str, user: str = "") -> list[tuple[str, str]]:
    host = f"-H unix://{shlex.quote(socket)}"
    version = run(c, f"docker {host} version --format '{{{{json .}}}}'")
    versions = f.parse_docker_version(version.stdout, version.stderr)
    info = f.parse_docker_info(out(c, f"docker {host} info --format '{{{{json .}}}}'") or "null")
    name = user or out(c, "id -un")
    entry = f.parse_passwd(out(c, f"getent passwd {shlex.quote(name)}"))
    uid = entry.uid if entry else -1
    rootless = bool(info and info.rootless)
    config_path = f"{entry.home}/{ROOTLESS_PATH}" if rootless and entry else ROOTFUL_PATH
    config_text = read_text(c, config_path)
    if config_text is None:
        config = "none (engine defaults)"
    else:
        try:
            import json

            config = ", ".join(sorted(json.loads(config_text))) or "{}"
        except ValueError:
            config = "INVALID JSON"
    subuid = f.ranges_of(f.parse_subids(read_text(c, "/etc/subuid") or ""), name, uid)
    controllers = out(c, f"cat /sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service/"
                         "cgroup.controllers 2>/dev/null")
    systemd = bool(out(c, "[ -d /run/systemd/system ] && echo y"))
    linger = bool(out(c, f"[ -e /var/lib/systemd/linger/{shlex.quote(name)} ] && echo y"))
    return [
        ("docker client", versions.client or "not found"),
        ("docker server", versions.server or (versions.error or "no answer")),
        ("rootless", ("yes" if rootless else "no") if info else "unknown (no engine)"),
        ("socket", socket),
        ("cgroup driver", f"{info.cgroup_driver} (v{info.cgroup_version})" if info else "-"),
        ("daemon.json", f"{config_path}: {config}"),
        ("registry mirrors", ", ".join(info.registry_mirrors) if info and
         info.registry_mirrors else "none"),
        ("logging driver", info.logging_driver if info else "-"),
        (f"subuid ranges ({name})", ", ".join(f"{r.start}+{r.count}" for r in subuid) or "none"),
        ("cgroup controllers delegated", controllers or
         ("none (no user service slice)" if systemd else "n/a (systemd not running)")),
        ("linger", ("enabled" if linger else "disabled") if systemd
         else "n/a (systemd not running)"),
    ]
