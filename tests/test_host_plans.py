"""Host plans as data: facts in, commands out (the package steps cannot run here)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from invoke import MockContext

from infra.errors import ConfigError
from infra.host import packages, rootless, system
from infra.host.actions import Run, Write
from infra.host.facts import Passwd, SubIdRange
from infra.host.remote import apply_plan
from tests.conftest import require

pytestmark = pytest.mark.unit

DEBIAN = {"ID": "debian", "VERSION_CODENAME": "bookworm"}
UBUNTU = {"ID": "ubuntu", "VERSION_CODENAME": "noble"}
APT = "DEBIAN_FRONTEND=noninteractive apt-get"

REMOVE_CASES = [
    ("systemd, running, packages installed",
     packages.PackageFacts(installed=frozenset({"docker.io", "containerd", "runc", "curl"}),
                           systemd=True, docker_unit_active=True, docker_unit_enabled=True),
     ["sudo systemctl stop docker docker.socket", "sudo systemctl disable docker docker.socket",
      f"sudo {APT} remove -y docker.io containerd runc"]),
    ("no systemd: stop by pid",
     packages.PackageFacts(installed=frozenset({"docker.io"}), dockerd_pids=(4242,)),
     ["sudo kill -TERM 4242", f"sudo {APT} remove -y docker.io"]),
    ("already gone", packages.PackageFacts(systemd=True), []),
]


@pytest.mark.parametrize(("case", "facts", "commands"), REMOVE_CASES,
                         ids=[c[0] for c in REMOVE_CASES])
def test_remove_rootful(case: str, facts: packages.PackageFacts, commands: list[str]) -> None:
    assert packages.plan_remove_rootful(facts).commands() == commands


def test_install_docker_from_dockers_repository() -> None:
    facts = packages.PackageFacts(os_release=UBUNTU, architecture="arm64")
    plan = packages.plan_install_docker(facts)
    assert plan.commands() == [
        f"sudo {APT} install -y ca-certificates curl gnupg",
        "sudo curl -fsSL https://download.docker.com/linux/ubuntu/gpg | gpg --dearmor --yes "
        "-o /usr/share/keyrings/docker-archive-keyring.gpg",
        "sudo write /etc/apt/sources.list.d/docker.list (mode 0644)",
        "sudo apt-get update",
        f"sudo {APT} install -y docker-ce docker-ce-cli containerd.io docker-buildx-plugin "
        "docker-compose-plugin docker-ce-rootless-extras",
    ]
    written = [s for a in plan.actions for s in a.steps if isinstance(s, Write)]
    assert written[0].text == ("deb [arch=arm64 signed-by=/usr/share/keyrings/docker-archive-"
                               "keyring.gpg] https://download.docker.com/linux/ubuntu noble "
                               "stable\n")


def test_install_docker_keeps_rootful_off_when_rootless_under_systemd() -> None:
    facts = packages.PackageFacts(os_release=DEBIAN, systemd=True)
    commands = packages.plan_install_docker(facts, rootless=True).commands()
    assert commands[-1] == "sudo systemctl disable --now docker.service docker.socket"


def test_install_docker_second_run_is_empty() -> None:
    facts = packages.PackageFacts(os_release=DEBIAN, keyring_present=True,
                                  installed=frozenset(packages.DOCKER_CE_PACKAGES))
    facts = replace(facts, sources_list=packages.docker_repository_line(facts))
    assert packages.plan_install_docker(facts).empty


def test_install_docker_from_debian_installs_only_whats_missing() -> None:
    facts = packages.PackageFacts(os_release=DEBIAN, installed=frozenset({"docker.io", "uidmap"}))
    assert packages.plan_install_docker(facts, "debian").commands() == [
        "sudo apt-get update", f"sudo {APT} install -y rootlesskit slirp4netns"]
    full = replace(facts, installed=frozenset(packages.DEBIAN_PACKAGES))
    assert packages.plan_install_docker(full, "debian").empty


def test_install_docker_refuses_unknown_source_and_distro() -> None:
    with pytest.raises(ConfigError, match="--source"):
        packages.plan_install_docker(packages.PackageFacts(os_release=DEBIAN), "snap")
    with pytest.raises(ConfigError, match="fedora"):
        packages.plan_install_docker(packages.PackageFacts(os_release={"ID": "fedora"}))


ALICE = Passwd("alice", 1001, 1001, "/home/alice", "/bin/bash")


def rootless_facts(**changes: object) -> rootless.RootlessFacts:
    """A host where everything is already right (systemd, Docker's packages)."""
    base = rootless.RootlessFacts(
        user=ALICE, current_user="root", current_is_root=True,
        subuid=(SubIdRange("alice", 100000, 65536),), subgid=(SubIdRange("alice", 100000, 65536),),
        systemd=True, tool_dir="/usr/bin", docker_next_to_tool=True, unit_file=True,
        unit_active=True, unit_enabled=True, cli_context=True,
        profile="export DOCKER_HOST=unix://$XDG_RUNTIME_DIR/docker.sock\n", daemon_rootless=True,
        linger=True)
    return replace(base, **changes)  # type: ignore[arg-type]


def test_rootless_nothing_to_do_when_everything_is_in_place() -> None:
    plan = rootless.plan_rootless(rootless_facts())
    assert plan.empty and not plan.notes


def test_rootless_fresh_systemd_host() -> None:
    facts = rootless_facts(subuid=(SubIdRange("bob", 100000, 65536),), subgid=(), newuidmap=False,
                           unit_file=False, unit_active=False, unit_enabled=False,
                           cli_context=False, profile="", daemon_rootless=False, linger=False)
    commands = rootless.plan_rootless(facts).commands()
    env = "XDG_RUNTIME_DIR=/run/user/1001"
    assert commands[:3] == [
        f"sudo {APT} install -y uidmap",
        "sudo usermod --add-subuids 165536-231071 alice",  # after bob's range
        "sudo usermod --add-subgids 100000-165535 alice",
    ]
    assert commands[3] == ("su - alice -s /bin/sh -c 'XDG_RUNTIME_DIR=/run/user/1001 "
                           "PATH=/usr/bin:/sbin:/usr/sbin:/usr/bin:/bin "
                           "dockerd-rootless-setuptool.sh install'")
    assert "DOCKER_HOST=unix://$XDG_RUNTIME_DIR/docker.sock" in commands[4]
    assert "export PATH" not in commands[4]  # /usr/bin is on PATH already
    assert commands[5] == f"su - alice -s /bin/sh -c '{env} systemctl --user enable --now docker'"
    assert commands[7] == "sudo loginctl enable-linger alice"


def test_rootless_without_systemd_starts_the_daemon_unsupervised() -> None:
    facts = rootless_facts(systemd=False, tool_dir="/usr/share/docker.io/contrib",
                           docker_next_to_tool=False, unit_file=False, cli_context=False,
                           runtime_dir_exists=False, iptables_module=False,
                           rootful_socket_writable=True, profile="", daemon_rootless=False)
    plan = rootless.plan_rootless(facts)
    commands = plan.commands()
    assert commands[0] == "sudo install -d -m 700 -o 1001 -g 1001 /run/user/1001"
    assert "ln -sf /usr/share/docker.io/contrib/dockerd-rootless.sh" in commands[1]
    assert commands[2].endswith("dockerd-rootless-setuptool.sh install --force --skip-iptables'")
    assert "PATH=/home/alice/bin:" in commands[2]
    assert "export PATH=$HOME/bin:$PATH" in commands[3]
    assert "export XDG_RUNTIME_DIR=/run/user/$(id -u)" in commands[3]
    assert "setsid nohup dockerd-rootless.sh" in commands[4]
    assert any("NOT supervised" in a.description for a in plan.actions)
    assert any("systemd is not running" in note for note in plan.notes)
    assert not any("linger" in c for c in commands)


def test_rootless_profile_lines_are_added_once() -> None:
    facts = rootless_facts(systemd=False, daemon_rootless=True, runtime_dir_exists=True)
    lines = rootless.profile_lines(facts)
    assert rootless.plan_rootless(replace(facts, profile="\n".join(lines) + "\n")).empty
    partial = rootless.plan_rootless(replace(facts, profile=lines[0] + "\n"))
    assert partial.actions[0].description == "add 1 line(s) to ~/.bashrc"


def test_rootless_refuses_small_subid_range_and_missing_tool() -> None:
    with pytest.raises(ConfigError, match="only 1000 subordinate uids"):
        rootless.plan_rootless(rootless_facts(subuid=(SubIdRange("1001", 100000, 1000),)))
    with pytest.raises(ConfigError, match=r"host\.install-docker"):
        rootless.plan_rootless(rootless_facts(tool_dir=""))


def test_rootless_user_namespaces_switched_off() -> None:
    plan = rootless.plan_rootless(rootless_facts(max_user_namespaces=0,
                                                 unprivileged_userns_clone="0"))
    assert plan.commands() == [
        "sudo write /etc/sysctl.d/50-rootless.conf (mode 0644)", "sudo sysctl --system",
        "sudo write /etc/sysctl.d/51-rootless.conf (mode 0644)", "sudo sysctl --system"]


def test_unprivileged_ports() -> None:
    plan = system.plan_unprivileged_ports(system.PortFacts(1024, None), 80)
    assert plan.commands() == [
        "sudo write /etc/sysctl.d/50-unprivileged-ports.conf (mode 0644)",
        "sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80"]
    done = system.PortFacts(80, "net.ipv4.ip_unprivileged_port_start = 80\n")
    assert system.plan_unprivileged_ports(done, 80).empty


def test_cgroup_delegation() -> None:
    fresh = system.plan_cgroup_delegation(system.DelegationFacts(True, None, "memory pids", 1001))
    assert fresh.commands() == [
        "sudo write /etc/systemd/system/user@.service.d/delegate.conf (mode 0644)",
        "sudo systemctl daemon-reload"]
    no_systemd = system.plan_cgroup_delegation(system.DelegationFacts(False, None, "", 1001))
    assert "sudo systemctl daemon-reload" not in no_systemd.commands()
    assert any("systemd is not running" in n for n in no_systemd.notes)
    done = system.DelegationFacts(True, system.DELEGATE_TEXT, "cpu io memory pids", 1001)
    assert system.plan_cgroup_delegation(done).empty


def test_dry_run_shows_and_runs_nothing() -> None:
    plan = packages.plan_remove_rootful(REMOVE_CASES[0][1])
    said: list[str] = []
    context = MockContext(run={}, sudo={})  # records; any command would raise
    assert apply_plan(context, plan, dry=True, say=said.append)
    assert not context.run.called and not context.sudo.called  # type: ignore[attr-defined]
    assert any("dry run" in line for line in said)
    assert "sudo systemctl stop docker docker.socket" in "\n".join(said)


def test_steps_render_as_text() -> None:
    assert str(Run("id", sudo=True)) == "sudo id"
    assert str(Write("/x", "", 0o600, owner="1:2")) == "write /x (mode 0600, owner 1:2)"


@pytest.mark.tools
def test_as_user_runs_for_an_account_with_a_nologin_shell(tmp_path: Path) -> None:
    """The rootless engine's user is often a service account whose shell refuses logins."""
    import pwd
    import subprocess
    import uuid

    from infra.host.remote import as_user
    from tests.support import users

    require(os.geteuid() == 0, "root (useradd, su)")
    nologin = next((p for p in ("/usr/sbin/nologin", "/sbin/nologin") if Path(p).exists()), "")
    require(bool(nologin), "a nologin shell")
    name = f"synl{uuid.uuid4().hex[:6]}"
    home = tmp_path / name
    subprocess.run(["useradd", "-d", str(home), "-m", "-s", nologin, name], check=True)
    try:
        command = as_user('printf "%s %s" "$(id -un)" "$HOME"', name, "root", True)
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"{name} {home}"
        assert pwd.getpwnam(name).pw_shell == nologin  # the account itself stays locked
    finally:
        users.remove_user(name, pwd.getpwnam(name).pw_uid)
