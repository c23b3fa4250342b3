"""What a user reads when `up` fails, on a real engine: each cause once, the fix last.

The engine here reaches no registry (IMAGE_MIRROR points at a closed port), as on a fresh
machine without network: the three services of the ingress stack cannot be pulled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.engine


def _networks() -> set[str]:
    return set(subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"],
                              capture_output=True, text=True, check=True).stdout.split())


def test_a_pull_that_fails_for_three_services_is_one_cause_with_the_fix_last(
        tmp_path: Path, docker_engine: str) -> None:
    env = tmp_path / "env"
    env.mkdir()
    shutil.copy(PROJECT_ROOT / "env" / "defaults.env", env / "defaults.env")
    events = tmp_path / "events.ndjson"
    before = _networks()
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("INFRA_")},
               "INFRA_ENV_DIR": str(env), "BUILD_DIR": str(tmp_path / "build"),
               "DATA_ROOT": str(tmp_path / "data"), "CERTS_DIR": str(tmp_path / "certs"),
               "IMAGE_MIRROR": "127.0.0.1:1", "COLUMNS": "120"}
    try:
        result = subprocess.run([sys.executable, "-m", "invoke", "up", "--stack", "traefik",
                                 "--events", str(events)], cwd=PROJECT_ROOT, env=environ,
                                capture_output=True, text=True, timeout=300)
    finally:
        for network in _networks() - before:
            subprocess.run(["docker", "network", "rm", network], capture_output=True)
    text = result.stdout + result.stderr
    assert result.returncode == 1, text
    lines = text.strip().splitlines()
    assert len(lines) < 40, text
    assert "\x1b[" not in text  # no terminal: no control codes
    causes = [line for line in lines if "connection refused" in line]
    assert len(causes) == 1, text  # the engine's one error, once
    assert all(f"traefik/{s}" in causes[0] for s in ("traefik", "ingress-docker-api",
                                                      "landing")), causes
    assert lines[-1].startswith("fix: ") and "IMAGE_MIRROR" in lines[-1], lines[-3:]
    assert "images could not be pulled" in lines[-2], lines[-3:]
    # one plain line per state change of the stack
    assert [line for line in lines if line.startswith("traefik: ")] == [
        line for line in lines if line.startswith("traefik: ")][:2]
    assert any(line.startswith("traefik: failed") for line in lines)
    # the events end with the same causes
    last = json.loads(events.read_text().splitlines()[-1])
    assert last["event"] == "done" and last["ok"] is False
    assert last["stacks"] == {"traefik": "failed"}
    assert last["failure"]["summary"] in lines[-2]
    assert last["failure"]["fixes"] == [lines[-1].removeprefix("fix: ")]
