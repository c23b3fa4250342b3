"""Configuration: layering, sources, secrets, and errors a user can act on."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from infra.config import HostLayer, load_config
from infra.errors import ConfigError
from infra.secrets import SecretSpec

pytestmark = pytest.mark.unit

SPECS = [SecretSpec("DB_PASSWORD"), SecretSpec("API_TOKEN", length=48, alphabet="hex")]


def load(root: Path, env_dir: Path, profile: str | None = None, environ=None, specs=None):
    return load_config(root, profile, environ or {}, SPECS if specs is None else specs,
                       env_dir=env_dir)


def write_profile(env_dir: Path, text: str, name: str = "test") -> Path:
    path = env_dir / f"{name}.env"
    path.write_text(text)
    return path


def test_defaults_load_with_sources(project_root: Path, env_dir: Path) -> None:
    config = load(project_root, env_dir)
    assert config["DOMAIN"] == "localhost"
    assert config.settings["DOMAIN"].source == "default"
    assert config.settings["DOMAIN"].origin.endswith("defaults.env:16") or ":" in \
        config.settings["DOMAIN"].origin
    assert config.settings["DB_PASSWORD"].source == "secret"


def test_profile_then_environment_override(project_root: Path, env_dir: Path) -> None:
    write_profile(env_dir, "DOMAIN=home.example.org\nTZ=Europe/Berlin\n")
    config = load(project_root, env_dir, "test", environ={"TZ": "America/New_York"})
    assert config["DOMAIN"] == "home.example.org"
    assert config.settings["DOMAIN"].source == "profile"
    assert config.settings["DOMAIN"].origin.endswith("test.env:1")
    assert config["TZ"] == "America/New_York"
    assert config.settings["TZ"].source == "environment"


def test_a_host_is_a_layer_over_the_environment_with_its_own_origin(
        project_root: Path, env_dir: Path) -> None:
    """An inventory host's settings are their own layer (not invented environment entries):
    over the environment, named by the inventory, and validated like every other layer."""
    config = load(project_root, env_dir, environ={"TZ": "America/New_York"})
    layer = HostLayer("media-box", {"TZ": "Europe/Berlin"},
                      paths=lambda values: {"DATA_ROOT": f"/srv/{values['TZ'][:6].lower()}"})
    there = config.for_host(layer)
    assert there.host == "media-box" and config.host == ""
    assert there["TZ"] == "Europe/Berlin"
    assert there.settings["TZ"].source == "host"
    assert there.settings["TZ"].origin == "env/inventory.yaml (hosts.media-box.settings)"
    assert there["DATA_ROOT"] == "/srv/europe"  # decided from the merged values
    assert there.settings["DATA_ROOT"].origin == "deploy to media-box"
    assert there.secrets == config.secrets
    with pytest.raises(ConfigError) as bad:
        config.for_host(HostLayer("media-box", {"TZ": "Mars/Olympus\nx"}))
    assert bad.value.problems[0].key == "TZ"
    assert "inventory.yaml" in bad.value.problems[0].file


def test_profile_from_environment_variable(project_root: Path, env_dir: Path) -> None:
    write_profile(env_dir, "DOMAIN=lab.example.org\n", name="lab")
    config = load(project_root, env_dir, environ={"INFRA_PROFILE": "lab"})
    assert config.profile == "lab"
    assert config["DOMAIN"] == "lab.example.org"


def test_every_default_is_valid_and_commented(project_root: Path) -> None:
    lines = (project_root / "env" / "defaults.env").read_text().splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith("#"):
            above = index - 1  # a comment may cover a block of consecutive keys
            while above >= 0 and lines[above] and not lines[above].startswith("#"):
                above -= 1
            assert above >= 0 and lines[above].startswith("#"), f"line {index + 1} ({line}) " \
                "has no comment above it"


def test_secrets_generated_once_0600_and_never_overwritten(project_root: Path,
                                                           env_dir: Path) -> None:
    first = load(project_root, env_dir)
    path = env_dir / "secrets.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert set(first.generated_secrets) == {"DB_PASSWORD", "API_TOKEN"}
    assert len(first["DB_PASSWORD"]) == 32 and first["DB_PASSWORD"].isalnum()
    assert len(first["API_TOKEN"]) == 48 and set(first["API_TOKEN"]) <= set("0123456789abcdef")
    before = path.read_bytes()
    second = load(project_root, env_dir)
    assert second.generated_secrets == ()
    assert path.read_bytes() == before
    assert second["DB_PASSWORD"] == first["DB_PASSWORD"]


def test_new_secret_is_added_without_touching_existing(project_root: Path, env_dir: Path) -> None:
    first = load(project_root, env_dir)
    more = [*SPECS, SecretSpec("NEW_ONE")]
    second = load(project_root, env_dir, specs=more)
    assert second.generated_secrets == ("NEW_ONE",)
    assert second["DB_PASSWORD"] == first["DB_PASSWORD"]


def test_loose_secrets_file_is_tightened(project_root: Path, env_dir: Path) -> None:
    load(project_root, env_dir)
    os.chmod(env_dir / "secrets.env", 0o644)
    load(project_root, env_dir)
    assert stat.S_IMODE((env_dir / "secrets.env").stat().st_mode) == 0o600


def test_two_secrets_differ_and_runs_differ(project_root: Path, tmp_path: Path,
                                            env_dir: Path) -> None:
    config = load(project_root, env_dir)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    (other_dir / "defaults.env").write_text((env_dir / "defaults.env").read_text())
    other = load(project_root, other_dir)
    assert config["DB_PASSWORD"] != other["DB_PASSWORD"]


def test_public_view_hides_secrets(project_root: Path, env_dir: Path) -> None:
    config = load(project_root, env_dir)
    assert "DB_PASSWORD" not in config.public
    assert config.secrets["DB_PASSWORD"] == config["DB_PASSWORD"]


def test_no_default_password_in_repository(project_root: Path) -> None:
    text = (project_root / "env" / "defaults.env").read_text()
    for forbidden in ("SuperSecret1", "PASSWORD=admin", "admin/admin"):
        assert forbidden not in text


# ---------------------------------------------------------------- bad input: one case each

BAD_PROFILES = [
    # (profile text, expected key, expected words in the message or fix, line)
    ("DOMAN=example.org\n", "DOMAN", "did you mean DOMAIN", 1),
    ("this is not a setting\n", "", "cannot parse", 1),
    ("# ok\nDOMAIN\n", "", "cannot parse", 2),
    ("DOMAIN=Not_A_Domain!\n", "DOMAIN", "not a valid domain", 1),
    ("DOMAIN=-bad.example.org\n", "DOMAIN", "not a valid domain", 1),
    ("ACME_EMAIL=not-an-email\n", "ACME_EMAIL", "not a valid e-mail", 1),
    ("GRAFANA_PORT=70000\n", "GRAFANA_PORT", "not a TCP port", 1),
    ("GRAFANA_PORT=http\n", "GRAFANA_PORT", "not a TCP port", 1),
    ("PUID=-1\n", "PUID", "not a user or group id", 1),
    ("PGID=abc\n", "PGID", "not a user or group id", 1),
    ("DATA_ROOT=/mnt/data:rw\n", "DATA_ROOT", "breaks docker volume specs", 1),
    ("DATA_ROOT=/mnt/../etc\n", "DATA_ROOT", "'..'", 1),
    ("DOCKER_SOCKET=run/docker.sock\n", "DOCKER_SOCKET", "not an absolute path", 1),
    ("LOKI_IMAGE=grafana/loki:latest\n", "LOKI_IMAGE", "latest", 1),
    ("LOKI_IMAGE=grafana/loki\n", "LOKI_IMAGE", "has no tag", 1),
    ("LOKI_IMAGE=Grafana Loki 3\n", "LOKI_IMAGE", "not a valid image reference", 1),
    ("DOMAIN=\n", "DOMAIN", "required", 1),
    ("ROOTLESS=maybe\n", "ROOTLESS", "not a yes/no value", 1),
    ("TZ=Mars/Olympus\n", "TZ", "not a known time zone", 1),
    ("BIND_ADDRESS=localhost\n", "BIND_ADDRESS", "not an IP address", 1),
    ("IMAGE_MIRROR=http://localhost:5000\n", "IMAGE_MIRROR", "not a registry address", 1),
    ("HEALTH_TIMEOUT=0\n", "HEALTH_TIMEOUT", "seconds", 1),
    ("UMASK=999\n", "UMASK", "not a umask", 1),
    ("CA_COUNTRY=usa\n", "CA_COUNTRY", "country code", 1),
    ("REGISTRY_EXTRA_HOSTS=ok.example.org,,x\n", "REGISTRY_EXTRA_HOSTS", "empty entry", 1),
    ("DOMAIN=a.example.org\nDOMAIN=b.example.org\n", "DOMAIN", "set twice", 2),
    ("ACME_ENABLED=true\n", "ACME_EMAIL", "required when ACME_ENABLED", 0),
]


@pytest.mark.parametrize(("text", "key", "words", "line"), BAD_PROFILES,
                         ids=[case[0].strip().replace("\n", "|")[:40] for case in BAD_PROFILES])
def test_bad_profile_input_is_reported_and_nothing_written(
        project_root: Path, env_dir: Path, text: str, key: str, words: str, line: int) -> None:
    write_profile(env_dir, text)
    with pytest.raises(ConfigError) as caught:
        load(project_root, env_dir, "test")
    problems = caught.value.problems
    match = [p for p in problems if p.key == key and words.lower() in str(p).lower()]
    assert match, f"expected a problem about {key!r} mentioning {words!r}, got:\n{caught.value}"
    problem = match[0]
    assert problem.fix, "every problem says how to fix it"
    assert problem.file.endswith(("test.env", "defaults.env"))
    if line:
        assert problem.line == line
    assert not (env_dir / "secrets.env").exists(), "invalid input must write nothing"


def test_bad_value_from_environment_names_the_variable(project_root: Path, env_dir: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(project_root, env_dir, environ={"GRAFANA_PORT": "0"})
    assert "$GRAFANA_PORT" in str(caught.value)


def test_missing_profile_lists_available(project_root: Path, env_dir: Path) -> None:
    write_profile(env_dir, "DOMAIN=x.example.org\n", name="lab")
    with pytest.raises(ConfigError) as caught:
        load(project_root, env_dir, "prod")
    assert "lab" in str(caught.value) and "prod.env" in str(caught.value)


def test_reserved_profile_name_refused(project_root: Path, env_dir: Path) -> None:
    with pytest.raises(ConfigError, match="not a usable profile name"):
        load(project_root, env_dir, "secrets")


def test_all_problems_reported_at_once(project_root: Path, env_dir: Path) -> None:
    write_profile(env_dir, "DOMAIN=bad domain\nGRAFANA_PORT=99999\nPUID=x\n")
    with pytest.raises(ConfigError) as caught:
        load(project_root, env_dir, "test")
    assert {p.key for p in caught.value.problems} >= {"DOMAIN", "GRAFANA_PORT", "PUID"}


def test_corrupt_secrets_file_is_an_error_and_untouched(project_root: Path,
                                                        env_dir: Path) -> None:
    path = env_dir / "secrets.env"
    path.write_text("DB_PASSWORD=keep\nnot valid here\n")
    os.chmod(path, 0o600)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="cannot parse"):
        load(project_root, env_dir)
    assert path.read_bytes() == before


ACME_PROFILE = "ACME_ENABLED=true\nACME_EMAIL=admin@example.org\nACME_DNS_PROVIDER=cloudflare\n"


@pytest.mark.parametrize(("content", "mode", "words"), [
    (None, 0o600, "is missing"),
    ("CF_DNS_API_TOKEN=abc\n", 0o644, "readable by others (mode 644)"),
    ("# nothing yet\n", 0o600, "holds no KEY=value line"),
])
def test_acme_needs_a_private_credentials_file(project_root: Path, env_dir: Path,
                                               content: str | None, mode: int,
                                               words: str) -> None:
    write_profile(env_dir, ACME_PROFILE)
    credentials = env_dir / "acme.env"
    if content is not None:
        credentials.write_text(content)
        credentials.chmod(mode)
    with pytest.raises(ConfigError) as caught:
        load(project_root, env_dir, "test")
    (problem,) = [p for p in caught.value.problems if p.key == "ACME_CREDENTIALS_PATH"]
    assert words in problem.message and problem.file.endswith("acme.env")
    assert ("chmod 600" in problem.fix) and (content is None or "abc" not in str(caught.value))
    assert not (env_dir / "secrets.env").exists(), "invalid input must write nothing"


def test_acme_credentials_never_become_settings(project_root: Path, env_dir: Path) -> None:
    write_profile(env_dir, ACME_PROFILE + f"ACME_CREDENTIALS_PATH={env_dir}/dns.env\n")
    credentials = env_dir / "dns.env"
    credentials.write_text("CF_DNS_API_TOKEN=very-secret-token\n")
    credentials.chmod(0o600)
    config = load(project_root, env_dir, "test")
    assert config.credentials_path("ACME_CREDENTIALS_PATH") == credentials
    assert "very-secret-token" not in repr(config.settings)
    assert "CF_DNS_API_TOKEN" not in config.public and "CF_DNS_API_TOKEN" not in config.secrets


# ---------------------------------------------------------------- secrets: never blank, never shown


SPEC = SecretSpec("GRAFANA_ADMIN_PASSWORD", 32)


def test_an_empty_or_weak_secret_from_the_environment_is_refused(project_root: Path,
                                                                  env_dir: Path) -> None:
    """`GRAFANA_ADMIN_PASSWORD= invoke render` once rendered an empty password."""
    for value, why in (("", "is empty"), ("Pw4x9", "shorter than its 32"),
                       ("x" * 30 + "'", "shorter than its 32"),
                       ("a" * 32 + "'quote", "outside its alphabet")):
        with pytest.raises(ConfigError) as error:
            load(project_root, env_dir, environ={SPEC.key: value}, specs=[SPEC])
        text = str(error.value)
        assert why in text and SPEC.key in text and "$GRAFANA_ADMIN_PASSWORD" in text
        assert value == "" or value not in text
    assert not (env_dir / "secrets.env").exists()  # nothing written for a refused input
    good = "A" * 40
    config = load(project_root, env_dir, environ={SPEC.key: good}, specs=[SPEC])
    assert config[SPEC.key] == good


def test_a_short_or_malformed_saved_secret_names_file_line_and_key_not_the_value(
        project_root: Path, env_dir: Path) -> None:
    secrets = env_dir / "secrets.env"
    secrets.write_text("GRAFANA_ADMIN_PASSWORD=tooShort9\n")
    secrets.chmod(0o600)
    with pytest.raises(ConfigError) as error:
        load(project_root, env_dir, specs=[SPEC])
    text = str(error.value)
    assert "secrets.env:1" in text and SPEC.key in text and "tooShort9" not in text
    secret = "Zq8" * 12
    secrets.write_text(f"OK=1\nGRAFANA_ADMIN_PASSWORD 'x{secret}\n")
    with pytest.raises(ConfigError) as error:
        load(project_root, env_dir, specs=[SPEC])
    text = str(error.value)
    assert "secrets.env:2" in text and secret not in text, text
