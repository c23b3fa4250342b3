"""daemon.json: merge the seed's settings into whatever the file already holds.

Unrelated keys survive, lists are extended rather than replaced, the old file is backed up with
a timestamp, and nothing is written when the existing file is not valid JSON or when the result
would carry a ``hosts`` key that conflicts with systemd's ``dockerd -H fd://``.
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, Problem
from .actions import Plan, PlanBuilder, Run, Write

ROOTFUL_PATH = "/etc/docker/daemon.json"
ROOTLESS_PATH = ".config/docker/daemon.json"  # under the rootless user's home


def desired_settings(values: Mapping[str, str], home: str = "", rootless: bool = False
                     ) -> dict[str, Any]:
    """The seed's daemon.json (step 5) from configuration values, with the CIS section 2 keys
    (no-new-privileges; live-restore and userland-proxy where the engine is rootful)."""
    settings: dict[str, Any] = {}
    data_root = values.get("DOCKER_DATA_ROOT", "")
    if data_root:
        if data_root.startswith("~/") and home:
            data_root = f"{home}/{data_root[2:]}"
        if not data_root.startswith("/"):
            raise ConfigError(Problem(f"data-root {data_root!r} is not absolute",
                                      key="DOCKER_DATA_ROOT",
                                      fix="use an absolute path or ~/..., e.g. "
                                          "~/.config/containers/storage"))
        settings["data-root"] = data_root
    settings["builder"] = {"gc": {"defaultKeepStorage":
                                  values.get("DOCKER_BUILDER_KEEP_STORAGE", "20GB"),
                                  "enabled": True}}
    settings["experimental"] = False
    settings["log-driver"] = "json-file"
    settings["log-opts"] = {
        "max-size": values.get("DOCKER_LOG_MAX_SIZE", "10m"),
        "max-file": values.get("DOCKER_LOG_MAX_FILES", "3"),
        "compress": "true" if _flag(values, "DOCKER_LOG_COMPRESS_ENABLED", True) else "false",
    }
    settings["features"] = {"buildkit": True}
    settings["no-new-privileges"] = _flag(values, "DOCKER_NO_NEW_PRIVILEGES_ENABLED", True)
    if not rootless:
        # A rootless engine's containers live in rootlesskit's namespaces and stop with it, so
        # live-restore would promise nothing; its ports reach the host through the proxy.
        settings["live-restore"] = _flag(values, "DOCKER_LIVE_RESTORE_ENABLED", True)
        settings["userland-proxy"] = _flag(values, "DOCKER_USERLAND_PROXY_ENABLED", False)
    mirror = values.get("DOCKER_REGISTRY_MIRROR_URL", "")
    if mirror:
        parts = urlsplit(mirror)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(Problem(f"{mirror!r} is not an http(s) URL",
                                      key="DOCKER_REGISTRY_MIRROR_URL",
                                      fix="e.g. http://localhost:5000 or https://registry.example.org"))
        settings["registry-mirrors"] = [mirror.rstrip("/")]
        if parts.scheme == "http":  # a registry without TLS; one with our CA's cert needs none
            settings["insecure-registries"] = [parts.netloc]
    return settings


def _flag(values: Mapping[str, str], key: str, default: bool) -> bool:
    from ..settings import parse_bool

    value = values.get(key, "")
    return parse_bool(value) if value else default


def parse_existing(text: str | None, path: str) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(Problem(f"not valid JSON: {exc.msg} (column {exc.colno})", file=path,
                                  line=exc.lineno,
                                  fix="repair the file (or move it aside) and run again; it was "
                                      "left untouched")) from exc
    if not isinstance(document, dict):
        raise ConfigError(Problem("is not a JSON object", file=path,
                                  fix="daemon.json must hold {...}; it was left untouched"))
    return document


def merge(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """``desired`` over ``existing``: objects merged key by key, lists extended, scalars set."""
    merged = dict(existing)
    for key, value in desired.items():
        old = merged.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            merged[key] = merge(old, value)
        elif isinstance(value, list) and isinstance(old, list):
            merged[key] = [*old, *(item for item in value if item not in old)]
        else:
            merged[key] = value
    return merged


def render(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def diff(old: str | None, new: str, path: str) -> str:
    lines = difflib.unified_diff((old or "").splitlines(), new.splitlines(),
                                 fromfile=path if old is not None else "/dev/null", tofile=path,
                                 lineterm="")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class DaemonJsonFacts:
    path: str
    text: str | None
    command_line: str = ""  # the running dockerd's arguments and the unit's ExecStart lines
    swarm_active: bool = False

    @property
    def systemd_fd(self) -> bool:
        """The daemon is started by systemd with -H fd://."""
        return "fd://" in self.command_line


def read_facts(c: Any, path: str, rootless: bool, uid: int | None, systemd: bool
               ) -> DaemonJsonFacts:
    """The file, and what the daemon it configures runs with: its arguments (from its pid
    file: /var/run/docker.pid, or the rootless user's), the unit's ExecStart, swarm mode."""
    from .remote import out, read_text

    unit = out(c, "systemctl cat docker.service 2>/dev/null") if systemd and not rootless \
        else ""
    pidfile = f"/run/user/{uid}/docker.pid" if rootless and uid is not None \
        else "/var/run/docker.pid"
    running = out(c, running_arguments_command(pidfile))
    swarm = not rootless and out(c, "docker info --format '{{.Swarm.LocalNodeState}}' "
                                    "2>/dev/null") == "active"
    return DaemonJsonFacts(path, read_text(c, path), f"{running}\n{exec_start_lines(unit)}",
                           swarm)


