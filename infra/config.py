"""Layered configuration: defaults < pins < profile < generated secrets < process
environment < host.

``env/defaults.env`` is the list of settings. A profile (``env/<name>.env``) may only change
keys that exist there; ``env/pins.env`` (written by ``invoke update`` when no profile is
active) only image pins. The process environment overrides any known key. Secrets live in
``env/secrets.env``; templates never see them (see ``Config.public``). The host layer is an
inventory host's (``env/inventory.yaml``): its overrides, then the paths a deploy decides
there (``HostLayer``, applied by ``Config.for_host``).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .envfile import Entry, read_env_file
from .errors import ConfigError, Problem
from .secrets import SecretSpec, ensure_secrets, secret_problem
from .settings import check_value, parse_bool, unsafe_problems

PROFILE_ENV_VAR = "INFRA_PROFILE"
DEFAULTS_FILE = "defaults.env"
SECRETS_FILE = "secrets.env"
RESERVED_PROFILES = {"defaults", "secrets", "inventory", "acme", "pins"}
PINS_FILE = "pins.env"  # image pins `invoke update` wrote (no profile active): over defaults
ACME_CREDENTIALS_FILE = "acme.env"  # the default of ACME_CREDENTIALS_PATH, in the env folder
PROFILE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class Setting:
    key: str
    value: str
    source: str  # default | pins | profile | secret | environment | host
    origin: str  # file:line, or $NAME for the environment
    secret: bool = False


@dataclass(frozen=True)
class Config:
    profile: str
    project_root: Path
    env_dir: Path
    settings: Mapping[str, Setting]
    generated_secrets: tuple[str, ...] = ()
    host: str = ""  # the inventory host this configuration is for ('' this machine)
    defaults: Mapping[str, str] | None = None  # env/defaults.env's values (optional: empty)

    def __getitem__(self, key: str) -> str:
        return self.settings[key].value

    def get(self, key: str, default: str = "") -> str:
        setting = self.settings.get(key)
        return setting.value if setting else default

    def flag(self, key: str) -> bool:
        return parse_bool(self.get(key, "false"))

    def path(self, key: str) -> Path:
        """A path setting, relative values resolved against the project root."""
        raw = Path(os.path.expanduser(self[key]))
        return raw if raw.is_absolute() else self.project_root / raw

    @property
    def public(self) -> dict[str, str]:
        """Every non-secret value: what templates may see."""
        return {k: s.value for k, s in self.settings.items() if not s.secret}

    @property
    def secrets(self) -> dict[str, str]:
        return {k: s.value for k, s in self.settings.items() if s.secret}

    def credentials_path(self, key: str) -> Path:
        """A credentials file setting (ACME_CREDENTIALS_PATH); empty: env/acme.env."""
        return credentials_path(self.get(key), self.env_dir, self.project_root)

    @property
    def build_dir(self) -> Path:
        return self.path("BUILD_DIR") / (self.profile or "default")

    def for_host(self, layer: HostLayer) -> Config:
        """This configuration with a host's layer on top, validated like every other layer."""
        merged = dict(self.settings)
        origin = f"{layer.file} (hosts.{layer.name}.settings)"
        for key, value in layer.overrides.items():
            old = merged[key]
            merged[key] = Setting(key, value, "host", origin, old.secret)
        if layer.paths is not None:
            decided = layer.paths({k: s.value for k, s in merged.items()})
            for key, value in decided.items():
                merged[key] = Setting(key, value, "host", f"deploy to {layer.name}")
        public = {k: s for k, s in merged.items() if not s.secret}
        problems = _validate(public, dict(self.defaults or {}), self.project_root)
        if problems:
            raise ConfigError(problems)
        return replace(self, settings=merged, host=layer.name)


@dataclass(frozen=True)
class HostLayer:
    """An inventory host's layer: its setting overrides (from ``file``), then the paths that
    deploying there decides, computed from the merged values (BUILD_DIR, DATA_ROOT ...)."""

    name: str
    overrides: Mapping[str, str]
    file: str = "env/inventory.yaml"
    paths: Callable[[Mapping[str, str]], Mapping[str, str]] | None = None


def credentials_path(value: str, env_dir: Path, root: Path) -> Path:
    if not value.strip():
        return env_dir / ACME_CREDENTIALS_FILE
    raw = Path(os.path.expanduser(value.strip()))
    return raw if raw.is_absolute() else root / raw


