"""Boolean compose keys set from settings render as real booleans (or are left out)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.render import render_stacks
from tests.support.rendering import load, make_env_dir

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("setting", "expected"), [("true", True), ("false", None)])
def test_cadvisor_privileged_follows_its_setting(tmp_path: Path, setting: str,
                                                 expected: bool | None) -> None:
    (make_env_dir(tmp_path) / "flag.env").write_text(f"CADVISOR_PRIVILEGED_ENABLED={setting}\n")
    project = load(tmp_path, "flag")
    compose = yaml.safe_load(render_stacks(project, ["monitoring"], write=False)["monitoring"]
                             .files["compose.yaml"])
    assert compose["services"]["cadvisor"].get("privileged") is expected
    others = [name for name, svc in compose["services"].items() if svc.get("privileged")]
    assert others == (["cadvisor"] if expected else [])
