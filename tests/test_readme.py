"""The README's promises: two commands, and the task list exactly as `invoke --list` shows it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.dev import readme_ports, readme_with_block, readme_with_task_list

pytestmark = pytest.mark.unit


def test_task_list_is_current(project_root: Path) -> None:
    listing = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=project_root,
                             capture_output=True, text=True, check=True).stdout
    readme = (project_root / "README.md").read_text()
    assert readme_with_task_list(readme, listing) == readme, \
        "README.md's task list is stale: run `invoke docs`"


def test_published_ports_table_is_current(project_root: Path) -> None:
    readme = (project_root / "README.md").read_text()
    assert "<!-- ports:begin -->" in readme
    assert readme_with_block(readme, "ports", readme_ports()) == readme, \
        "README.md's published-ports table is stale: run `invoke docs`"


def test_exactly_two_commands_and_ci_runs_the_test_one(project_root: Path) -> None:
    readme = (project_root / "README.md").read_text()
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the two commands are in a bash block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()
                if line.split("#")[0].strip()]
    assert commands == ["make up", "make test"]
    ci = (project_root / ".ci" / "run").read_text()
    assert "make test" in ci
