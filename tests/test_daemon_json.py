"""docker.daemon-json: merge rules as data, then against a real engine of the test's own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from invoke import Context, Exit

from infra.errors import ConfigError
from infra.host import daemon_json as dj
from infra.host.actions import Run
from tests.conftest import require, require_program

SEED_VALUES = {"DOCKER_REGISTRY_MIRROR_URL": "http://localhost:5000",
               "DOCKER_DATA_ROOT": "~/.config/containers/storage"}


@pytest.mark.unit
def test_desired_settings_follow_the_seed() -> None:
    settings = dj.desired_settings(SEED_VALUES, home="/home/madmin")
    assert settings == {
        "data-root": "/home/madmin/.config/containers/storage",
        "builder": {"gc": {"defaultKeepStorage": "20GB", "enabled": True}},
        "experimental": False,
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "3", "compress": "true"},
        "features": {"buildkit": True},
        "live-restore": True,
        "no-new-privileges": True,
        "userland-proxy": False,
        "registry-mirrors": ["http://localhost:5000"],
        "insecure-registries": ["localhost:5000"],
    }


@pytest.mark.unit
def test_cis_keys_follow_their_settings_and_rootless_keeps_its_port_proxy() -> None:
    rootless = dj.desired_settings(SEED_VALUES, home="/home/madmin", rootless=True)
    assert "userland-proxy" not in rootless  # rootlesskit publishes ports through it
    assert "live-restore" not in rootless  # its containers stop with rootlesskit anyway
    assert rootless["no-new-privileges"] is True
    opted_out = dj.desired_settings({"DOCKER_LIVE_RESTORE_ENABLED": "false",
                                     "DOCKER_NO_NEW_PRIVILEGES_ENABLED": "no",
                                     "DOCKER_USERLAND_PROXY_ENABLED": "true"})
    assert (opted_out["live-restore"], opted_out["no-new-privileges"],
            opted_out["userland-proxy"]) == (False, False, True)


@pytest.mark.unit
def test_tls_registry_is_not_insecure_and_bad_values_are_refused() -> None:
    settings = dj.desired_settings({"DOCKER_REGISTRY_MIRROR_URL": "https://zot.example.org/"})
    assert settings["registry-mirrors"] == ["https://zot.example.org"]
    assert "insecure-registries" not in settings
    assert "registry-mirrors" not in dj.desired_settings({})
    with pytest.raises(ConfigError, match="DOCKER_REGISTRY_MIRROR_URL"):
        dj.desired_settings({"DOCKER_REGISTRY_MIRROR_URL": "localhost:5000"})
    with pytest.raises(ConfigError, match="DOCKER_DATA_ROOT"):
        dj.desired_settings({"DOCKER_DATA_ROOT": "relative/dir"})


@pytest.mark.unit
def test_merge_keeps_unrelated_keys_and_extends_lists() -> None:
    existing = {"debug": True, "log-opts": {"labels": "x", "max-size": "1m"},
                "registry-mirrors": ["https://other"]}
    merged = dj.merge(existing, {"log-opts": {"max-size": "10m"},
                                 "registry-mirrors": ["http://localhost:5000"]})
    assert merged == {"debug": True, "log-opts": {"labels": "x", "max-size": "10m"},
                      "registry-mirrors": ["https://other", "http://localhost:5000"]}
    assert dj.merge(merged, {"registry-mirrors": ["http://localhost:5000"]}) == merged


def facts(text: str | None, systemd_fd: bool = False, command_line: str = "",
          swarm_active: bool = False) -> dj.DaemonJsonFacts:
    if systemd_fd:
        command_line += "\n/usr/bin/dockerd -H fd://"
    return dj.DaemonJsonFacts("/etc/docker/daemon.json", text, command_line, swarm_active)


@pytest.mark.unit
def test_plan_backs_up_writes_and_restarts_only_on_change() -> None:
    desired = dj.desired_settings(SEED_VALUES, "/root")
    restart = [Run("systemctl restart docker", True)]
    plan, diff = dj.plan_daemon_json(facts('{\n  "debug": true\n}'), desired, "20250101-000000",
                                     restart, sudo=True)
    assert plan.commands() == [
        "sudo cp -p /etc/docker/daemon.json /etc/docker/daemon.json.bak-20250101-000000",
        "sudo write /etc/docker/daemon.json (mode 0644)", "sudo systemctl restart docker"]
    assert '\n+  "registry-mirrors": [\n' in diff and '\n-  "debug": true\n' in diff
    merged = dj.render(dj.merge({"debug": True}, desired))
    again, no_diff = dj.plan_daemon_json(facts(merged), desired, "x", restart, sudo=True)
    assert again.empty and no_diff == ""
    fresh, _ = dj.plan_daemon_json(facts(None), desired, "x", None, sudo=True)
    assert fresh.commands() == ["sudo write /etc/docker/daemon.json (mode 0644)"]
    assert any("restart it yourself" in n for n in fresh.notes)


@pytest.mark.unit
def test_plan_refuses_corrupt_file_and_conflicting_hosts() -> None:
    with pytest.raises(ConfigError, match=r"not valid JSON.*\n.*left untouched") as err:
        dj.plan_daemon_json(facts('{"debug": true,'), {}, "x", None, sudo=True)
    assert err.value.problems[0].line == 1
    with pytest.raises(ConfigError, match="JSON object"):
        dj.plan_daemon_json(facts("[]"), {}, "x", None, sudo=True)
    with pytest.raises(ConfigError, match="-H fd://"):
        dj.plan_daemon_json(facts('{"hosts": ["unix:///x.sock"]}', systemd_fd=True), {}, "x",
                            None, sudo=True)
    plan, _ = dj.plan_daemon_json(facts('{"hosts": ["unix:///x.sock"]}'), {"debug": True}, "x",
                                  None, sudo=True)
    assert not plan.empty  # without systemd's fd:// a hosts key is fine


@pytest.mark.unit
def test_keys_the_daemon_would_refuse_are_left_out_with_the_reason() -> None:
    desired = dj.desired_settings({})
    unit = dj.exec_start_lines("[Service]\nExecStart=\n"
                               "ExecStart=/usr/bin/dockerd -H fd:// --live-restore "
                               "--userland-proxy-path=/usr/bin/docker-proxy "
                               "--log-opt max-size=1m\n")
    plan, _ = dj.plan_daemon_json(facts(None, command_line=unit), desired, "x", None, sudo=True)
    written = json.loads(plan.actions[0].steps[-1].text)
    assert "live-restore" not in written and "log-opts" not in written
    assert written["userland-proxy"] is False  # --userland-proxy-path is another flag
    assert any("--live-restore" in note for note in plan.notes)

    swarm, _ = dj.plan_daemon_json(facts(None, swarm_active=True), desired, "x", None, sudo=True)
    assert "live-restore" not in json.loads(swarm.actions[0].steps[-1].text)
    assert any("swarm" in note for note in swarm.notes)

    for no_iptables in (facts('{"iptables": false}'),
                        facts(None, command_line="dockerd --iptables=false")):
        kept, notes = dj.compatible_settings(desired, dj.parse_existing(no_iptables.text, "x"),
                                             no_iptables)
        assert "userland-proxy" not in kept and "published ports" in notes[-1]
    assert dj.flag_given("dockerd --iptables=false", "--iptables") == "false"
    assert dj.flag_given("dockerd --userland-proxy-path=/x", "--userland-proxy") is None


# ---------------------------------------------------------------- against a real engine

START = """#!/bin/sh
# (re)start the test's own dockerd; every call is counted
echo restart >> {dir}/restarts
if [ -s {dir}/pid ]; then
  pid=$(cat {dir}/pid); kill "$pid" 2>/dev/null
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
fi
setsid nohup dockerd --data-root {dir}/root --exec-root {dir}/exec --pidfile {dir}/pid \\
  -H unix://{dir}/d.sock --config-file {dir}/daemon.json --bridge=none --iptables=false \\
  --ip-masq=false >> {dir}/dockerd.log 2>&1 < /dev/null &
