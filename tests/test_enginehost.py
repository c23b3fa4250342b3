"""Fast paths without helper containers: the facts that allow them, and the paths themselves
run against the real engine, curl and chown."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.bringup import ownership, probes
from infra.bringup.apply import apply_ownership
from infra.bringup.enginehost import HELPER_ONLY, EngineHost, parse_engine_host, read_engine_host
from tests.conftest import require, require_program
from tests.support import images

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


@pytest.mark.parametrize(("text", "chown", "probe"), [
    ('0\n["name=seccomp,profile=default"]\nbridge\ncurl\n', True, True),
    ('1000\n["name=seccomp,profile=default"]\nbridge\ncurl\n', False, True),  # not root
    ('0\n["name=seccomp,profile=default","name=rootless"]\n\ncurl\n', False, False),
    ('0\n["name=userns"]\nbridge\ncurl\n', False, True),  # remapped UIDs: no host chown
    ('0\n["name=seccomp,profile=default"]\n\ncurl\n', False, False),  # other namespace
    ('0\n["name=seccomp,profile=default"]\nbridge\n\n', True, False),  # no curl
    ("", False, False),
])
def test_the_fast_paths_need_every_fact(text: str, chown: bool, probe: bool) -> None:
    facts = parse_engine_host(text)
    assert (facts.chown_on_host, facts.probe_on_host) == (chown, probe)
    assert facts.compose_program == "docker compose"  # no plugin path read: through the CLI
    assert not HELPER_ONLY.chown_on_host and not HELPER_ONLY.probe_on_host


def test_compose_runs_directly_only_from_an_absolute_plugin_path() -> None:
    facts = parse_engine_host('0\n[]\nbridge\ncurl\n/home/a b/.docker/cli-plugins/docker-compose\n')
    assert facts.compose_program == "'/home/a b/.docker/cli-plugins/docker-compose'"
    assert parse_engine_host("0\n[]\n\n\ndocker-compose\n").compose_program == "docker compose"


def _context():  # type: ignore[no-untyped-def]
    from invoke import Config, Context

    return Context(Config(overrides={"run": {"in_stream": False}}))


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check,
                          timeout=120)


@pytest.fixture
def served_network(docker_engine: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A user-defined network with one labelled busybox httpd ("web") serving /ok."""
    base = images.ensure_busybox_base(["docker"])
    project = f"syeh{uuid.uuid4().hex[:8]}"
    network = f"{project}_default"
    _docker("network", "create", network)
    try:
        # compose's naming (<project>-<service>-<n>), which the host probe relies on
        _docker("run", "-d", "--name", f"{project}-web-1", "--network", network,
                "--label", f"{PROJECT_LABEL}={project}", "--label", f"{SERVICE_LABEL}=web",
                base, "sh", "-c", "mkdir -p /www && echo ok > /www/ok && "
                "exec httpd -f -p 8080 -h /www")
        yield project, network
    finally:
        _docker("rm", "-f", f"{project}-web-1", check=False)
        _docker("network", "rm", network, check=False)


@pytest.mark.engine
def test_the_engine_on_this_machine_is_probed_and_fixed_by_the_shell(
        served_network: tuple[str, str]) -> None:
    require(os.geteuid() == 0, "root (the shell's chown)")
    require_program("curl")
    facts = read_engine_host(_context())
    assert facts == EngineHost("0", bridges_here=True, remapped=False, curl=True,
                               compose=facts.compose)
    # given the network's ID (from `docker network create`/`ls`), no listing is needed
    network_id = _docker("network", "inspect", "--format", "{{.Id}}",
                         served_network[1]).stdout.strip()
    assert read_engine_host(_context(), [network_id[:12]]) == facts
    assert not read_engine_host(_context(), ["0123456789ab"]).bridges_here  # not a bridge here


@pytest.mark.engine
def test_the_engine_options_read_over_its_socket_match_docker_info(
        served_network: tuple[str, str]) -> None:
    require_program("curl")
    socket = Path("/var/run/docker.sock")
    require(socket.is_socket() and not os.environ.get("DOCKER_HOST"), "the default engine socket")
    from infra.bringup.enginehost import engine_host_command

    through_cli = _context().run(engine_host_command(), hide=True, env={"DOCKER_HOST": ""})
    through_socket = _context().run(engine_host_command(), hide=True,
                                    env={"DOCKER_HOST": f"unix://{socket}"})
    assert "SecurityOptions" in through_socket.stdout  # the socket path was taken
    assert parse_engine_host(through_cli.stdout) == parse_engine_host(through_socket.stdout)
    options = through_cli.stdout.splitlines()[1]
    assert options.startswith("[") and options in through_socket.stdout


