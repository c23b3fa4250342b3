"""The lifecycle tasks as a user runs them, where no engine is needed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, program_of_this_python

pytestmark = pytest.mark.unit
INVOKE = program_of_this_python("invoke")


def run(*args: str, env_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": "/usr/bin:/bin", "INFRA_ENV_DIR": str(env_dir),
               "BUILD_DIR": str(tmp_path / "build"), "DATA_ROOT": str(tmp_path / "data"),
               "CERTS_DIR": str(tmp_path / "certs"),
               # an engine that is not there: the refusal must come before any engine call
               "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    return subprocess.run([INVOKE, *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env=environ, stdin=subprocess.DEVNULL, timeout=60)


def test_down_volumes_refuses_without_yes_and_without_a_terminal(env_dir: Path,
                                                                 tmp_path: Path) -> None:
    result = run("down", "--volumes", env_dir=env_dir, tmp_path=tmp_path)
    assert result.returncode == 2
    assert "refusing without a terminal" in result.stderr and "--yes" in result.stderr


@pytest.mark.parametrize("task", ["up", "down", "restart", "ps", "logs", "pull", "status",
                                  "volumes.fix"])
def test_every_parameter_has_help(task: str, env_dir: Path, tmp_path: Path) -> None:
    result = run("--help", task, env_dir=env_dir, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    options = [line for line in result.stdout.splitlines() if line.strip().startswith("-")]
    assert options
    for line in options:  # "  -s STRING, --stack=STRING   <help>": no help, no text after
        assert re.match(r"\s*-\S.*?\s{2,}\S", line), f"{task}: {line!r} has no help"


def test_an_unknown_stack_is_named_with_the_choices(env_dir: Path, tmp_path: Path) -> None:
    result = run("up", "--stack", "nope", "--dry", env_dir=env_dir, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "unknown stack 'nope'" in result.stderr and "traefik" in result.stderr


def test_up_through_fab_on_a_host_points_to_deploy() -> None:
    """`fab -H box up` would hand the host compose files rendered here: refused, with the
    command that does it (deploy)."""
    from fabric import Connection
    from invoke import Exit

    from tasks.lifecycle import pull, up

    for task in (up, pull):
        with pytest.raises(Exit) as refused:
            task(Connection("media-box"))
        assert refused.value.code == 2
        assert "fab -H media-box deploy" in str(refused.value.message)