i=0
until docker -H unix://{dir}/d.sock version >/dev/null 2>&1; do
  i=$((i+1)); [ $i -ge 300 ] && tail -n 20 {dir}/dockerd.log && exit 1; sleep 0.1
done
"""


@pytest.fixture
def own_engine(docker_engine: str) -> Iterator[Path]:
    """A private dockerd (own data root, socket, config file): the shared one is never touched."""
    require(os.geteuid() == 0, "root (to run a dockerd)")
    require_program("dockerd")
    workdir = Path(tempfile.mkdtemp(prefix="dj", dir="/tmp"))  # short: unix socket path limit
    (workdir / "daemon.json").write_text('{"debug": true}\n')
    script = workdir / "restart.sh"
    script.write_text(START.format(dir=workdir))
    try:
        subprocess.run(["sh", str(script)], check=True, timeout=60)
        yield workdir
    finally:
        pid = (workdir / "pid").read_text().strip() if (workdir / "pid").exists() else ""
        if pid:
            subprocess.run(["kill", pid], check=False)
            for _ in range(100):
                if subprocess.run(["kill", "-0", pid], capture_output=True).returncode:
                    break
                time.sleep(0.1)
        subprocess.run(["umount", "-R", str(workdir / "exec")], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


def docker(workdir: Path, *args: str) -> str:
    return subprocess.run(["docker", "-H", f"unix://{workdir}/d.sock", *args], check=True,
                          capture_output=True, text=True, timeout=60).stdout.strip()


def restarts(workdir: Path) -> int:
    return len((workdir / "restarts").read_text().splitlines())


@pytest.fixture
def task_env(env_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFRA_ENV_DIR", str(env_dir))
    monkeypatch.setenv("ROOTLESS", "false")
    monkeypatch.setenv("DOCKER_REGISTRY_MIRROR_URL", "http://localhost:5000")
    monkeypatch.setenv("DOCKER_LOG_MAX_SIZE", "7m")


@pytest.mark.engine
def test_daemon_json_against_a_real_engine(own_engine: Path, task_env: None,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from tasks.docker import daemon_json

    path = str(own_engine / "daemon.json")
    restart = f"sh {own_engine}/restart.sh"
    daemon_json(Context(), path=path, restart_command=restart)
    assert restarts(own_engine) == 2  # the fixture's start + one restart
    info = json.loads(docker(own_engine, "info", "--format", "{{json .}}"))
    assert info["RegistryConfig"]["Mirrors"] == ["http://localhost:5000/"]
    assert info["LoggingDriver"] == "json-file"
    assert info["Debug"] is True  # the unrelated key survived
    assert info["LiveRestoreEnabled"] is True
    assert json.loads((own_engine / "daemon.json").read_text())["userland-proxy"] is False
    # this engine runs with --iptables=false: read from its process, that keeps the proxy on
    running = Context().run(dj.running_arguments_command(str(own_engine / "pid")),
                            hide=True, in_stream=False).stdout
    assert dj.flag_given(running, "--iptables") == "false"
    kept, _ = dj.compatible_settings(dj.desired_settings({}), {},
                                     dj.DaemonJsonFacts("x", None, running))
    assert "userland-proxy" not in kept
    # no-new-privileges is not in `docker info` (20.10): a container's process shows it
    from tests.support import images

    base = images.ensure_busybox_base(["docker", "-H", f"unix://{own_engine}/d.sock"])
    status = docker(own_engine, "run", "--rm", "--network", "none", base, "cat",
                    "/proc/self/status")
    assert "NoNewPrivs:\t1" in status
    backups = list(own_engine.glob("daemon.json.bak-*"))
    assert [b.read_text() for b in backups] == ['{"debug": true}\n']
    # log options reach containers: create one from an imported one-file image
    with tarfile.open(own_engine / "img.tar", "w") as tar:
        tar.add(__file__, arcname="marker")
    docker(own_engine, "import", str(own_engine / "img.tar"), "dj-test:1")
    docker(own_engine, "create", "--name", "dj-test", "dj-test:1", "/marker")
    log_config = json.loads(docker(own_engine, "inspect", "--format",
                                   "{{json .HostConfig.LogConfig}}", "dj-test"))
    assert log_config == {"Type": "json-file",
                          "Config": {"max-size": "7m", "max-file": "3", "compress": "true"}}

    capsys.readouterr()
    daemon_json(Context(), path=path, restart_command=restart)
    assert "nothing to do" in capsys.readouterr().out
    assert restarts(own_engine) == 2  # unchanged: no restart


@pytest.mark.engine
def test_corrupt_daemon_json_is_left_untouched(own_engine: Path, task_env: None) -> None:
    from tasks.docker import daemon_json

    target = own_engine / "broken.json"
    target.write_text('{"debug": true,\n')
    with pytest.raises(Exit) as exc:
        daemon_json(Context(), path=str(target), restart_command=f"sh {own_engine}/restart.sh")
    assert "not valid JSON" in str(exc.value.message) and "broken.json:2" in str(exc.value.message)
    assert exc.value.code != 0
    assert target.read_text() == '{"debug": true,\n'
    assert not list(own_engine.glob("broken.json.bak-*"))
    assert restarts(own_engine) == 1


@pytest.mark.engine
def test_loopback_ports_answer_with_the_written_settings(tmp_path: Path) -> None:
    """userland-proxy off (with the other keys the task writes for a rootful engine): a port
    published on 127.0.0.1 still answers on the engine's machine, through iptables rules and
    no docker-proxy process. The engine runs in a network namespace of its own."""
    from tests.support import hosts, images

    missing = hosts.available()
    require(not missing, f"network namespaces ({missing})")
    require_program("curl")
    written = {k: v for k, v in dj.desired_settings({}).items()
               if k in ("live-restore", "no-new-privileges", "userland-proxy", "log-opts")}
    assert written["userland-proxy"] is False
    with hosts.network_hosts(1, tmp_path / "lab", prefix="dp", subnet="10.77.45", dockerd=True,
                             daemon_config=written) as lab:
        host = lab.hosts[0]
        cli = ["docker", "-H", f"unix://{host.docker_socket}"]
        in_host = ["nsenter", f"--net={host.netns_path}"]
        base = images.ensure_busybox_base(cli)
        subprocess.run([*cli, "network", "create", "dp_default"], check=True,
                       capture_output=True, timeout=60)
        subprocess.run([*cli, "run", "-d", "--name", "web", "--network", "dp_default", "-p",
                        "127.0.0.1:18080:8080", base, "sh", "-c",
                        "mkdir -p /w && echo ok > /w/ok && exec httpd -f -p 8080 -h /w"],
                       check=True, capture_output=True, timeout=60)
        answer = ""
        for _ in range(50):
            answer = subprocess.run([*in_host, "curl", "-s", "--max-time", "5",
                                     "http://127.0.0.1:18080/ok"], capture_output=True,
                                    text=True).stdout
            if answer:
                break
            time.sleep(0.1)
        assert answer == "ok\n"
        assert host.dockerd is not None  # nsenter exec'd dockerd: same pid
        proxies = subprocess.run(["pgrep", "-P", str(host.dockerd.pid), "-x", "docker-proxy"],
                                 capture_output=True, text=True)
        assert proxies.stdout == ""  # this engine runs no userland proxy