def read_credentials(path: Path, key: str, display: str) -> tuple[dict[str, str], list[Problem]]:
    """A user-supplied credentials env file (KEY=value lines), checked: present, 0600, not
    empty. Its values never become settings: templates and `config.show` cannot see them."""
    acme = key == "ACME_CREDENTIALS_PATH"
    example = "CF_DNS_API_TOKEN=... for cloudflare" if acme else "PLEX_CLAIM=claim-..."
    whose = "the DNS provider's" if acme else "the"
    create = (f"create {display} with {whose} variables, e.g. "
              f"{example}, then `chmod 600 {display}`; or point {key} at such a file")
    if not path.is_file():
        why = ("ACME_ENABLED=true needs the DNS provider's credentials" if acme
               else f"{key} names it")
        return {}, [Problem(f"{display} is missing: {why}", key=key, file=display, fix=create)]
    problems: list[Problem] = []
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        problems.append(Problem(f"{display} is readable by others (mode {mode:o})", key=key,
                                file=display, fix=f"chmod 600 {display}"))
    entries, found = read_env_file(path, display)
    problems += found
    for entry in entries:  # what the 0600 env file of the container can carry, as written
        if "'" in entry.value or not entry.value.isprintable():
            problems.append(Problem("the value has a single quote or a control character, "
                                    "which the container's env file cannot carry as written",
                                    key=entry.key, file=display, line=entry.line,
                                    fix="change that credential (the provider can issue another)"))
    values = {e.key: e.value for e in entries if e.value}
    if not values and not found:
        problems.append(Problem(f"{display} holds no KEY=value line", key=key, file=display,
                                fix=create))
    return values, problems


def available_profiles(env_dir: Path) -> list[str]:
    return sorted(
        p.stem for p in env_dir.glob("*.env") if p.is_file()
        and p.stem not in RESERVED_PROFILES and not p.name.endswith(".local.env")
    )


def load_config(
    project_root: Path,
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
    secret_specs: list[SecretSpec] | None = None,
    env_dir: Path | None = None,
    write_secrets: bool = True,
) -> Config:
    """Read, merge and validate the configuration; generate missing secrets.

    Raises ConfigError listing every problem; nothing is written unless the input is valid.
    """
    environ = os.environ if environ is None else environ
    env_dir = env_dir or project_root / "env"
    profile = (profile or environ.get(PROFILE_ENV_VAR, "")).strip()
    problems: list[Problem] = []

    defaults_path = env_dir / DEFAULTS_FILE
    if not defaults_path.is_file():
        raise ConfigError(Problem(f"{defaults_path} is missing", file=str(defaults_path),
                                  fix="restore it from git: git checkout -- env/defaults.env"))
    defaults, found = read_env_file(defaults_path, _display(defaults_path, project_root))
    problems += found
    merged: dict[str, Setting] = {
        e.key: Setting(e.key, e.value, "default", f"{e.file}:{e.line}") for e in defaults
    }

    problems += _apply_pins(env_dir, project_root, merged)
    if profile:
        problems += _apply_profile(profile, env_dir, project_root, merged)

    for key in list(merged):
        if key in environ:
            merged[key] = Setting(key, environ[key], "environment", f"${key}")

    problems += _validate(merged, {e.key: e.value for e in defaults}, project_root)
    if parse_bool(merged.get("ACME_ENABLED", Setting("", "false", "", "")).value) \
            and "ACME_CREDENTIALS_PATH" in merged:
        path = credentials_path(merged["ACME_CREDENTIALS_PATH"].value, env_dir, project_root)
        problems += read_credentials(path, "ACME_CREDENTIALS_PATH",
                                     _display(path, project_root))[1]
    if problems:
        raise ConfigError(problems)

    specs = secret_specs or []
    shadowing = [spec for spec in specs if spec.key in merged]  # settings only, so far
    if shadowing:
        raise ConfigError([Problem(f"a stack declares the secret {spec.key}, which is also a "
                                   "setting of env/defaults.env: one would hide the other",
                                   key=spec.key, fix="rename the secret in the stack's "
                                                     "stack.yaml") for spec in shadowing])
    found = [p for spec in specs if spec.key in environ
             and (p := secret_problem(spec, environ[spec.key], f"${spec.key}"))]
    if found:  # an empty or weak value from the environment never replaces a secret
        raise ConfigError(found)
    values, generated = ensure_secrets(env_dir / SECRETS_FILE, specs, write=write_secrets)
    secrets_display = _display(env_dir / SECRETS_FILE, project_root)
    for spec in specs:
        if spec.key in environ:
            merged[spec.key] = Setting(spec.key, environ[spec.key], "environment",
                                       f"${spec.key}", secret=True)
        else:
            merged[spec.key] = Setting(spec.key, values[spec.key], "secret", secrets_display,
                                       secret=True)
    return Config(profile, project_root, env_dir, merged, tuple(generated),
                  defaults={e.key: e.value for e in defaults})