@pytest.mark.engine
def test_host_probe_reaches_services_by_name_at_their_network_address(
        served_network: tuple[str, str]) -> None:
    require_program("curl")
    project, network = served_network
    checks = [probes.HttpCheck("web", "http://web:8080/ok"),
              probes.HttpCheck("we", "http://we:8080/ok")]  # no such service ("web" is not it)
    command = probes.host_probe_command(checks[:1], project, network, timeout=20)
    good = _context().run(command, hide=True, warn=True)
    assert good.ok, good.stdout + good.stderr
    assert probes.parse_probe_output(good.stdout) == [probes.ProbeResult("web", True)]

    bad = [probes.HttpCheck("web", "http://web:8080/missing"), checks[1]]
    result = _context().run(probes.host_probe_command(bad, project, network, timeout=2),
                            hide=True, warn=True)
    assert result.exited == 1
    found = {r.service: r for r in probes.parse_probe_output(result.stdout)}
    assert not found["web"].healthy and "404" in found["web"].detail
    assert not found["we"].healthy and f"no address on {network}" in found["we"].detail


@pytest.mark.tools
def test_ownership_on_host_needs_no_helper_container(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "root (chown to other users)")
    data = tmp_path / "data"
    fixes = [ownership.OwnershipFix("m", "loki", "loki", (10001, 10001), "0700"),
             ownership.OwnershipFix("m", "grafana", "grafana", (472, 0))]
    # an image that cannot exist: the host path must not start a container
    changes = apply_ownership(_context(), "no-such-image.invalid/none:0", str(data), fixes,
                              dry=False, on_host=True)
    assert {(c.action, c.source) for c in changes} >= {("created", "loki"), ("chown", "loki"),
                                                       ("chmod", "loki"), ("chown", "grafana")}
    assert (data / "loki").stat().st_uid == 10001
    assert oct((data / "loki").stat().st_mode & 0o777) == "0o700"
    assert ((data / "grafana").stat().st_uid, (data / "grafana").stat().st_gid) == (472, 0)
    again = apply_ownership(_context(), "no-such-image.invalid/none:0", str(data), fixes,
                            dry=True, on_host=True)
    assert {c.action for c in again} == {"ok"}


def _cli_compose_path(environ: dict[str, str]) -> str:
    """Where the docker CLI itself resolves its compose plugin."""
    shown = _context().run("docker info --format '{{range .ClientInfo.Plugins}}"
                           '{{if eq .Name "compose"}}{{.Path}}{{end}}{{end}}\'', hide=True,
                           warn=True, env=environ)
    return shown.stdout.strip()


@pytest.mark.engine
def test_compose_binary_is_the_one_the_docker_cli_runs(docker_engine: str, tmp_path: Path
                                                       ) -> None:
    from infra.bringup.commands import ComposeTarget, compose

    facts = read_engine_host(_context())
    require(bool(_cli_compose_path({})), "the docker compose plugin")
    assert facts.compose and Path(facts.compose).resolve() == Path(_cli_compose_path({})).resolve()
    # run directly (standalone mode), it takes the arguments `docker compose` takes
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: busybox\n")
    target = ComposeTarget("compose", tmp_path, tmp_path / "compose.yaml",
                           program=facts.compose_program)  # even a project named "compose"
    shown = _context().run(compose(target, "config"), hide=True).stdout
    assert shown.startswith("name: compose\n") and "  web:\n" in shown

    # a plugin in DOCKER_CONFIG comes first, as for the CLI
    config_dir = tmp_path / "docker-config"
    (config_dir / "cli-plugins").mkdir(parents=True)
    (config_dir / "cli-plugins" / "docker-compose").symlink_to(facts.compose)
    environ = {"DOCKER_CONFIG": str(config_dir)}
    mine = read_engine_host(_with_env(environ))
    assert mine.compose == str(config_dir / "cli-plugins" / "docker-compose")
    assert Path(_cli_compose_path(environ)) == Path(mine.compose)

    # extra plugin directories come before it for the CLI: then the CLI decides
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "docker-compose").symlink_to(facts.compose)
    (config_dir / "config.json").write_text(json.dumps({"cliPluginsExtraDirs": [str(extra)]}))
    assert Path(_cli_compose_path(environ)) == extra / "docker-compose"
    assert read_engine_host(_with_env(environ)).compose_program == "docker compose"
    # a first match that is not executable: the CLI fails on it, so we do not skip it
    (config_dir / "config.json").unlink()
    (config_dir / "cli-plugins" / "docker-compose").unlink()
    (config_dir / "cli-plugins" / "docker-compose").write_text("#!/bin/sh\n")
    assert read_engine_host(_with_env(environ)).compose_program == "docker compose"


def _with_env(environ: dict[str, str]):  # type: ignore[no-untyped-def]
    from invoke import Config, Context

    return Context(Config(overrides={"run": {"in_stream": False, "env": environ}}))
