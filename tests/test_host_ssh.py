"""The same task bodies over SSH: fabric Connections to sshd in network namespaces."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from infra.catalogue import data_volumes
from infra.project import load_project
from tests.conftest import require
from tests.support.hosts import available, network_hosts

pytestmark = pytest.mark.ssh


def test_storage_and_daemon_json_over_ssh(tmp_path: Path, env_dir: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from tasks.docker import daemon_json
    from tasks.host import storage

    missing = available()
    require(not missing, f"network namespaces with sshd ({missing})")
    monkeypatch.setenv("INFRA_ENV_DIR", str(env_dir))
    monkeypatch.setenv("ROOTLESS", "false")
    with network_hosts(1, tmp_path / "lab", prefix="hs", subnet="10.77.41") as lab:
        for host in lab.hosts:
            # the filesystem is shared by all hosts: each gets private paths
            data_root = host.directory / "data"
            monkeypatch.setenv("DATA_ROOT", str(data_root))
            conn = lab.connection(host)
            shown = conn.run("ip -4 -o addr show eth0", hide=True, in_stream=False).stdout
            assert shown.count(host.address) == 1

            storage(conn)
            catalogue = load_project(environ={"INFRA_ENV_DIR": str(env_dir)}).catalogue
            volumes = [v for s in catalogue.stacks.values() for _, v in data_volumes(s)]
            require(bool(volumes), "stacks with data volumes")
            for volume in volumes:
                stat = (data_root / volume.source).stat()
                if volume.owner:
                    assert (stat.st_uid, stat.st_gid) == volume.owner, volume.source

            config = host.directory / "daemon.json"
            config.write_text('{"max-concurrent-downloads": 2}\n')
            restart = f"echo restarted >> {host.directory}/restarts"
            daemon_json(conn, path=str(config), restart_command=restart)
            written = json.loads(config.read_text())
            assert written["max-concurrent-downloads"] == 2
            assert written["registry-mirrors"] == ["http://localhost:5000"]
            assert (host.directory / "restarts").read_text() == "restarted\n"

            capsys.readouterr()
            storage(conn)
            daemon_json(conn, path=str(config), restart_command=restart)
            second = capsys.readouterr().out
            assert second.count("nothing to do") == 2, second
            assert (host.directory / "restarts").read_text() == "restarted\n"
            conn.close()


def test_harness_hosts_are_separate_machines_on_one_lan(tmp_path: Path) -> None:
    missing = available()
    require(not missing, f"network namespaces with sshd ({missing})")
    with network_hosts(2, tmp_path / "lab", prefix="hn", subnet="10.77.43") as lab:
        first, second = (lab.connection(h) for h in lab.hosts)
        seen = first.run("ip -4 -o addr show eth0", hide=True, in_stream=False).stdout
        assert lab.hosts[0].address in seen and lab.hosts[1].address not in seen
        # host to host over the bridge
        reach = second.run(f"ssh-keyscan -T 5 {lab.hosts[0].address}", hide=True, warn=True,
                           in_stream=False)
        assert "ssh-ed25519" in reach.stdout
        first.close()
        second.close()
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "hnh1" not in names and "hnh2" not in names


def test_deploy_and_fab_connections_send_small_packets_at_once(tmp_path: Path) -> None:
    """Nagle's algorithm is off on both kinds of connection (infra.deploy.connection): with it
    on, each session channel waited for sshd's delayed ACK, 40 ms per command."""
    import socket

    from fabric import Config
    from invoke import Task

    from infra.deploy import run
    from infra.deploy.fabexec import InventoryCall
    from infra.deploy.targets import Target
    from infra.inventory import Host

    missing = available()
    require(not missing, f"network namespaces with sshd ({missing})")
    with network_hosts(1, tmp_path / "lab", prefix="hd", subnet="10.77.44") as lab:
        host = lab.hosts[0]
        deploy_conn = run.connect(Target("h1", Host("h1", host.address, "root", 22,
                                                    str(lab.key_file), "", False, (), {}),
                                         known_hosts=str(lab.known_hosts)))
        fab_conn = InventoryCall(Task(lambda c: None), init_kwargs={
            "host": host.address, "user": "root", "connect_timeout": 10,
            "known_hosts": [str(lab.known_hosts)],
            "connect_kwargs": {"key_filename": str(lab.key_file), "look_for_keys": False,
                               "allow_agent": False}}).make_context(Config())
        for conn in (deploy_conn, fab_conn):
            assert conn.run("echo ok", hide=True, in_stream=False).stdout == "ok\n"
            sock = conn.transport.sock
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            conn.close()



def test_a_host_is_verified_before_anything_is_sent(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown host is refused with its fingerprint and how to accept it once; a changed
    key is refused loudly; a recorded key connects. Nothing runs on a refused host."""
    from infra.deploy.connection import Connection, HostKeyChanged, UnverifiedHost

    missing = available()
    require(not missing, f"network namespaces with sshd ({missing})")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/known_hosts of this machine's
    with network_hosts(1, tmp_path / "lab", prefix="hk", subnet="10.77.45") as lab:
        host = lab.hosts[0]
        kwargs = {"user": "root", "connect_timeout": 10,
                  "connect_kwargs": {"key_filename": str(lab.key_file), "look_for_keys": False,
                                     "allow_agent": False}}
        marker = tmp_path / "ran"  # the hosts share this filesystem
        empty = tmp_path / "empty_known_hosts"
        empty.write_text("")
        with pytest.raises(UnverifiedHost) as unknown:
            Connection(host.address, known_hosts=[str(empty)], **kwargs).run(
                f"touch {marker}", hide=True, in_stream=False)
        listed = subprocess.run(["ssh-keygen", "-lf",
                                 str(host.directory / "ssh_host_ed25519_key.pub")],
                                capture_output=True, text=True, check=True).stdout.split()[1]
        text = str(unknown.value)
        assert listed in text and f"ssh-keyscan -p 22 -t ssh-ed25519 {host.address}" in text
        assert unknown.value.exit_code == 2 and not marker.exists()

        other = tmp_path / "other_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                       check=True)
        changed = tmp_path / "changed_known_hosts"
        kind, blob = other.with_suffix(".pub").read_text().split()[:2]
        changed.write_text(f"{host.address} {kind} {blob}\n")
        with pytest.raises(HostKeyChanged) as swapped:
            Connection(host.address, known_hosts=[str(changed)], **kwargs).run(
                f"touch {marker}", hide=True, in_stream=False)
        assert "REFUSED" in str(swapped.value) and listed in str(swapped.value)
        assert not marker.exists()

        trusted = Connection(host.address, known_hosts=[str(lab.known_hosts)], **kwargs)
        assert trusted.run("echo ok", hide=True, in_stream=False).stdout == "ok\n"
        trusted.close()
