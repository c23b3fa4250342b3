"""A host's configuration: the project's settings, its inventory overrides, remote paths.

Everything a deploy writes on a host lives under DEPLOY_ROOT there (default: /opt/stackyard
for root, ~/.stackyard for anyone else): ``stacks/<name>/`` (rendered files), ``certs/``
(only the certificates its stacks mount) and, unless DATA_ROOT is absolute, ``data/``.
Rendering happens locally, into ``<BUILD_DIR>/hosts/<host>/``, with these remote paths
substituted, so the compose files are right for the host they are uploaded to.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import HostLayer
from ..inventory import Host

ROOT_DEFAULT = "/opt/stackyard"
USER_DEFAULT = "~/.stackyard"


@dataclass(frozen=True)
class RemoteLayout:
    root: str

    @property
    def stacks_dir(self) -> str:
        return posixpath.join(self.root, "stacks")

    @property
    def certs_dir(self) -> str:
        return posixpath.join(self.root, "certs")

    def stack_dir(self, name: str) -> str:
        return posixpath.join(self.stacks_dir, name)


def deploy_root(setting: str, home: str, uid: str) -> str:
    """DEPLOY_ROOT on the host: the setting (``~`` is the remote HOME), else the default."""
    value = setting or (ROOT_DEFAULT if uid == "0" else USER_DEFAULT)
    if value == "~" or value.startswith("~/"):
        value = home.rstrip("/") + value[1:]
    if not value.startswith("/"):
        value = posixpath.join(home, value)
    return posixpath.normpath(value)


def data_root(value: str, host: Host, layout: RemoteLayout) -> str:
    """DATA_ROOT on the host: ``value`` (the host's override, else the project's) when
    absolute, else under the host's DEPLOY_ROOT."""
    value = host.settings.get("DATA_ROOT") or value or "data"
    return value if value.startswith("/") else posixpath.join(layout.root, value)


def host_layer(host: Host, local_build: Path, layout: RemoteLayout,
               certs_remote: bool = True) -> HostLayer:
    """The configuration layer of ``host``: its inventory overrides, then the paths a deploy
    decides (BUILD_DIR local per host; DATA_ROOT and, for a deploy, CERTS_DIR remote).
    ``certs_remote=False``: a task run there through fab (certs.trust sends the local CA)."""

    def paths(values: Mapping[str, str]) -> dict[str, str]:
        decided = {"BUILD_DIR": str(local_build / "hosts" / host.name),
                   "DATA_ROOT": data_root(values.get("DATA_ROOT", ""), host, layout)}
        if certs_remote:
            decided["CERTS_DIR"] = layout.certs_dir
        return decided

    return HostLayer(host.name, host.overrides(), paths=paths)


def local_build_dir(build_dir_setting: Path) -> Path:
    return Path(os.path.abspath(build_dir_setting))


def host_state_dir(config: Any, host: str) -> Path:
    """Where the run state and the history of ``host``'s deploys are kept, on this machine
    (the build_dir its host layer gives: BUILD_DIR/hosts/<host>/<profile>)."""
    return (local_build_dir(config.path("BUILD_DIR")) / "hosts" / host
            / (config.profile or "default"))


def rootless_login_problem(host: str, socket: str, login_uid: str, socket_owner: str) -> str:
    """Why a rootless host cannot be deployed through this SSH login ('' when it can).

    A rootless engine belongs to its socket's owner, and its containers' root is that user:
    what another login (root, say) uploads, such as 0600 secrets, or the DATA_ROOT it creates,
    is neither readable nor writable from the engine (the ownership fix then fails with
    "Permission denied"). ``socket_owner``: ``stat -c '%u %U'`` of the socket, '' if unseen.
    """
    if not socket:
        return ""
    if not socket_owner:
        return (f"rootless engine socket {socket} is not visible to the SSH login "
                f"(uid {login_uid}): start the engine as its user (fab -H {host} "
                f"host.rootless) and log in as that user, or fix docker_socket for {host} in "
                "env/inventory.yaml")
    owner_uid, _, owner_name = socket_owner.strip().partition(" ")
    owner_name = "" if owner_name == "UNKNOWN" else owner_name  # stat: no such user
    if owner_uid == login_uid:
        return ""
    return (f"rootless engine {socket} belongs to {owner_name or owner_uid} (uid {owner_uid}) "
            f"but the SSH login is uid {login_uid}: its containers could not read what this "
            f"login uploads nor write DATA_ROOT; fix: set `user: {owner_name or owner_uid}` "
            f"for {host} in env/inventory.yaml")
