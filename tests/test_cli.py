"""The command line as a user meets it: `invoke --list`, `invoke config`, clean errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from infra.envfile import read_env_file

pytestmark = pytest.mark.unit
INVOKE = [sys.executable, "-m", "invoke"]


def run(args: list[str], project_root: Path, env_dir: Path, **env: str
        ) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "INFRA_PROFILE"}
    environ.update({"INFRA_ENV_DIR": str(env_dir), "COLUMNS": "200", **env})
    return subprocess.run(args, cwd=project_root, env=environ, capture_output=True, text=True,
                          timeout=120)


def test_list_shows_namespaces_with_one_line_help(project_root: Path, env_dir: Path) -> None:
    result = run([*INVOKE, "--list"], project_root, env_dir)
    assert result.returncode == 0, result.stderr
    for name in ("up", "config.check", "config.show (config)"):
        assert name in result.stdout
    task_lines = [line for line in result.stdout.splitlines()[2:] if line.startswith("  ")
                  and not line.startswith("    ")]
    for line in task_lines:
        name, _, summary = line.strip().partition("  ")
        assert summary.strip(), f"task {name} has no help summary"


def test_fab_sees_the_same_tasks(project_root: Path, env_dir: Path) -> None:
    invoke_list = run([*INVOKE, "--list", "--list-format=json"], project_root, env_dir)
    fab_list = run([sys.executable, "-m", "fabric", "--list", "--list-format=json"],
                   project_root, env_dir)
    assert fab_list.returncode == 0, fab_list.stderr
    fab_tree, invoke_tree = json.loads(fab_list.stdout), json.loads(invoke_list.stdout)
    for key in ("tasks", "collections", "default"):
        assert fab_tree[key] == invoke_tree[key]


def test_config_on_fresh_clone_creates_secrets_and_masks_them(project_root: Path,
                                                              env_dir: Path) -> None:
    result = run([*INVOKE, "config"], project_root, env_dir)
    assert result.returncode == 0, result.stderr
    assert "DOMAIN" in result.stdout and "localhost" in result.stdout
    secrets_path = env_dir / "secrets.env"
    if secrets_path.exists():  # present as soon as a stack declares a secret
        assert stat.S_IMODE(secrets_path.stat().st_mode) == 0o600
        entries, _ = read_env_file(secrets_path)
        assert entries
        for entry in entries:
            assert entry.value not in result.stdout + result.stderr
        assert "********" in result.stdout


def test_bad_profile_exits_non_zero_without_traceback(project_root: Path, env_dir: Path) -> None:
    (env_dir / "broken.env").write_text("DOMAN=example.org\nGRAFANA_PORT=99999\n")
    result = run([*INVOKE, "config.check", "--profile", "broken"], project_root, env_dir)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "did you mean DOMAIN" in result.stderr
    assert "broken.env:2: GRAFANA_PORT" in result.stderr
    assert not (env_dir / "secrets.env").exists()


def test_profile_from_environment_variable_on_cli(project_root: Path, env_dir: Path) -> None:
    (env_dir / "lab.env").write_text("DOMAIN=lab.example.org\n")
    result = run([*INVOKE, "config"], project_root, env_dir, INFRA_PROFILE="lab")
    assert result.returncode == 0, result.stderr
    assert "lab.example.org" in result.stdout and "profile" in result.stdout


def test_every_task_has_help(project_root: Path, env_dir: Path) -> None:
    listing = json.loads(run([*INVOKE, "--list", "--list-format=json"], project_root,
                             env_dir).stdout)

    def names(collection: dict, prefix: str = "") -> list[str]:
        found = [prefix + t["name"] for t in collection["tasks"]]
        for sub in collection["collections"]:
            found += names(sub, prefix + sub["name"] + ".")
        return found

    for name in names(listing):
        shown = run([*INVOKE, "--help", name], project_root, env_dir)
        assert shown.returncode == 0, shown.stderr
        docstring = shown.stdout.split("Docstring:")[1].strip()
        assert docstring and not docstring.startswith("none"), f"{name} has no docstring"


def test_setup_compiles_the_task_modules_invoke_would_not(project_root: Path, env_dir: Path,
                                                          tmp_path: Path) -> None:
    """invoke sets sys.dont_write_bytecode: only `invoke setup` leaves bytecode behind, so the
    next starts load it instead of compiling every module again."""
    import shutil

    from tests.conftest import require_program

    require_program("docker")
    copy = tmp_path / "project"
    for folder in ("tasks", "infra"):
        shutil.copytree(project_root / folder, copy / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    listed = run([*INVOKE, "--list"], copy, env_dir)
    assert listed.returncode == 0, listed.stderr
    assert not list(copy.rglob("*.pyc"))  # invoke itself wrote none
    home = tmp_path / "home"  # a compose link, if setup makes one, goes here
    home.mkdir()
    result = run([*INVOKE, "setup"], copy, env_dir, PYTHONDONTWRITEBYTECODE="1", HOME=str(home))
    assert result.returncode == 0, result.stderr
    sources = {p.relative_to(copy).with_suffix("") for p in copy.rglob("*.py")}
    compiled = {p.parent.parent.relative_to(copy) / p.name.split(".")[0]
                for p in copy.rglob("__pycache__/*.pyc")}
    assert sources and sources == compiled


def test_plan_and_config_as_json_hold_what_the_tables_show(project_root: Path,
                                                           env_dir: Path) -> None:
    """One parseable document each, versioned, with the same rows the tables print, and no
    secret value."""
    from infra import plan as views
    from infra.project import load_project

    project = load_project(None, environ={"INFRA_ENV_DIR": str(env_dir)}, write=False)
    planned = run([*INVOKE, "plan", "--format", "json"], project_root, env_dir)
    assert planned.returncode == 0, planned.stderr
    document = json.loads(planned.stdout)
    assert json.loads(run([*INVOKE, "plan", "--json"], project_root, env_dir).stdout) == document
    assert (document["v"], document["kind"]) == (1, "plan")
    routes = document["sections"]["hostnames"]
    table = views.route_rows(project.catalogue, project.config["SSO_GROUPS"])
    assert [tuple(r.values()) for r in routes] == [tuple(r) for r in table]
    assert routes[0].keys() == {"host", "path", "stack", "service", "protected_by", "who",
                                "apps_login", "reason"}
    ports = document["sections"]["ports"]
    assert all(p["why_and_what_guards_it"] for p in ports)
    rendered = run([*INVOKE, "render"], project_root, env_dir,
                   BUILD_DIR=str(env_dir.parent / "build"))  # saves the secrets
    assert rendered.returncode == 0, rendered.stderr
    shown = run([*INVOKE, "config", "--json"], project_root, env_dir)
    assert shown.returncode == 0, shown.stderr
    config = json.loads(shown.stdout)
    assert (config["v"], config["kind"]) == (1, "config")
    settings = {s["key"]: s for s in config["settings"]}
    assert settings["DOMAIN"]["value"] == "localhost"
    assert settings["DOMAIN"]["source"] == "default"
    entries, _ = read_env_file(env_dir / "secrets.env")
    secrets = {e.key: e.value for e in entries}
    assert secrets  # generated on first need
    for key, value in secrets.items():
        assert value not in shown.stdout, key
        assert settings[key]["source"] == "secret"


def test_invokes_own_dry_flag_is_the_tasks_dry_run(project_root: Path, env_dir: Path) -> None:
    """`invoke --dry render` plans and writes nothing (not even the secrets); a task without a
    dry run refuses `--dry` instead of echoing its commands half-run."""
    build = env_dir.parent / "build"
    rendered = run([*INVOKE, "--dry", "render"], project_root, env_dir, BUILD_DIR=str(build))
    assert rendered.returncode == 0, rendered.stderr
    assert "dry run, nothing written" in rendered.stdout
    assert not build.exists() and not (env_dir / "secrets.env").exists()
    refused = run([*INVOKE, "--dry", "status"], project_root, env_dir)
    assert refused.returncode == 2 and "status has no dry run" in refused.stderr
    assert "Traceback" not in refused.stderr
