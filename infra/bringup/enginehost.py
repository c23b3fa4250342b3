"""Where the engine runs, relative to the shell that drives it: the fast paths' facts.

Ownership fixes and HTTP probes work everywhere from inside the engine (a helper container),
but each helper container costs the engine a container start (about 0.4 s of CPU). When the
engine's bridges are in the shell's own network namespace, the engine runs on this machine
and its containers answer at their addresses: the shell probes them itself (curl). When, in
addition, the engine maps no UIDs (neither rootless nor userns-remap) and the shell is root,
``chown`` by the shell gives the same owner a container would, and the shell fixes
ownership itself. Anything else (a remote engine, Docker Desktop's VM, a rootless engine in
rootlesskit's namespace, an engine in another network namespace, a non-root login, or no
user-defined network yet to tell) keeps the helper container.

The same round trip finds the compose plugin binary where the docker CLI would: a bring-up
runs it directly, which spares the CLI's own start and its metadata call to the plugin, about
0.1 s of CPU per compose command.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EngineHost:
    login_uid: str = ""
    bridges_here: bool = False  # a user-defined bridge of the engine is in our namespace
    remapped: bool = False  # rootless or userns-remap: container UIDs are not host UIDs
    curl: bool = False
    compose: str = ""  # the compose plugin binary `docker compose` runs; "" when unsure

    @property
    def chown_on_host(self) -> bool:
        return self.bridges_here and not self.remapped and self.login_uid == "0"

    @property
    def probe_on_host(self) -> bool:
        return self.bridges_here and self.curl

    @property
    def compose_program(self) -> str:
        """How to run compose: the plugin binary itself (standalone mode, same arguments) when
        found, else through the docker CLI."""
        return shlex.quote(self.compose) if self.compose else "docker compose"


HELPER_ONLY = EngineHost()  # nothing known: every fix and probe through a helper container

# Where the docker CLI looks for plugins (docker/cli cli-plugins/manager, getPluginDirs):
# config.json's cliPluginsExtraDirs, then its config directory's cli-plugins, then these. The
# first regular file (or symlink) named docker-compose is the one it runs.
SYSTEM_PLUGIN_DIRS = ("/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
                      "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")
FIND_COMPOSE = (
    'cfg="${DOCKER_CONFIG:-$HOME/.docker}"; compose=""; '
    # extra directories (or the old CLIs' test variable): leave the choice to the CLI
    'if [ -z "${DOCKER_CLI_PLUGIN_EXTRA_DIRS:-}" ] && '
    '! grep -qs cliPluginsExtraDirs "$cfg/config.json"; then '
    'for d in "$cfg/cli-plugins" ' + " ".join(SYSTEM_PLUGIN_DIRS) + "; do "
    'if [ -f "$d/docker-compose" ]; then '
    # not executable: the CLI would fail on it too; let it say so
    '[ -x "$d/docker-compose" ] && compose="$d/docker-compose"; break; fi; done; fi; '
    'echo "$compose"')


def engine_host_command(network_ids: Sequence[str] = ()) -> str:
    """One round trip: login uid, the engine's security options, whether one of its bridges
    (``br-<network id>``) is an interface here (/proc/net is per network namespace), curl,
    and the compose plugin binary.

    The options come from the engine's /info over its socket when DOCKER_HOST names one (as
    deploys set it) and curl is there: `docker info` also runs every CLI plugin for its
    metadata, which costs three times as much CPU.
    """
    info = "docker info --format '{{json .SecurityOptions}}' 2>/dev/null"
    short = [i[:12] for i in network_ids if re.fullmatch(r"[0-9a-f]{12,64}", i)]
    # the IDs of networks just created or listed spare a `docker network ls`
    pick = (f"net='{'|'.join(short)}'; " if short else
            "net=$(docker network ls -q --filter driver=bridge --filter type=custom "
            "2>/dev/null | head -n 1); ")
    return ("id -u; "
            'case "$DOCKER_HOST" in unix://*) '
            "if command -v curl >/dev/null 2>&1; then "
            'curl -s --max-time 10 --unix-socket "${DOCKER_HOST#unix://}" http://docker/info '
            """| grep -o '"SecurityOptions":[[][^]]*[]]' || echo; """
            f"else {info} || echo; fi;; "
            f"*) {info} || echo;; esac; " + pick +
            'if [ -n "$net" ] && grep -qE "br-($net):" /proc/net/dev 2>/dev/null; '
            "then echo bridge; else echo; fi; "
            "if command -v curl >/dev/null 2>&1; then echo curl; else echo; fi; "
            + FIND_COMPOSE)


def parse_engine_host(text: str) -> EngineHost:
    lines = [*text.splitlines(), "", "", "", "", ""]
    uid, options, bridge, curl, compose = (line.strip() for line in lines[:5])
    return EngineHost(uid, bridge == "bridge",
                      "name=rootless" in options or "name=userns" in options, curl == "curl",
                      compose if compose.startswith("/") else "")


def read_engine_host(c: Any, network_ids: Sequence[str] = ()) -> EngineHost:
    """The facts, or HELPER_ONLY when they cannot be read (the helper path always works).

    ``network_ids``: short IDs of the engine's user-defined bridge networks, when known."""
    result = c.run(engine_host_command(network_ids), hide=True, warn=True, in_stream=False)
    return parse_engine_host(result.stdout) if result.ok else HELPER_ONLY