# daemon.json keys and the dockerd flags that set the same thing: dockerd refuses to start when
# one is given both ways ("specified both as a flag and in the configuration file")
FLAGS = {"data-root": "--data-root", "experimental": "--experimental",
         "insecure-registries": "--insecure-registry", "live-restore": "--live-restore",
         "log-driver": "--log-driver", "log-opts": "--log-opt",
         "no-new-privileges": "--no-new-privileges", "registry-mirrors": "--registry-mirror",
         "userland-proxy": "--userland-proxy", "iptables": "--iptables"}


def flag_given(command_line: str, flag: str) -> str | None:
    """The flag's value on the command line ("" for a bare flag), None when absent.
    ``--userland-proxy-path`` is not ``--userland-proxy``."""
    match = re.search(rf"(?:^|\s){re.escape(flag)}(?:=(\S*)|(?=\s|$))", command_line)
    return None if match is None else (match.group(1) or "")


def running_arguments_command(pidfile: str) -> str:
    """Shell command printing the arguments of the dockerd that wrote ``pidfile``."""
    quoted = shlex.quote(pidfile)
    return f"pid=$(cat {quoted} 2>/dev/null) && tr '\\0' ' ' < /proc/$pid/cmdline"


def exec_start_lines(unit_text: str) -> str:
    """The ExecStart lines of `systemctl cat` output (where unit flags live)."""
    return "\n".join(line.split("=", 1)[1] for line in unit_text.splitlines()
                     if line.strip().startswith("ExecStart=") and "=" in line)


def compatible_settings(desired: Mapping[str, Any], existing: Mapping[str, Any],
                        facts: DaemonJsonFacts) -> tuple[dict[str, Any], list[str]]:
    """``desired`` without the keys that would stop or break this daemon, and why each went."""
    kept = dict(desired)
    notes = []
    for key in list(kept):
        flag = FLAGS.get(key)
        if flag and flag_given(facts.command_line, flag) is not None:
            del kept[key]
            notes.append(f"{key} left out: dockerd already gets {flag} on its command line, "
                         "and both ways at once stop the daemon")
    if kept.get("live-restore") and facts.swarm_active:
        del kept["live-restore"]
        notes.append("live-restore left out: this engine is in swarm mode, which refuses it")
    iptables_flag = flag_given(facts.command_line, "--iptables")
    iptables_off = existing.get("iptables") is False or iptables_flag in ("false", "0")
    if kept.get("userland-proxy") is False and iptables_off:
        del kept["userland-proxy"]
        notes.append("userland-proxy left on: iptables is off on this engine, so without the "
                     "proxy published ports would answer nowhere")
    return kept, notes


def plan_daemon_json(facts: DaemonJsonFacts, desired: Mapping[str, Any], stamp: str,
                     restart: list[Run] | None, sudo: bool, owner: str = "",
                     prepare: list[Run] | None = None) -> tuple[Plan, str]:
    """The write (with backup) and the restart, only when the merged content differs.

    ``restart``: the steps that restart the daemon, or None when nothing can (then a note says
    how). ``prepare``: steps that must run before the write (e.g. create the user's config dir).
    Returns the plan and the unified diff.
    """
    existing = parse_existing(facts.text, facts.path)
    desired, skipped = compatible_settings(desired, existing, facts)
    merged = merge(existing, desired)
    if "hosts" in merged and facts.systemd_fd:
        raise ConfigError(Problem("has a `hosts` key, and systemd starts dockerd with -H fd://: "
                                  "the daemon would refuse to start", file=facts.path,
                                  fix="remove `hosts` from daemon.json (or drop -H fd:// from "
                                      "the unit's ExecStart in a drop-in)"))
    plan = PlanBuilder(f"daemon.json ({facts.path})")
    for note in skipped:
        plan.note(note)
    if merged == existing and facts.text is not None:
        return plan.build(), ""
    new_text = render(merged)
    json.loads(new_text)  # never write what the daemon could not read
    steps: list[Run | Write] = list(prepare or [])
    if facts.text is not None:
        steps.append(Run(shlex.join(["cp", "-p", facts.path, f"{facts.path}.bak-{stamp}"]), sudo))
    steps.append(Write(facts.path, new_text, 0o644, sudo=sudo, owner=owner))
    changed = sorted(k for k in merged if merged.get(k) != existing.get(k))
    plan.add(f"merge {', '.join(changed)} into {facts.path}"
             + (f" (backup {facts.path}.bak-{stamp})" if facts.text is not None else ""), *steps)
    if restart:
        plan.add("restart the daemon to apply it", *restart)
    else:
        plan.note("no way to restart this daemon is known (no systemd): restart it yourself, "
                  "or pass --restart-command")
    return plan.build(), diff(facts.text, new_text, facts.path)
