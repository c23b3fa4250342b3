"""Broken or hostile input ends with a message naming where, and exit 2: never a traceback.

Issue 14's classes, as far as they are closed: tracebacks on unreadable input, rich markup in
values, catalogue documents of the wrong shape, options of the wrong type.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra import catalogue as cat
from infra.config import load_config
from infra.errors import ConfigError
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[1]


def invoke(env_dir: Path, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRA_")}
    env.update({"INFRA_ENV_DIR": str(env_dir), "BUILD_DIR": str(env_dir.parent / "build"),
                **environ})
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("case", ["not-utf8", "directory"])
def test_an_unreadable_profile_is_an_input_error(env_dir: Path, case: str) -> None:
    profile = env_dir / "bad.env"
    if case == "directory":
        profile.mkdir()
    else:
        profile.write_bytes(b"DOMAIN=example.org\nTZ=\xff\xfe\n")
    result = invoke(env_dir, "config.check", "--profile", "bad")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "bad.env" in result.stderr
    assert ("not UTF-8" if case == "not-utf8" else "has no file") in result.stderr


def test_a_secrets_file_that_is_a_directory_is_an_input_error(env_dir: Path) -> None:
    (env_dir / "secrets.env").mkdir()
    result = invoke(env_dir, "render")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "secrets.env" in result.stderr and "is a directory" in result.stderr


def test_rich_markup_in_a_value_is_shown_as_text(env_dir: Path) -> None:
    result = invoke(env_dir, "config", CA_NAME="[/bold]", COLUMNS="200")
    assert result.returncode == 0, result.stderr
    assert "[/bold]" in result.stdout and "Traceback" not in result.stderr


def test_an_option_of_the_wrong_type_is_an_input_error(env_dir: Path) -> None:
    result = invoke(env_dir, "logs", "--tail", "abc")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--tail: 'abc' is not a whole number" in result.stderr
    assert "Traceback" not in result.stderr


def _catalogue(tmp_path: Path, stack: object) -> Path:
    stacks = tmp_path / "stacks" / "odd"
    stacks.mkdir(parents=True)
    (stacks / "stack.yaml").write_text(yaml.safe_dump(stack))
    return stacks.parent


@pytest.mark.parametrize("stack, said", [
    (["a", "list"], "a stack is a mapping"),
    ({"name": "odd", "services": ["web"]}, "a stack is a mapping"),
    ({"name": "odd", "services": {"web": {"image": "x:1", "routes": [{"port": 80}]}}},
     "has no host"),
    ({"name": "odd", "services": {"web": {"image": "x:1",
                                          "ports": [{"published": "eighty", "target": 80}]}}},
     "'eighty' of web is not a TCP/UDP port"),
    ({"name": "odd", "services": {"web": {"image": "x:1", "health": "curl"}}},
     "wrong type"),
])
def test_a_stack_of_the_wrong_shape_names_its_file(tmp_path: Path, stack: object,
                                                   said: str) -> None:
    directory = _catalogue(tmp_path, stack)
    with pytest.raises(ConfigError) as error:
        cat.resolve(cat.load_raw(directory), {})
    assert said in str(error.value) and "stacks/odd/stack.yaml" in str(error.value)


def test_the_whole_catalogue_still_loads(tmp_path: Path) -> None:
    require((ROOT / "stacks").is_dir(), "the project's stacks/")
    config = load_config(ROOT, None, {}, env_dir=ROOT / "env")
    assert len(cat.resolve(cat.load_raw(ROOT / "stacks"), config.public).stacks) == 6


# ---------------------------------------------------------------- injection into rendered files


def test_every_setting_has_a_type_with_a_check() -> None:
    from infra.envfile import read_env_file
    from infra.settings import _CHECKERS, kind_of

    entries, _ = read_env_file(ROOT / "env" / "defaults.env")
    assert {e.key: kind_of(e.key) for e in entries if kind_of(e.key) not in _CHECKERS} == {}


@pytest.mark.parametrize("key, value", [
    ("MIMIR_TENANT", '1"\n}\nprometheus.exporter.self "x" {'),  # an Alloy component
    ("MIMIR_TENANT", "1\n"),
    ("DOMAIN", "example.org\n"),  # checked stripped, used raw: inside a Host() rule
    ("DOMAIN", " example.org"),
    ("GRAFANA_ADMIN_USER", "admin\nGF_AUTH_DISABLE_LOGIN_FORM=true"),
    ("CA_NAME", "Stack\tyard"),
    ("DOCKER_LOG_MAX_FILES", "abc"),
    ("ACME_CA_SERVER", "https://x/ \"y"),
])
def test_a_value_that_would_change_a_rendered_file_is_refused(
        env_dir: Path, key: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(ROOT, None, {key: value}, env_dir=env_dir)
    assert key in str(error.value)


# ---------------------------------------------------------------- silently wrong readings


R = "a login guards it"


@pytest.mark.parametrize("stack, said", [
    ({"name": "odd", "services": {"web": {"image": "x:1", "portz": []}}},
     "unknown key 'portz'"),
    ({"name": "odd", "services": {"web": {"image": "x:1", "volumes": [
        {"source": "d", "target": "/d", "ownr": "1:1"}]}}}, "did you mean owner?"),
    ({"name": "odd", "services": {"web": {"image": "x:1", "volumes": [
        {"source": "../../../etc", "target": "/etc", "owner": "0:0", "mode": "0777",
         "backup": "live"}]}}},
     "not a folder inside DATA_ROOT"),
    ({"name": "odd", "services": {"web": {"image": "x:1", "volumes": [
        {"source": "/etc", "target": "/etc", "owner": "0:0", "backup": "live"}]}}},
     "not a folder inside DATA_ROOT"),
    ({"name": "odd", "services": {
        "a": {"image": "x:1", "ports": [{"published": 8080, "target": 80, "reason": R}]},
        "b": {"image": "x:1", "ports": [{"published": 8080, "target": 81, "reason": R}]}}},
     "which odd.a publishes too"),
    ({"name": "odd", "services": {"web": {"image": "x:1", "read_only": "false"}}},
     "read_only of web is 'false', not true or false"),
    ({"name": "odd", "services": {"db": {"image": "x:1", "internal": True}}},
     "its stack has no internal_network"),
    ({"name": "odd", "internal_network": "odd_internal", "services": {"db": {
        "image": "x:1", "internal": True, "ports": [{"published": 5432, "target": 5432}]}}},
     "has routes or published ports"),
    ({"name": "odd", "services": {"web": {"image": "x:1", "ports": [
        {"published": 8080, "target": 80}]}}}, "published port 8080 gives no reason"),
    ({"name": "odd", "services": {"web": {"image": "busybox"}}}, "'busybox' has no tag"),
    ({"name": "odd", "services": {"web": {"image": "busybox:latest"}}}, "moving tag 'latest'"),
])
def test_what_would_be_read_wrong_is_an_error(tmp_path: Path, stack: object, said: str) -> None:
    directory = _catalogue(tmp_path, stack)
    with pytest.raises(ConfigError) as error:
        cat.resolve(cat.load_raw(directory), {})
    assert said in str(error.value) and "stacks/odd/stack.yaml" in str(error.value)


def test_a_key_given_twice_in_yaml_is_an_error(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks" / "odd"
    stacks.mkdir(parents=True)
    (stacks / "stack.yaml").write_text("name: odd\nservices:\n  web:\n    image: x:1\n"
                                       "    image: y:2\n")
    with pytest.raises(ConfigError) as error:
        cat.load_raw(stacks.parent)
    assert "'image' is given twice (first on line 4)" in str(error.value)
    assert "stack.yaml:5" in str(error.value)


@pytest.mark.parametrize("entry, said", [
    ({"address": "10.0.0.2", "rootless": "false"}, "rootless 'false' is not true or false"),
    ({"address": "10.0.0.2", "settings": {"DATA_ROOT": None}}, "DATA_ROOT has no single value"),
])
def test_an_inventory_value_of_the_wrong_kind_is_an_error(entry: dict, said: str) -> None:
    from infra.inventory import parse_inventory

    with pytest.raises(ConfigError) as error:
        parse_inventory({"hosts": {"h1": entry}}, "inventory.yaml", [], ["DATA_ROOT"])
    assert said in str(error.value)


def test_a_stack_secret_cannot_shadow_a_setting(env_dir: Path) -> None:
    from infra.secrets import SecretSpec

    with pytest.raises(ConfigError) as error:
        load_config(ROOT, None, {}, [SecretSpec("DOMAIN", 32)], env_dir=env_dir)
    assert "DOMAIN" in str(error.value) and "also a setting" in str(error.value)


# ---------------------------------------------------------------- host commands


def test_a_hostile_daemon_json_path_stays_a_path(tmp_path: Path) -> None:
    """The backup copy once ran `cp -p PATH ...` unquoted: a `;` in --path ran a command."""
    from infra.host import daemon_json as dj
    from infra.host.actions import Run

    marker = tmp_path / "pwned"
    path = str(tmp_path / "daemon.json; touch pwned")  # run in tmp_path: would make marker
    Path(path).write_text('{"debug": true}\n')
    facts = dj.DaemonJsonFacts(path, '{"debug": true}\n')
    plan, _ = dj.plan_daemon_json(facts, {"log-level": "warn"}, "x", None, sudo=False)
    copies = [s for action in plan.actions for s in action.steps
              if isinstance(s, Run) and s.command.startswith("cp ")]
    assert copies
    for run in copies:
        subprocess.run(["sh", "-c", run.command], check=True, cwd=tmp_path)
    assert not marker.exists() and Path(f"{path}.bak-x").read_text() == '{"debug": true}\n'


def test_daemon_json_path_must_be_absolute(env_dir: Path) -> None:
    result = invoke(env_dir, "docker.daemon-json", "--dry", "--path", "x;id")
    assert result.returncode == 2 and "is not an absolute path" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- dry runs write nothing


def test_dry_runs_and_read_only_tasks_write_nothing(env_dir: Path) -> None:
    """Not even env/secrets.env on a fresh clone (secrets are made up in memory for the run)."""
    for args in (("render", "--dry"), ("plan",), ("config.check",), ("config",)):
        result = invoke(env_dir, *args)
        assert result.returncode == 0, (args, result.stdout + result.stderr)
        assert sorted(p.name for p in env_dir.iterdir()) == ["defaults.env"], args
        assert not (env_dir.parent / "build").exists(), args
    written = invoke(env_dir, "render")
    assert written.returncode == 0 and (env_dir / "secrets.env").is_file(), written.stderr


# ---------------------------------------------------------------- races


def test_a_second_run_waits_for_the_first_and_uses_its_secrets(env_dir: Path) -> None:
    """A first run is generating the secrets (this test holds the lock, as it would); a render
    started meanwhile waits, says for whom, then uses the secrets the first one saved instead
    of making its own."""
    import time

    from infra.fsutil import locked

    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRA_")}
    env.update({"INFRA_ENV_DIR": str(env_dir), "BUILD_DIR": str(env_dir.parent / "build")})
    chosen = "Q" * 40
    with locked(env_dir, "secrets.env"):
        render = subprocess.Popen([sys.executable, "-m", "invoke", "render"], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)  # long enough to have raced ahead, were there no lock
        assert render.poll() is None  # still waiting
        secrets = env_dir / "secrets.env"
        secrets.write_text(f"GRAFANA_ADMIN_PASSWORD={chosen}\n")
        secrets.chmod(0o600)
    out, err = render.communicate(timeout=120)
    assert render.returncode == 0, out + err
    assert "waiting for stackyard pid" in err and "secrets.env" in err
    grafana = (env_dir.parent / "build" / "default" / "stacks" / "monitoring" / "secrets"
               / "files" / "grafana" / "GRAFANA_ADMIN_PASSWORD")
    assert grafana.read_text() == chosen


# ---------------------------------------------------------------- reach: explicit opt-in


@pytest.mark.parametrize("setting, value, choice", [
    ("BIND_ADDRESS", "0.0.0.0", "bind-all"),
    ("PUID", "0", "root-ids"),
    ("DATA_ROOT", "/", "data-root"),
    ("DATA_ROOT", "/etc", "data-root"),
])
def test_a_wide_choice_needs_its_opt_in(env_dir: Path, setting: str, value: str,
                                        choice: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(ROOT, None, {setting: value}, env_dir=env_dir)
    assert setting in str(error.value) and f"add {choice} to ALLOW_UNSAFE" in str(error.value)
    config = load_config(ROOT, None, {setting: value, "ALLOW_UNSAFE": choice}, env_dir=env_dir)
    assert config[setting] == value


def test_a_data_root_link_to_a_system_folder_needs_its_opt_in(env_dir: Path,
                                                              tmp_path: Path) -> None:
    link = tmp_path / "data"
    link.symlink_to("/")
    with pytest.raises(ConfigError) as error:
        load_config(ROOT, None, {"DATA_ROOT": str(link)}, env_dir=env_dir)
    assert "resolves to /" in str(error.value)


def test_config_check_refuses_what_certs_would_refuse(env_dir: Path) -> None:
    """An RSA key of 256 bits passes each setting's own check; certs refuses the pair."""
    result = invoke(env_dir, "config.check", CA_KEY_ALGO="rsa", CA_KEY_SIZE="256")
    assert result.returncode == 2 and "CA_KEY_SIZE" in result.stderr, result.stderr


