"""Shared fixtures. Under CI (CI=true) a missing engine or tool is a failure, never a skip."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, what: str) -> None:
    """Skip locally when a prerequisite is missing; fail under CI, where .ci/run installs it."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing under CI: .ci/run must install/start it")
    pytest.skip(f"{what} is not available here")


def require_program(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"program {name!r}")
    return path or name


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """The running engine's version; the test fails under CI when none answers."""
    require_program("docker")
    probe = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                           capture_output=True, text=True, timeout=30)
    require(probe.returncode == 0, "a running Docker engine")
    return probe.stdout.strip()


@pytest.fixture
def env_dir(tmp_path: Path) -> Path:
    """A private copy of env/ (defaults only) so tests never touch the real secrets."""
    target = tmp_path / "env"
    target.mkdir()
    shutil.copy(PROJECT_ROOT / "env" / "defaults.env", target / "defaults.env")
    return target


def program_of_this_python(name: str) -> str:
    """A console script installed beside the interpreter running the tests (invoke, fab,
    compose-lint): whichever environment that is, never a path written into a test."""
    import sys

    return str(Path(sys.executable).parent / name)
