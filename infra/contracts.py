"""Image contracts: what each pinned third-party image really does, read from its upstream source.

The catalogue says what we ask of an image; ``contracts/<name>.yaml`` says what the image is at
the tag we pin (its user, working directory, programs, ports, start-up writes, configuration keys,
environment variables), every fact with the upstream file it was read from. This module reads
them (one validating reader), tells when a pin has moved away from the tag a contract was verified
at, and holds rendered stacks against them (see ``conformance``). Format: contracts/README.md.
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, Problem
from .yamlfile import read_yaml

CONTRACTS_DIR = "contracts"
FORMATS = ("yaml", "json", "alloy", "nginx")
# Where a program named without a path is looked up (the images' PATH).
SEARCH_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
SHELLS = ("/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash")


@dataclass(frozen=True)
class Fact:
    value: Any
    source: str


@dataclass(frozen=True)
class StartupWrite:
    """A path the program creates or opens for writing when it starts."""

    path: str
    source: str
    flag: str = ""  # the command-line flag that moves it
    config_key: str = ""  # the configuration key that moves it
    fatal: bool = True


@dataclass(frozen=True)
class Read:
    """A file the program reads at start-up, named by the config key or flag that points at it."""

    what: str
    source: str
    config_key: str = ""
    flag: str = ""
    path: str = ""


@dataclass(frozen=True)
class ConfigSchema:
    target: str  # container path glob where the catalogue mounts the file
    format: str  # yaml | json | alloy
    keys: Mapping[str, str]  # key path pattern -> upstream source


@dataclass(frozen=True)
class Contract:
    name: str
    setting: str
    repository: str
    verified_at: str
    upstream: str
    read_at: str
    file: str
    user: Fact | None = None
    workdir: Fact | None = None
    programs: Fact | None = None
    listens: Fact | None = None
    health: Fact | None = None
    startup_writes: tuple[StartupWrite, ...] = ()
    reads: tuple[Read, ...] = ()
    configs: tuple[ConfigSchema, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    flags: Mapping[str, str] = field(default_factory=dict)  # command-line flags -> source
    metrics: Fact | None = None
    tag_pattern: Fact | None = None  # a regular expression every published tag matches
    path: Fact | None = None  # the image's PATH, when it is not the usual one
    facts: Mapping[str, Fact] = field(default_factory=dict)  # other named facts tests rely on
    unverified: tuple[str, ...] = ()

    @property
    def user_ids(self) -> tuple[int, int]:
        text = str(self.user.value) if self.user else "0:0"
        uid, _, gid = text.partition(":")
        return int(uid), int(gid or uid)

    @property
    def working_dir(self) -> str:
        return str(self.workdir.value) if self.workdir else "/"

    def has_program(self, program: str) -> bool:
        """True when ``program`` (absolute, or looked up in the image's PATH) is in the image."""
        present = set(self.programs.value) if self.programs else set()
        if program.startswith("/"):
            return program in present
        return any(posixpath.join(d, program) in present for d in self.search_path)

    @property
    def search_path(self) -> tuple[str, ...]:
        return tuple(str(d) for d in self.path.value) if self.path else SEARCH_PATH

    @property
    def has_shell(self) -> bool:
        return any(self.has_program(shell) for shell in SHELLS)

    def absolute(self, path: str) -> str:
        return posixpath.normpath(posixpath.join(self.working_dir, path))

    def config_for(self, target: str) -> ConfigSchema | None:
        for schema in self.configs:
            if fnmatch.fnmatchcase(target, schema.target):
                return schema
        return None

    @property
    def facts_to_verify(self) -> list[str]:
        names = [n for n in ("user", "workdir", "programs", "listens", "health", "metrics")
                 if getattr(self, n) is not None]
        if self.startup_writes:
            names.append("startup_writes")
        if self.reads:
            names.append("reads")
        names += [f"config keys of {c.target}" for c in self.configs]
        if self.environment:
            names.append("environment")
        if self.flags:
            names.append("flags")
        return names


# ---------------------------------------------------------------- reading


def contracts_dir(project_root: Path) -> Path:
    return project_root / CONTRACTS_DIR


def load_contracts(directory: Path) -> dict[str, Contract]:
    """Every ``*.yaml`` contract under ``directory``, keyed by the setting that pins its image."""
    contracts: dict[str, Contract] = {}
    problems: list[Problem] = []
    for path in sorted(directory.glob("*.yaml")):
        shown = f"{directory.name}/{path.name}"
        try:
            contract = _build(path.stem, read_yaml(path), shown)
        except ConfigError as exc:
            problems += exc.problems
            continue
        if contract.setting in contracts:
            problems.append(Problem(f"{contract.setting} already has a contract in "
                                    f"{contracts[contract.setting].file}", key="setting",
                                    file=shown, fix="keep one contract per pinned image"))
            continue
        contracts[contract.setting] = contract
    if problems:
        raise ConfigError(problems)
    return contracts


def _fact(doc: Mapping[str, Any], key: str, where: str) -> Fact | None:
    if key not in doc:
        return None
    node = doc[key]
    if not isinstance(node, Mapping) or "value" not in node or not node.get("source"):
        raise ConfigError(Problem("a fact needs a value and the upstream source it was read from",
                                  key=key, file=where, fix=f"{key}: {{value: ..., source: ...}}"))
    return Fact(node["value"], str(node["source"]))


def _text(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str | int | float) or not str(value).strip():
        raise ConfigError(Problem("missing or empty", key=key, file=where,
                                  fix=f"set {key} (see contracts/README.md)"))
    return str(value)


def _sourced_map(node: Any, key: str, where: str) -> dict[str, str]:
    if node is None:
        return {}
    if not isinstance(node, Mapping) or not all(isinstance(v, str) and v for v in node.values()):
        raise ConfigError(Problem("must map each name to the upstream file it was read from",
                                  key=key, file=where, fix=f"{key}: {{NAME: source}}"))
    return {str(k): str(v) for k, v in node.items()}


KNOWN_KEYS = ("setting", "repository", "verified_at", "upstream", "read_at", "user", "workdir",
              "programs", "path", "listens", "health", "startup_writes", "reads", "configs",
              "environment", "flags", "metrics", "tag_pattern", "facts", "unverified")


def _build(name: str, doc: Any, where: str) -> Contract:
    if not isinstance(doc, Mapping):
        raise ConfigError(Problem("a contract is a mapping", file=where,
                                  fix="see contracts/README.md"))
    unknown = [str(k) for k in doc if k not in KNOWN_KEYS]
    if unknown:
        raise ConfigError(Problem(f"unknown key(s) {', '.join(unknown)}", file=where,
                                  fix=f"use only {', '.join(KNOWN_KEYS)}"))
    facts = doc.get("facts") or {}
    if not isinstance(facts, Mapping):
        raise ConfigError(Problem("facts is a mapping of named facts", key="facts", file=where,
                                  fix="facts: {name: {value: ..., source: ...}}"))
    writes = []
    for index, item in enumerate(doc.get("startup_writes") or []):
        if not isinstance(item, Mapping) or not item.get("path") or not item.get("source"):
            raise ConfigError(Problem("each start-up write needs a path and a source",
                                      key=f"startup_writes[{index}]", file=where,
                                      fix="- {path: ..., source: ...}"))
        writes.append(StartupWrite(str(item["path"]), str(item["source"]),
                                   str(item.get("flag") or ""), str(item.get("config_key") or ""),
                                   bool(item.get("fatal", True))))
    reads = []
    for index, item in enumerate(doc.get("reads") or []):
        if not isinstance(item, Mapping) or not item.get("source"):
            raise ConfigError(Problem("each read needs a source", key=f"reads[{index}]",
                                      file=where, fix="- {what: ..., source: ...}"))
        reads.append(Read(str(item.get("what") or ""), str(item["source"]),
                          str(item.get("config_key") or ""), str(item.get("flag") or ""),
                          str(item.get("path") or "")))
    configs = []
    for index, item in enumerate(doc.get("configs") or []):
        key = f"configs[{index}]"
        if not isinstance(item, Mapping) or item.get("format") not in FORMATS \
                or not item.get("target"):
            raise ConfigError(Problem(f"needs a target and a format ({', '.join(FORMATS)})",
                                      key=key, file=where, fix="see contracts/README.md"))
        configs.append(ConfigSchema(str(item["target"]), str(item["format"]),
                                    _sourced_map(item.get("keys"), f"{key}.keys", where)))
    unverified = doc.get("unverified") or []
    return Contract(
        name=name, setting=_text(doc, "setting", where),
        repository=_text(doc, "repository", where),
        verified_at=_text(doc, "verified_at", where), upstream=_text(doc, "upstream", where),
        read_at=_text(doc, "read_at", where), file=where,
        user=_fact(doc, "user", where), workdir=_fact(doc, "workdir", where),
        programs=_fact(doc, "programs", where), listens=_fact(doc, "listens", where),
        health=_fact(doc, "health", where), startup_writes=tuple(writes), reads=tuple(reads),
        configs=tuple(configs),
        environment=_sourced_map(doc.get("environment"), "environment", where),
        flags=_sourced_map(doc.get("flags"), "flags", where),
        metrics=_fact(doc, "metrics", where), tag_pattern=_fact(doc, "tag_pattern", where),
        path=_fact(doc, "path", where),
        facts={str(k): f for k in facts if (f := _fact(facts, k, where)) is not None},
        unverified=tuple(str(u) for u in unverified) if isinstance(unverified, list)
        else (str(unverified),))


# ---------------------------------------------------------------- pins


def image_tag(reference: str) -> str:
    """The tag of an image reference ('' for a digest-only or untagged reference)."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


def pin_drift(contracts: Mapping[str, Contract], values: Mapping[str, str]) -> list[Problem]:
    """A warning per image whose pin differs from the tag its contract was verified at, and per
    pinned image that has no contract at all."""
    warnings = []
    for setting, contract in contracts.items():
        reference = values.get(setting, "")
        if not reference:
            continue
        tag = image_tag(reference)
        pattern = contract.tag_pattern
        if pattern and not re.fullmatch(str(pattern.value), tag):
            warnings.append(Problem(
                f"{reference}: {contract.repository} publishes no tag of this form "
                f"({pattern.source})", key=setting, file=contract.file,
                fix=f"use a tag matching {pattern.value}"))
        if tag != contract.verified_at:
            warnings.append(Problem(
                f"{reference} is pinned, but its contract was verified at "
                f"{contract.verified_at}; re-verify: {', '.join(contract.facts_to_verify)}",
                key=setting, file=contract.file,
                fix="read the upstream source at the new tag, update the contract and its "
                    "verified_at (README: Bumping a pin)"))
    for setting in sorted(values):
        if setting.endswith("_IMAGE") and values[setting] and setting not in contracts:
            warnings.append(Problem("no contract records what this image does", key=setting,
                                    fix=f"write {CONTRACTS_DIR}/<name>.yaml for it "
                                        "(contracts/README.md)"))
    return warnings


# ---------------------------------------------------------------- configuration keys


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def tree_keys(node: Any, prefix: str = "") -> set[str]:
    """Leaf key paths of a parsed YAML/JSON document: dots between levels, ``[]`` per list."""
    keys: set[str] = set()
    if isinstance(node, Mapping):
        if not node and prefix:
            keys.add(prefix)
        for key, value in node.items():
            keys |= tree_keys(value, _join(prefix, str(key)))
    elif isinstance(node, list) and any(isinstance(v, Mapping | list) for v in node):
        for value in node:
            if isinstance(value, Mapping | list):
                keys |= tree_keys(value, prefix + "[]")
    elif prefix:
        keys.add(prefix)
    return keys


_ALLOY_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|//[^\n]*|/\*.*?\*/|[{}\[\]()]|'
                          r'([A-Za-z_][A-Za-z0-9_.]*)\s*(=(?!=)|"(?:[^"\\]|\\.)*"\s*\{|\{)',
                          re.S)


def alloy_keys(text: str) -> set[str]:
    """Key paths of an Alloy configuration: component or block names (labels left out), then the
    attribute. Object literals (``{"job" = "x"}``) are values, not keys."""
    keys: set[str] = set()
    blocks: list[str | None] = []  # a block name, or None for a value bracket
    for match in _ALLOY_TOKEN.finditer(text):
        token = match.group(0)
        if token in "{[(":
            blocks.append(None)
        elif token in "}])":
            if blocks:
                blocks.pop()
        elif match.group(1):
            name, opener = match.group(1), match.group(2)
            in_value = any(b is None for b in blocks)
            if in_value:
                if opener.endswith("{"):
                    blocks.append(None)
                continue
            path = ".".join([b for b in blocks if b] + [name])
            if opener.startswith("="):
                keys.add(path)
            else:
                blocks.append(name)
    return keys


# nginx blocks whose lines are data (values, patterns), not directives
DATA_BLOCKS = {"split_clients", "map", "geo", "types", "match"}


def nginx_directives(text: str) -> dict[str, str]:
    """Simple directive paths of an nginx configuration (enclosing blocks, then the directive:
    e.g. ``http.server.listen``; blocks themselves are not keys) with the first argument of
    their first use."""
    bare = re.sub(r"#[^\n]*", "", text)
    found: dict[str, str] = {}
    blocks: list[str] = []
    for match in re.finditer(r'((?:"(?:[^"\\]|\\.)*"|\'[^\']*\'|[^;{}"\'])*)([;{}])', bare):
        words, end = match.group(1).split(), match.group(2)
        if words and end == ";" and not DATA_BLOCKS & set(blocks):
            path = ".".join([*blocks, words[0]])
            found.setdefault(path, words[1].strip("\"'") if len(words) > 1 else "")
        if end == "{":
            blocks.append(words[0] if words else "")
        elif end == "}" and blocks:
            blocks.pop()
    return found


def parse_keys(text: str, format_: str) -> set[str]:
    if format_ == "alloy":
        return alloy_keys(text)
    if format_ == "nginx":
        return set(nginx_directives(text))
    if format_ == "json":
        return tree_keys(json.loads(text))
    import yaml

    return tree_keys(yaml.safe_load(text))


def key_allowed(key: str, patterns: Iterable[str]) -> bool:
    """``key`` matches a pattern segment by segment (``*`` any one segment, ``[]`` literal)."""
    parts = key.split(".")
    for pattern in patterns:
        wanted = pattern.split(".")
        if len(wanted) == len(parts) and all(
                w == p or (w.startswith("*") and p.endswith(w[1:]))
                for w, p in zip(wanted, parts, strict=True)):
            return True
    return False


# ---------------------------------------------------------------- metrics


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                 "bool", "and", "or", "unless", "le", "inf", "nan"}


def queried_metrics(dashboard: Any) -> set[str]:
    """Metric names used by every ``expr`` of a Grafana dashboard (functions, labels left out)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    found.update(_metrics_of(value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(dashboard)
    return found


def exports(exported: set[str], metric: str) -> bool:
    """A histogram or summary exports its _bucket, _sum and _count series too."""
    base = re.sub(r"_(bucket|sum|count)$", "", metric)
    return metric in exported or base in exported


def _metrics_of(expr: str) -> set[str]:
    # drop label matchers and strings, then every word not followed by "(" is a metric name
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr))
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    words = re.findall(r"(?<![\w$.])[a-zA-Z_:][a-zA-Z0-9_:]*(?![\w:])(?!\s*\()", bare)
    return {w for w in words if w.lower() not in _PROMQL_WORDS and not w.startswith("$")
            and not re.fullmatch(r"\d+[smhdwy]?", w) and "__" not in w[:2]}


# ---------------------------------------------------------------- conformance


def contract_of(image: str, contracts: Mapping[str, Contract], values: Mapping[str, str]
                ) -> Contract | None:
    """The contract of the image a service runs (matched through the setting that pins it)."""
    for setting, contract in contracts.items():
        if values.get(setting) == image:
            return contract
    return None


def lookup(document: Any, key: str) -> Any:
    node = document
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _mounted_files(service: Any, files: Mapping[str, str]) -> list[tuple[str, str]]:
    """(container path, rendered content) of every rendered file the service mounts."""
    mounted = []
    for volume in service.volumes:
        if volume.kind != "config":
            continue
        if volume.source in files:
            mounted.append((volume.target, files[volume.source]))
            continue
        prefix = volume.source.rstrip("/") + "/"
        for relative, content in files.items():
            if relative.startswith(prefix):
                mounted.append((posixpath.join(volume.target, relative[len(prefix):]), content))
    return mounted


def _parsed_configs(contract: Contract, mounted: list[tuple[str, str]]
                    ) -> list[tuple[str, ConfigSchema, Any]]:
    parsed = []
    for target, content in mounted:
        schema = contract.config_for(target)
        if schema is None:
            continue
        if schema.format in ("alloy", "nginx"):
            parsed.append((target, schema, content))
        elif schema.format == "json":
            parsed.append((target, schema, json.loads(content)))
        else:
            import yaml

            parsed.append((target, schema, yaml.safe_load(content)))
    return parsed


def _flag_value(command: Iterable[str], flag: str) -> str | None:
    words = list(command)
    for index, word in enumerate(words):
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
        if word == flag and index + 1 < len(words):
            return words[index + 1]
    return None


def _writable_mounts(service: Any) -> list[str]:
    mounts = [t.split(":", 1)[0] for t in service.tmpfs]
    mounts += [v.target for v in service.volumes if not v.read_only and v.kind != "config"]
    return mounts


def _under(path: str, mounts: Iterable[str]) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def where_written(contract: Contract, write: StartupWrite, command: Iterable[str],
                  configs: list[tuple[str, ConfigSchema, Any]]) -> str:
    """The absolute path the program writes ``write`` to, with our flags and configuration."""
    path = write.path
    moved = _flag_value(command, write.flag) if write.flag else None
    if moved is None and write.config_key:
        for _, schema, document in configs:
            if schema.format == "nginx":
                value = nginx_directives(document).get(write.config_key)
            elif schema.format in ("yaml", "json"):
                value = lookup(document, write.config_key)
            else:
                value = None
            if isinstance(value, str) and value:
                moved = value
    return contract.absolute(moved or path)


# Capabilities that let a process read a file whatever its owner and mode.
READ_ANY_CAPABILITIES = {"DAC_OVERRIDE", "DAC_READ_SEARCH", "ALL"}


def private_file(path: str) -> bool:
    """A file the operator keeps 0600: keys and credentials (CERTS_DIR's keys, a login file)."""
    name = posixpath.basename(path)
    return name.endswith(("-key.pem", ".key")) or "credentials" in name


def _read_findings(service: Any, contract: Contract) -> Iterable[tuple[str, str]]:
    """Each private file the service reads must be readable by the uid it runs as, with the
    capabilities it keeps (every other one is dropped)."""
    uid = service.runs_as_uid()
    uid = contract.user_ids[0] if uid is None else uid
    can_read_any = bool(READ_ANY_CAPABILITIES & set(service.cap_add))
    for volume in service.volumes:
        if volume.kind == "key" and volume.owner and volume.owner[0] != uid:
            yield (f"its copy of {volume.source} is owned by uid {volume.owner[0]}, but it reads "
                   f"{volume.target} as uid {uid} ({contract.user.source if contract.user else ''})"
                   .rstrip(" ()"), f"set owner: to {uid}:<gid>")
        elif volume.kind == "host" and private_file(volume.source) and not can_read_any:
            yield (f"{volume.source} is private to the operator (mode 0600); uid {uid} without "
                   "DAC_OVERRIDE cannot read it", "mount it with kind: key (its own copy)")


def conformance(catalogue: Any, values: Mapping[str, str],
                rendered: Mapping[str, Mapping[str, str]], contracts: Mapping[str, Contract]
                ) -> list[Problem]:
    """Every way the rendered stacks ask of an image what its contract says it does not do."""
    problems: list[Problem] = []
    for stack in catalogue.stacks.values():
        files = rendered.get(stack.name, {})
        where = str(stack.directory / "stack.yaml")
        for service in stack.services:
            label = f"{stack.name}.{service.name}"
            contract = contract_of(service.image, contracts, values)
            if contract is None:
                problems.append(Problem(f"{service.image} has no contract", key=label,
                                        file=where, fix="write one under contracts/"))
                continue
            mounted = _mounted_files(service, files)
            configs = _parsed_configs(contract, mounted)
            problems += [Problem(text, key=label, file=where, fix=fix) for text, fix in
                         _service_findings(service, contract, configs, mounted, contracts)]
    return problems


def _service_findings(service: Any, contract: Contract,
                      configs: list[tuple[str, ConfigSchema, Any]],
                      mounted: list[tuple[str, str]], contracts: Mapping[str, Contract]
                      ) -> Iterable[tuple[str, str]]:
    command = service.command or ()
    writable = _writable_mounts(service)
    read_only_mounts = [v.target for v in service.volumes if v.read_only or v.kind == "config"]
    for write in contract.startup_writes:
        path = where_written(contract, write, command, configs)
        blocked = _under(path, read_only_mounts) or (service.read_only
                                                     and not _under(path, writable))
        if blocked and write.fatal:
            moved = " or ".join(x for x in (write.flag, write.config_key) if x)
            yield (f"{contract.repository} writes {path} at start-up ({write.source}), "
                   "which is not on a writable volume or tmpfs: it cannot start",
                   f"move it with {moved} onto a volume" if moved
                   else "mount a volume or tmpfs there")
    yield from _read_findings(service, contract)
    health = service.health
    if health and health.command:
        kind, *words = health.command
        program = words[0] if kind == "CMD" else (words[0].split()[0] if words else "")
        if kind == "CMD-SHELL" and not contract.has_shell:
            yield (f"the health command needs a shell, and {contract.repository} has none "
                   f"({contract.programs.source if contract.programs else 'no programs listed'})",
                   "use a program the image has, or an http probe")
        elif program and not contract.has_program(program):
            yield (f"the health command runs {program}, which {contract.repository} does not "
                   "have", "use a program the contract lists, or an http probe")
    if health and health.http and contract.listens \
            and health.http.port not in contract.listens.value:
        yield (f"the health probe asks port {health.http.port}, where "
               f"{contract.repository} does not listen", "probe a port the contract lists")
    for target, schema, document in configs:
        keys = parse_keys(document, schema.format) if isinstance(document, str) \
            else tree_keys(document)
        for key in sorted(keys):
            if not key_allowed(key, schema.keys):
                yield (f"{target}: key {key} is not one {contract.repository} "
                       f"{contract.verified_at} reads (per its contract)",
                       f"check the key upstream and add it to {contract.file} with its source")
    if contract.flags:
        for word in command:
            flag = word.split("=", 1)[0]
            if flag.startswith("-") and flag not in contract.flags:
                yield (f"command-line flag {flag} is not one {contract.repository} "
                       f"{contract.verified_at} reads (per its contract)",
                       f"check it upstream and add it to {contract.file} with its source")
    variables = [*service.environment, *service.secret_env]
    for variable in variables:
        if variable not in contract.environment:
            yield (f"environment variable {variable} is not one {contract.repository} "
                   f"{contract.verified_at} reads (per its contract)",
                   f"check it upstream and add it to {contract.file} with its source")
    for target, content in mounted:
        if not target.endswith(".json") or '"panels"' not in content:
            continue
        used = queried_metrics(json.loads(content))
        for other in contracts.values():
            if not other.metrics:
                continue
            exported = set(other.metrics.value)
            prefixes = {name.split("_", 1)[0] + "_" for name in exported}
            for metric in sorted(used):
                if any(metric.startswith(p) for p in prefixes) and not exports(exported, metric):
                    yield (f"{target} queries {metric}, which {other.repository} "
                           f"{other.verified_at} does not export ({other.metrics.source})",
                           "query a metric the contract lists")