def test_a_credential_an_env_file_cannot_carry_is_refused_by_name(env_dir: Path) -> None:
    """A quote in a value once broke the 0600 env file, and compose's error showed part of it."""
    from infra.config import read_credentials

    token = "abc'def-0123456789"
    credentials = env_dir / "acme.env"
    credentials.write_text(f"CF_DNS_API_TOKEN={token}\n")
    credentials.chmod(0o600)
    _, problems = read_credentials(credentials, "ACME_CREDENTIALS_PATH", "env/acme.env")
    [problem] = problems
    assert problem.key == "CF_DNS_API_TOKEN" and problem.line == 1
    assert token not in str(problem) and "single quote" in str(problem)


@pytest.mark.parametrize("setting, value", [("BIND_ADDRESS", "::0"),
                                            ("BIND_ADDRESS", "0:0:0:0:0:0:0:0"),
                                            ("PUID", "00"), ("PGID", "000")])
def test_an_opt_in_is_not_dodged_by_another_spelling(env_dir: Path, setting: str,
                                                     value: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(ROOT, None, {setting: value}, env_dir=env_dir)
    assert "ALLOW_UNSAFE" in str(error.value)


def test_relative_key_and_ca_paths_are_the_project_s(env_dir: Path) -> None:
    """With the default CERTS_DIR=certs, the shell and the engine get absolute paths: the
    ownership step runs in DATA_ROOT, and docker resolves a relative bind source elsewhere."""
    from infra.bringup.ownership import key_copies
    from infra.bringup.probes import tls_checks
    from infra.project import load_project

    project = load_project(None, environ={"INFRA_ENV_DIR": str(env_dir)}, write=False)
    assert project.config["CERTS_DIR"] == "certs"
    traefik = project.catalogue["traefik"]
    [copy] = key_copies([traefik])
    assert copy.source == str(ROOT / "certs" / "ingress-key.pem")
    [check] = tls_checks(traefik)
    assert check.ca == str(ROOT / "certs" / "ca.pem")


def test_a_lock_whose_holder_was_killed_is_taken_over_and_said(tmp_path: Path,
                                                               capfd: pytest.CaptureFixture[str]
                                                               ) -> None:
    """SIGKILL while holding the lock: the kernel released it; the next run takes it at once
    and says whose it was."""
    script = ("import os, signal, sys; from pathlib import Path; "
              "from infra.fsutil import locked\n"
              f"with locked(Path({str(tmp_path)!r}), 'secrets'):\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[1],
                            timeout=60)
    assert killed.returncode == -9
    from infra.fsutil import locked

    with locked(tmp_path, "secrets"):
        pass
    said = capfd.readouterr().err
    assert "took over the lock of stackyard pid" in said and "no longer running" in said
    with locked(tmp_path, "secrets"):  # released cleanly this time: nothing to say
        pass
    assert "took over" not in capfd.readouterr().err


def test_a_temp_file_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path: Path
                                                                           ) -> None:
    from infra.fsutil import STALE_TEMP_SECONDS, atomic_write

    target = tmp_path / "secrets.env"
    left = tmp_path / ".secrets.env.abc123.tmp"
    left.write_text("half a secr")
    old = os.stat(left).st_mtime - STALE_TEMP_SECONDS - 5
    os.utime(left, (old, old))
    fresh = tmp_path / ".secrets.env.def456.tmp"  # a writer at work right now: kept
    fresh.write_text("being written")
    atomic_write(target, "A=1\n", 0o600)
    assert not left.exists() and fresh.exists()
    assert target.read_text() == "A=1\n"
