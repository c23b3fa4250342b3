"""Every certificate a rendered stack mounts is a file `invoke certs` really produces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.render import render_stacks
from tests.support.rendering import load, make_env_dir

pytestmark = pytest.mark.tools


@pytest.mark.parametrize("profile", ["", "alt"])
def test_mounted_certificates_exist_after_invoke_certs(tmp_path: Path, project_root: Path,
                                                       profile: str) -> None:
    env_dir = make_env_dir(tmp_path)
    certs_dir = tmp_path / "certs"
    environ = {**os.environ, "INFRA_ENV_DIR": str(env_dir), "CERTS_DIR": str(certs_dir),
               "INFRA_PROFILE": profile}
    made = subprocess.run([sys.executable, "-m", "invoke", "certs"], cwd=project_root,
                          env=environ, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    project = load(tmp_path, profile)
    mounted: list[Path] = []
    for rendered in render_stacks(project).values():
        compose = yaml.safe_load(rendered.files["compose.yaml"])
        for service in compose["services"].values():
            for volume in service.get("volumes", []):
                source = Path(str(volume).split(":")[0])
                if source.is_relative_to(certs_dir):
                    mounted.append(source)
    assert mounted, "the stacks mount at least the ingress certificate"
    missing = [str(p) for p in mounted if not p.is_file()]
    assert not missing, f"mounted but never produced by `invoke certs`: {missing}"
