"""Rootless Docker for one user: prerequisites, setup tool, shell profile, daemon, linger.

The seed's steps 3 and 4. On a host without systemd the daemon is started in the background
under the user (unsupervised: nothing restarts it) and the plan says so.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, Problem
from . import facts as f
from .actions import Plan, PlanBuilder, Run, Write
from .remote import as_user, out, read_text

TOOL = "dockerd-rootless-setuptool.sh"
DAEMON = "dockerd-rootless.sh"
# Where packages put the rootless scripts: docker-ce-rootless-extras, the get.docker.com script,
# Debian's docker.io (which ships them as examples without a `docker` next to them).
TOOL_DIRS = ("/usr/bin", "/usr/local/bin", "$HOME/bin", "/usr/share/docker.io/contrib")
PROFILE = ".bashrc"
START_TIMEOUT = 60


@dataclass(frozen=True)
class RootlessFacts:
    user: f.Passwd
    current_user: str
    current_is_root: bool
    subuid: tuple[f.SubIdRange, ...] = ()
    subgid: tuple[f.SubIdRange, ...] = ()
    newuidmap: bool = True
    max_user_namespaces: int = 1
    unprivileged_userns_clone: str = ""  # "" when the kernel has no such switch
    systemd: bool = False
    tool_dir: str = ""  # directory holding dockerd-rootless-setuptool.sh; "" = not installed
    docker_next_to_tool: bool = True
    docker_cli: str = "/usr/bin/docker"
    iptables_module: bool = True
    rootful_socket_writable: bool = False
    unit_file: bool = False
    unit_active: bool = False
    unit_enabled: bool = False
    cli_context: bool = False
    runtime_dir_exists: bool = True
    shim_ready: bool = False
    profile: str = ""
    daemon_rootless: bool = False  # a daemon answers on the user's socket and says rootless
    linger: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def runtime_dir(self) -> str:
        return f"/run/user/{self.user.uid}"

    @property
    def socket(self) -> str:
        return f"{self.runtime_dir}/docker.sock"

    @property
    def shim_dir(self) -> str:
        return f"{self.user.home}/bin"

    @property
    def bin_dir(self) -> str:
        """Where the setup tool runs from; it expects `docker` beside itself."""
        return self.tool_dir if self.docker_next_to_tool else self.shim_dir


def gather(c: Any, user: str = "") -> RootlessFacts:
    current = out(c, "id -un")
    root = out(c, "id -u") == "0"
    name = user or current
    entry = f.parse_passwd(out(c, f"getent passwd {shlex.quote(name)}"))
    if entry is None:
        raise ConfigError(Problem(f"user {name!r} does not exist on the host", key="ROOTLESS_USER",
                                  fix="create it (useradd -m NAME) or set ROOTLESS_USER"))
    if entry.uid == 0:
        raise ConfigError(Problem("rootless Docker cannot run as root", key="ROOTLESS_USER",
                                  fix="set ROOTLESS_USER to an unprivileged user, or run the task "
                                      "as that user"))

    def as_u(command: str) -> str:
        return as_user(command, entry.user, current, root)

    runtime = f"/run/user/{entry.uid}"
    env = f"XDG_RUNTIME_DIR={runtime} DOCKER_HOST=unix://{runtime}/docker.sock"
    systemd = bool(out(c, "[ -d /run/systemd/system ] && echo yes"))
    dirs = " ".join(TOOL_DIRS)
    tool_dir = out(c, as_u(f"for d in {dirs}; do [ -x $d/{TOOL} ] && echo $d && break; done"))
    home = shlex.quote(entry.home)
    unit = f"{entry.home}/.config/systemd/user/docker.service"
    user_systemctl = f"XDG_RUNTIME_DIR={runtime} systemctl --user"
    userns_clone = out(c, "cat /proc/sys/kernel/unprivileged_userns_clone 2>/dev/null")
    max_ns = out(c, "cat /proc/sys/user/max_user_namespaces 2>/dev/null")
    return RootlessFacts(
        user=entry,
        current_user=current,
        current_is_root=root,
        subuid=tuple(f.parse_subids(read_text(c, "/etc/subuid") or "")),
        subgid=tuple(f.parse_subids(read_text(c, "/etc/subgid") or "")),
        newuidmap=bool(out(c, "command -v newuidmap || ls /usr/bin/newuidmap")),
        max_user_namespaces=int(max_ns) if max_ns.isdigit() else 1,
        unprivileged_userns_clone=userns_clone,
        systemd=systemd,
        tool_dir=tool_dir,
        docker_next_to_tool=bool(tool_dir) and bool(out(c, f"[ -x {tool_dir}/docker ] && echo y")),
        docker_cli=out(c, "command -v docker") or "/usr/bin/docker",
        iptables_module=bool(out(c, "grep -q ip_tables /proc/modules 2>/dev/null || grep -q "
                                    "ip_tables /lib/modules/$(uname -r)/modules.builtin "
                                    "2>/dev/null && echo y")),
        rootful_socket_writable=bool(out(c, as_u("[ -w /var/run/docker.sock ] && echo y"))),
        unit_file=bool(out(c, f"[ -f {shlex.quote(unit)} ] && echo y")),
        unit_active=systemd and out(c, as_u(f"{user_systemctl} is-active docker")) == "active",
        unit_enabled=systemd and out(c, as_u(f"{user_systemctl} is-enabled docker")) == "enabled",
        cli_context=bool(out(c, as_u("docker --context=default context inspect -f '{{.Name}}' "
                                     "rootless 2>/dev/null"))),
        runtime_dir_exists=bool(out(c, f"[ -d {runtime} ] && echo y")),
        shim_ready=bool(out(c, f"[ -x {home}/bin/{TOOL} ] && [ -x {home}/bin/{DAEMON} ] && "
                               f"[ -x {home}/bin/docker ] && echo y")),
        profile=read_text(c, f"{entry.home}/{PROFILE}") or "",
        daemon_rootless="rootless" in out(c, as_u(f"{env} docker info --format "
                                                  "'{{json .SecurityOptions}}' 2>/dev/null")),
        linger=bool(out(c, f"[ -e /var/lib/systemd/linger/{shlex.quote(entry.user)} ] && echo y")),
    )


def profile_lines(facts: RootlessFacts) -> list[str]:
    """The seed's two lines (PATH, DOCKER_HOST); without systemd also XDG_RUNTIME_DIR, which
    logind would otherwise set, or DOCKER_HOST would point at /docker.sock."""
    bin_dir = "$HOME/bin" if facts.bin_dir == facts.shim_dir else facts.bin_dir
    lines = []
    if not facts.systemd:
        lines.append('[ -n "$XDG_RUNTIME_DIR" ] || export XDG_RUNTIME_DIR=/run/user/$(id -u)')
    if bin_dir not in ("/usr/bin", "/usr/local/bin"):
        lines.append(f"export PATH={bin_dir}:$PATH")
    lines.append("export DOCKER_HOST=unix://$XDG_RUNTIME_DIR/docker.sock")
    return lines


def _subid_action(plan: PlanBuilder, facts: RootlessFacts, kind: str,
                  ranges: tuple[f.SubIdRange, ...]) -> None:
    own = f.ranges_of(list(ranges), facts.user.user, facts.user.uid)
    if any(r.count >= f.SUBID_MINIMUM for r in own):
        return
    if own:
        raise ConfigError(Problem(
            f"{facts.user.user} has only {max(r.count for r in own)} subordinate "
            f"{kind[3:]}s", file=f"/etc/{kind}",
            fix=f"give {facts.user.user} a range of at least {f.SUBID_MINIMUM} ids "
                f"(e.g. {facts.user.user}:{f.next_free_subid_start(list(ranges))}:65536)"))
    start = f.next_free_subid_start(list(ranges))
    flag = "--add-subuids" if kind == "subuid" else "--add-subgids"
    plan.add(f"give {facts.user.user} {f.SUBID_MINIMUM} subordinate {kind[3:]}s from {start} "
             f"(/etc/{kind})",
             Run(f"usermod {flag} {start}-{start + f.SUBID_MINIMUM - 1} "
                 f"{shlex.quote(facts.user.user)}", True))


def plan_rootless(facts: RootlessFacts) -> Plan:
    plan = PlanBuilder(f"rootless docker for {facts.user.user}")

    def as_u(command: str) -> str:
        return as_user(command, facts.user.user, facts.current_user, facts.current_is_root)

    env = f"XDG_RUNTIME_DIR={facts.runtime_dir}"
    path = f"PATH={facts.bin_dir}:/sbin:/usr/sbin:/usr/bin:/bin"

    # 1. prerequisites
    if not facts.tool_dir:
        raise ConfigError(Problem(f"{TOOL} was not found (looked in {', '.join(TOOL_DIRS)})",
                                  fix="run `invoke host.install-docker` (docker-ce-rootless-extras)"
                                      " or `invoke host.install-docker --source debian`"))
    if not facts.newuidmap:
        plan.add("install uidmap (newuidmap/newgidmap)",
                 Run("DEBIAN_FRONTEND=noninteractive apt-get install -y uidmap", True))
    _subid_action(plan, facts, "subuid", facts.subuid)
    _subid_action(plan, facts, "subgid", facts.subgid)
    if facts.unprivileged_userns_clone == "0":
        plan.add("allow unprivileged user namespaces",
                 Write("/etc/sysctl.d/50-rootless.conf", "kernel.unprivileged_userns_clone = 1\n",
                       sudo=True), Run("sysctl --system", True))
    if facts.max_user_namespaces == 0:
        plan.add("allow user namespaces",
                 Write("/etc/sysctl.d/51-rootless.conf", "user.max_user_namespaces = 28633\n",
                       sudo=True), Run("sysctl --system", True))
    if not facts.systemd and not facts.runtime_dir_exists:
        plan.add(f"create {facts.runtime_dir} (systemd-logind would; it is not running)",
                 Run(shlex.join(["install", "-d", "-m", "700", "-o", str(facts.user.uid),
                                 "-g", str(facts.user.gid), facts.runtime_dir]), True))

    # 2. the setup tool; it calls $BIN/docker, which Debian's layout lacks beside it
    if not facts.docker_next_to_tool and not facts.shim_ready:
        links = " && ".join(f"ln -sf {src} {facts.shim_dir}/{name}" for name, src in (
            (TOOL, f"{facts.tool_dir}/{TOOL}"), (DAEMON, f"{facts.tool_dir}/{DAEMON}"),
            ("docker", facts.docker_cli)))
        plan.add(f"link the rootless scripts and docker into {facts.shim_dir} "
                 f"({facts.tool_dir} has no docker beside them)",
                 Run(as_u(f"mkdir -p {facts.shim_dir} && {links}")))
    needs_install = not facts.cli_context or (facts.systemd and not facts.unit_file)
    if needs_install:
        flags = []
        if facts.rootful_socket_writable:
            flags.append("--force")  # a rootful daemon is reachable; rootless runs beside it
        if not facts.iptables_module:
            flags.append("--skip-iptables")  # no module list in this kernel/container to check
        plan.add(f"run {TOOL} install",
                 Run(as_u(f"{env} {path} {TOOL} install {' '.join(flags)}".rstrip())))
    if not facts.systemd:
        plan.note(f"systemd is not running: {TOOL} cannot create the user unit; the daemon is "
                  f"started with {DAEMON} in the background instead")

    # 3. shell profile, each line exactly once
    present = set(facts.profile.splitlines())
    missing = [line for line in profile_lines(facts) if line not in present]
    if missing:
        printf = "printf '%s\\n' " + " ".join(shlex.quote(line) for line in missing)
        plan.add(f"add {len(missing)} line(s) to ~/{PROFILE}",
                 Run(as_u(f"{printf} >> $HOME/{PROFILE}")))

    # 4. the daemon
    wait = (f"i=0; until {env} DOCKER_HOST=unix://{facts.socket} docker info --format "
            f"'{{{{json .SecurityOptions}}}}' 2>/dev/null | grep -q rootless; do i=$((i+1)); "
            f"[ $i -ge {START_TIMEOUT} ] && tail -n 20 $HOME/.docker/rootless.log && exit 1; "
            "sleep 1; done")
    if facts.systemd:
        if not (facts.unit_active and facts.unit_enabled):
            plan.add("enable and start the user unit docker.service",
                     Run(as_u(f"{env} systemctl --user enable --now docker")), Run(as_u(wait)))
        if not facts.linger:
            plan.add(f"let {facts.user.user}'s services run without a login session",
                     Run(f"loginctl enable-linger {shlex.quote(facts.user.user)}", True))
    else:
        if not facts.daemon_rootless:
            # `;` not `&&`: only the daemon goes to the background, with every stream redirected,
            # so no shell keeps the caller's pipes open (the caller would wait forever)
            start = (f"mkdir -p $HOME/.docker; cd $HOME; {env} {path} setsid nohup {DAEMON} "
                     f">> $HOME/.docker/rootless.log 2>&1 < /dev/null &")
            plan.add(f"start {DAEMON} in the background (NOT supervised: nothing restarts it "
                     "after a crash or reboot; log in ~/.docker/rootless.log)",
                     Run(as_u(start)), Run(as_u(wait)))
        plan.note("systemd is not running: linger (loginctl enable-linger) does not apply")
    return plan.build()
