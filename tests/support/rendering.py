"""Projects to render in tests: the default profile and a second, different one.

The second profile changes everything a template branches on: another domain, rootless
socket, an image mirror, ACME on and Zot serving TLS.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from infra import catalogue as cat
from infra.config import load_config
from infra.project import Project, load_project
from infra.render import RenderedStack

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROFILES = ("", "alt")
ACME_TEST_TOKEN = "test-token-not-a-secret-0123456789"
ALT_PROFILE = """\
DOMAIN=example.org
ROOTLESS=true
DOCKER_SOCKET=/run/user/1000/docker.sock
IMAGE_MIRROR=localhost:5000
ACME_ENABLED=true
ACME_EMAIL=admin@example.org
ACME_DNS_PROVIDER=cloudflare
ZOT_TLS_ENABLED=true
BIND_ADDRESS=127.0.0.2
"""


def make_env_dir(target: Path) -> Path:
    env = target / "env"
    env.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_ROOT / "env" / "defaults.env", env / "defaults.env")
    (env / "alt.env").write_text(ALT_PROFILE, encoding="utf-8")
    # the alt profile turns ACME on: it needs the DNS provider's credentials file
    credentials = env / "acme.env"
    credentials.write_text(f"CF_DNS_API_TOKEN={ACME_TEST_TOKEN}\n", encoding="utf-8")
    credentials.chmod(0o600)
    return env


def load(tmp: Path, profile: str = "", root: Path | None = None) -> Project:
    env = tmp / "env" if (tmp / "env").is_dir() else make_env_dir(tmp)
    environ = {"INFRA_ENV_DIR": str(env), "BUILD_DIR": str(tmp / "build"),
               "DATA_ROOT": str(tmp / "data"), "CERTS_DIR": str(tmp / "certs")}
    return load_project(profile or None, root=root, environ=environ)


def project_with(names: list[str], env_dir: Path, build_dir: Path, profile: str = ""
                 ) -> Project:
    """The project reduced to ``names`` and what they depend on (default settings, or a profile)."""
    raw_all = cat.load_raw(cat.stacks_dir(PROJECT_ROOT))
    wanted: set[str] = set()
    # routes behind SSO need the stack that provides it (catalogue.SSO_STACK) in the catalogue
    pending = [*names, *([cat.SSO_STACK] if cat.SSO_STACK in raw_all else [])]
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending += raw_all[name].get("depends_on") or []
    raw = {name: doc for name, doc in raw_all.items() if name in wanted}
    config = load_config(PROJECT_ROOT, profile, {"BUILD_DIR": str(build_dir)},
                         cat.secret_specs(raw), env_dir=env_dir)
    return Project(config, cat.resolve(raw, config.public, PROJECT_ROOT))


def single_stack_project(root: Path, stack: str) -> Project:
    """Default settings in ``root/env``, the catalogue reduced to ``stack`` and its dependencies."""
    (root / "env").mkdir(exist_ok=True)
    shutil.copy(PROJECT_ROOT / "env" / "defaults.env", root / "env" / "defaults.env")
    return project_with([stack], root / "env", root / "build")


def env_dir_with_profile(workdir: Path, name: str, text: str) -> Path:
    """``workdir/env`` holding the defaults and one profile ``name`` (for INFRA_ENV_DIR)."""
    env = workdir / "env"
    env.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_ROOT / "env" / "defaults.env", env / "defaults.env")
    (env / f"{name}.env").write_text(text, encoding="utf-8")
    return env


def compose_config(rendered: RenderedStack) -> dict:
    """The services of a rendered stack as the real `docker compose config` resolves them."""
    from tests.conftest import require, require_program

    require_program("docker")
    version = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True,
                             timeout=30)
    require(version.returncode == 0, "docker compose v2")
    result = subprocess.run(["docker", "compose", "-f", str(rendered.compose_file), "config",
                             "--format", "json"], capture_output=True, text=True, timeout=60,
                            cwd=rendered.directory)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]
