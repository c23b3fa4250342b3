"""The pure planner: facts in, actions out. Nothing here touches the system."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..catalogue import Catalogue, Stack, networks, stack_layers, with_dependencies
from ..compose import CONTAINER_SECRETS
from .facts import ContainerFact
from .ownership import KeyCopy, OwnershipFix, key_copies, ownership_fixes
from .state import StackRecord

CREATE, UPDATE, SKIP = "create", "update", "unchanged"
KEYS_STATE = "keys.state"  # a recorded entry: the key files the stack's containers copy
STOP, ABSENT = "stop", "absent"


@dataclass(frozen=True)
class StackStep:
    stack: str
    action: str  # create | update | unchanged (up); stop | absent (down)
    reason: str
    recreate: tuple[str, ...] = ()  # services whose mounted files changed
    changed_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class UpPlan:
    layers: list[list[str]]
    steps: Mapping[str, StackStep]
    networks_to_create: list[str]
    ownership: list[OwnershipFix] = field(default_factory=list)
    keys: list[KeyCopy] = field(default_factory=list)  # containers' own copies of keys

    @property
    def to_apply(self) -> list[str]:
        return [name for layer in self.layers for name in layer
                if self.steps[name].action != SKIP]

    @property
    def empty(self) -> bool:
        return not self.networks_to_create and not self.to_apply


@dataclass(frozen=True)
class DownPlan:
    order: list[str]  # reverse dependency order
    steps: Mapping[str, StackStep]
    remove_volumes: bool = False


def project_name(stack: Stack | str) -> str:
    """The compose project a stack runs as (labels on its containers say the same)."""
    return stack if isinstance(stack, str) else stack.name


def select_stacks(catalogue: Catalogue, requested: Sequence[str] | None, no_deps: bool
                  ) -> list[str]:
    """Stacks to act on: all, or the requested ones plus their dependencies."""
    if not requested:
        return with_dependencies(catalogue, catalogue.names())
    if no_deps:
        with_dependencies(catalogue, requested)  # validates the names
        return list(dict.fromkeys(requested))
    return with_dependencies(catalogue, requested)


def required_networks(catalogue: Catalogue, names: Iterable[str]) -> list[str]:
    chosen = set(names)
    return sorted(net for net, stacks in networks(catalogue).items() if chosen & set(stacks))


def plan_up(catalogue: Catalogue, names: Sequence[str], digests: Mapping[str, str],
            files: Mapping[str, Mapping[str, str]], records: Mapping[str, StackRecord],
            containers: Mapping[str, Sequence[ContainerFact]], existing_networks: Iterable[str]
            ) -> UpPlan:
    """Decide, per stack, whether it must be (re)applied and which services must be recreated."""
    existing = set(existing_networks)
    steps = {name: _up_step(catalogue[name], digests[name], files.get(name, {}),
                            records.get(name), containers.get(project_name(name), ()))
             for name in names}
    applied = [catalogue[n] for n in names if steps[n].action != SKIP]
    return UpPlan(
        layers=stack_layers(catalogue, names),
        steps=steps,
        networks_to_create=[n for n in required_networks(catalogue, names) if n not in existing],
        ownership=ownership_fixes(applied),
        keys=key_copies(applied),
    )


def _up_step(stack: Stack, digest: str, files: Mapping[str, str], record: StackRecord | None,
             containers: Sequence[ContainerFact]) -> StackStep:
    if not containers:
        return StackStep(stack.name, CREATE, "not running")
    if record is None:
        return StackStep(stack.name, UPDATE, "no record of a successful bring-up")
    if record.digest != digest:
        changed = sorted(set(files.items()) ^ set(record.files.items()))
        changed_files = tuple(dict.fromkeys(path for path, _ in changed))
        return StackStep(stack.name, UPDATE,
                         "changed: " + ", ".join(changed_files[:4])
                         + (" ..." if len(changed_files) > 4 else ""),
                         recreate=services_mounting(stack, changed_files),
                         changed_files=changed_files)
    problem = service_problem(stack, containers)
    if problem:
        return StackStep(stack.name, UPDATE, problem)
    return StackStep(stack.name, SKIP, "unchanged")


def service_problem(stack: Stack, containers: Sequence[ContainerFact]) -> str:
    """What keeps the stack's running containers from being right ('' when nothing)."""
    by_service = {c.service: c for c in containers}
    for service in stack.services:
        fact = by_service.get(service.name)
        if fact is None:
            return f"{service.name} has no container"
        if service.oneshot:
            if fact.state == "exited" and fact.exit_code != 0:
                return f"{service.name} exited {fact.exit_code}"
            continue
        if fact.state != "running":
            return f"{service.name} is {fact.state}"
        if fact.health == "unhealthy":
            return f"{service.name} is unhealthy"
    return ""


def services_mounting(stack: Stack, changed_files: Iterable[str]) -> tuple[str, ...]:
    """Services with a rendered config file (or folder) among ``changed_files``.

    Compose recreates a service when its own definition changes, but not when a file it
    bind-mounts changes: those services are recreated explicitly.
    """
    changed = list(changed_files)
    hit = []
    for service in stack.services:
        if KEYS_STATE in changed and any(v.kind == "key" for v in service.volumes):
            hit.append(service.name)  # a key file changed: its copy is re-mounted
            continue
        mine = f"{CONTAINER_SECRETS}/{service.name}/"
        if any(p.startswith(mine) for p in changed):
            hit.append(service.name)  # a secret it reads as a file changed
            continue
        for volume in service.volumes:
            if volume.kind != "config":
                continue
            source = volume.source.strip("/").removeprefix("./")
            if any(p == source or p.startswith(source + "/") or p.endswith("/" + source)
                   for p in changed):
                hit.append(service.name)
                break
    return tuple(hit)


def plan_down(catalogue: Catalogue, requested: Sequence[str] | None,
              containers: Mapping[str, Sequence[ContainerFact]], remove_volumes: bool
              ) -> DownPlan:
    names = list(dict.fromkeys(requested)) if requested else catalogue.names()
    with_dependencies(catalogue, names)  # validates the names
    order = [n for layer in reversed(stack_layers(catalogue, names)) for n in layer]
    steps = {}
    for name in order:
        found = containers.get(project_name(name), ())
        steps[name] = (StackStep(name, STOP, f"{len(found)} container(s)") if found
                       else StackStep(name, ABSENT, "not running"))
    return DownPlan(order, steps, remove_volumes)
