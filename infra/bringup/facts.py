"""Facts read from the engine and from disk: parsers are pure, the reads go through ``c.run``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InfraError
from . import commands as cmd

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


@dataclass(frozen=True)
class ContainerFact:
    project: str
    service: str
    container_id: str
    name: str
    state: str  # running | exited | created | restarting | paused | dead
    health: str  # healthy | unhealthy | starting | "" (no check)
    exit_code: int
    ports: str = ""


def parse_containers(text: str) -> list[ContainerFact]:
    """Lines printed by ``commands.list_containers`` (tab separated)."""
    facts = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 6 or not parts[0]:
            continue
        project, service, cid, name, state, status = parts[:6]
        ports = parts[6] if len(parts) > 6 else ""
        facts.append(ContainerFact(project, service, cid, name, state, _health(status),
                                   _exit_code(status), ports))
    return facts


def parse_compose_ps(text: str) -> list[ContainerFact]:
    """``docker compose ps -a --format json``: one JSON object per line (or one array)."""
    text = text.strip()
    if not text:
        return []
    items: list[dict[str, Any]]
    if text.startswith("["):
        items = json.loads(text)
    else:
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [ContainerFact(str(i.get("Project", "")), str(i.get("Service", "")),
                          str(i.get("ID", "")), str(i.get("Name", "")), str(i.get("State", "")),
                          str(i.get("Health", "")), int(i.get("ExitCode") or 0),
                          _publishers(i.get("Publishers") or []))
            for i in items]


def _publishers(publishers: Iterable[Mapping[str, Any]]) -> str:
    seen = []
    for p in publishers:
        if p.get("PublishedPort"):
            text = f"{p.get('URL') or '0.0.0.0'}:{p['PublishedPort']}->{p.get('TargetPort')}"
            if text not in seen:
                seen.append(text)
    return ", ".join(seen)


def _health(status: str) -> str:
    for word in ("unhealthy", "healthy", "health: starting"):
        if f"({word})" in status:
            return "starting" if word == "health: starting" else word
    return ""


def _exit_code(status: str) -> int:
    # "Exited (0) 3 seconds ago"
    if status.startswith("Exited (") and ")" in status:
        code = status[len("Exited ("):status.index(")")]
        return int(code) if code.lstrip("-").isdigit() else 0
    return 0


def containers_by_project(facts: Iterable[ContainerFact]) -> dict[str, list[ContainerFact]]:
    grouped: dict[str, list[ContainerFact]] = {}
    for fact in facts:
        grouped.setdefault(fact.project, []).append(fact)
    return grouped


def parse_networks(text: str) -> dict[str, str]:
    """``commands.list_networks`` output: network name -> short ID."""
    found = {}
    for line in text.splitlines():
        name, _, network_id = line.strip().partition("\t")
        if name:
            found[name] = network_id.strip()
    return found


def _unreachable(what: str, stderr: str) -> InfraError:
    return InfraError(f"cannot list {what}: {stderr.strip()} (is the engine running and "
                      "DOCKER_HOST right? try `docker info`)")


def read_containers(c: Any) -> list[ContainerFact]:
    result = c.run(cmd.list_containers(), hide=True, warn=True)
    if not result.ok:
        raise _unreachable("containers", result.stderr)
    return parse_containers(result.stdout)


STATE_SEPARATOR = "--- stackyard networks ---"


def read_engine_state(c: Any) -> tuple[list[ContainerFact], dict[str, str]]:
    """Containers, and networks (name -> short ID), in one round trip (each one costs a shell
    over SSH)."""
    result = c.run(f"{cmd.list_containers()} && echo {STATE_SEPARATOR!r} && "
                   f"{cmd.list_networks()}", hide=True, warn=True)
    containers_text, found, networks_text = result.stdout.partition(STATE_SEPARATOR)
    if not result.ok or not found:
        raise _unreachable("containers and networks", result.stderr)
    return parse_containers(containers_text), parse_networks(networks_text)


def parse_stack_images(text: str) -> list[tuple[str, str, str, str]]:
    """``commands.stack_images`` output: (service, reference, image ID, registry digest) per
    service, the digest of the reference's own repository when the image has several."""
    containers, digests = [], {}
    for line in text.splitlines():
        kind, _, rest = line.partition("\t")
        parts = rest.split("\t")
        if kind == "container" and len(parts) == 3:
            containers.append(parts)
        elif kind == "image" and len(parts) == 2:
            try:
                listed = json.loads(parts[1] or "null") or []
            except ValueError:
                listed = []
            digests[parts[0]] = [str(d) for d in listed if "@sha256:" in str(d)]
    found = {}
    for service, reference, image_id in containers:
        repository = _repository(reference)
        known = digests.get(image_id, [])
        digest = next((d for d in known if d.split("@", 1)[0] == repository),
                      known[0] if known else "")
        found[service] = (service, reference, image_id, digest)
    return [found[s] for s in sorted(found)]


def _repository(reference: str) -> str:
    """``registry/path:tag@digest`` without its tag and digest."""
    name = reference.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]