def _apply_pins(env_dir: Path, root: Path, merged: dict[str, Setting]) -> list[Problem]:
    """``env/pins.env``: image pins only (``*_IMAGE``), over the defaults, under a profile."""
    path = env_dir / PINS_FILE
    if not path.is_file():
        return []
    entries, problems = read_env_file(path, _display(path, root))
    for entry in entries:
        if entry.key not in merged or not entry.key.endswith("_IMAGE"):
            problems.append(Problem("only image pins (*_IMAGE settings) belong here",
                                    key=entry.key, file=entry.file, line=entry.line,
                                    fix="move this line to a profile (env/<name>.env)"))
            continue
        merged[entry.key] = Setting(entry.key, entry.value, "pins", f"{entry.file}:{entry.line}")
    return problems


def _apply_profile(profile: str, env_dir: Path, root: Path, merged: dict[str, Setting]
                   ) -> list[Problem]:
    path = env_dir / f"{profile}.env"
    if not PROFILE_RE.match(profile) or profile in RESERVED_PROFILES:
        return [Problem(f"{profile!r} is not a usable profile name", key="profile",
                        fix="use lower-case letters, digits, '-' and '_' "
                            f"(not {', '.join(sorted(RESERVED_PROFILES))})")]
    if not path.is_file():
        choices = available_profiles(env_dir)
        return [Problem(f"profile {profile!r} has no file {_display(path, root)}", key="profile",
                        fix=f"create that file, or choose one of: {', '.join(choices) or '(none)'}"
                        f" (--profile or ${PROFILE_ENV_VAR})")]
    entries, problems = read_env_file(path, _display(path, root))
    for entry in entries:
        if entry.key not in merged:
            problems.append(_unknown_key(entry, list(merged)))
            continue
        merged[entry.key] = Setting(entry.key, entry.value, "profile", f"{entry.file}:{entry.line}")
    return problems


def _unknown_key(entry: Entry, known: list[str]) -> Problem:
    close = difflib.get_close_matches(entry.key, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    return Problem("unknown setting", key=entry.key, file=entry.file, line=entry.line,
                   fix=f"{hint}only keys listed in env/defaults.env can be set; "
                       "rename or remove this line")


def _validate(merged: dict[str, Setting], defaults: Mapping[str, str], root: Path
              ) -> list[Problem]:
    problems: list[Problem] = []
    for key, setting in merged.items():
        file, line = _split_origin(setting.origin)
        value = setting.value.strip()
        if value != setting.value or not setting.value.isprintable():
            # checked and used must be the same text: a trailing newline in DOMAIN would land
            # inside a Host() rule, one in a tenant would add a line to Alloy's config
            problems.append(Problem("has spaces around it or a control character (a newline, "
                                    "a tab)", key=key, file=file, line=line,
                                    fix="write the value alone, on one line"))
            continue
        if not value:
            if defaults.get(key):  # an empty default marks an optional key
                problems.append(Problem("is required but empty", key=key, file=file, line=line,
                                        fix=f"set a value, or remove this override to use the "
                                            f"default ({defaults[key]})"))
            continue
        found = check_value(key, value)
        if found:
            problems.append(Problem(found[0], key=key, file=file, line=line, fix=found[1]))
    if not problems:
        def resolve(value: str) -> str:
            path = Path(os.path.expanduser(value))
            return os.path.realpath(path if path.is_absolute() else root / path)

        for key, message, fix in unsafe_problems({k: v.value for k, v in merged.items()},
                                                 resolve):
            file, line = _split_origin(merged[key].origin)
            problems.append(Problem(message, key=key, file=file, line=line, fix=fix))
    if parse_bool(merged.get("ACME_ENABLED", Setting("", "false", "", "")).value):
        for key in ("ACME_EMAIL", "ACME_DNS_PROVIDER"):
            if key in merged and not merged[key].value.strip():
                file = _split_origin(merged[key].origin)[0]
                problems.append(Problem("is required when ACME_ENABLED=true", key=key, file=file,
                                        fix=f"set {key} in your profile, or ACME_ENABLED=false"))
    return problems


def _split_origin(origin: str) -> tuple[str, int]:
    file, _, line = origin.rpartition(":")
    return (file, int(line)) if line.isdigit() else (origin, 0)


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
