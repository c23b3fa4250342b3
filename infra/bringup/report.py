"""Tables and texts shown after a bring-up and by ``status`` (plain data; the task prints)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..catalogue import Catalogue
from .facts import ContainerFact
from .ownership import OwnershipChange
from .plan import DownPlan, UpPlan
from .schedule import StackOutcome


@dataclass(frozen=True)
class StatusRow:
    stack: str
    service: str
    state: str
    health: str
    ports: str
    url: str


def route_url(host: str, https_port: str | int) -> str:
    port = int(https_port)
    return f"https://{host}" + ("" if port == 443 else f":{port}")


def service_urls(catalogue: Catalogue, https_port: str | int) -> dict[tuple[str, str], str]:
    urls: dict[tuple[str, str], str] = {}
    for stack in catalogue.stacks.values():
        for service, route in stack.routes:
            key = (stack.name, service.name)
            url = route_url(route.host, https_port)
            urls[key] = f"{urls[key]} {url}" if key in urls else url
    return urls


def status_rows(catalogue: Catalogue, names: Sequence[str],
                containers: Mapping[str, Sequence[ContainerFact]], https_port: str | int
                ) -> list[StatusRow]:
    urls = service_urls(catalogue, https_port)
    rows = []
    for name in names:
        facts = {f.service: f for f in containers.get(name, ())}
        for service in catalogue[name].services:
            fact = facts.get(service.name)
            state = fact.state if fact else "absent"
            if fact and service.oneshot and fact.state == "exited":
                state = f"done ({fact.exit_code})"
            rows.append(StatusRow(name, service.name, state, fact.health if fact else "",
                                  fact.ports if fact else "", urls.get((name, service.name), "")))
    return rows


def url_rows(catalogue: Catalogue, names: Sequence[str],
             outcomes: Mapping[str, StackOutcome], https_port: str | int
             ) -> list[tuple[str, str, str, str]]:
    """(stack, service, url, status) for every routed service of the selected stacks."""
    rows = []
    for name in names:
        status = outcomes[name].status if name in outcomes else "not selected"
        for service, route in catalogue[name].routes:
            rows.append((name, service.name, route_url(route.host, https_port), status))
    return rows


def up_plan_lines(plan: UpPlan, ownership: Iterable[OwnershipChange] = ()) -> list[str]:
    lines = []
    for net in plan.networks_to_create:
        lines.append(f"create network {net}")
    for change in ownership:
        if change.action != "ok":
            detail = f" {change.before} -> {change.after}" if change.after else ""
            lines.append(f"{change.action.replace('would-', '')} {change.source}{detail}")
    for index, layer in enumerate(plan.layers, 1):
        for name in layer:
            step = plan.steps[name]
            verb = {"create": "start", "update": "update", "unchanged": "keep"}[step.action]
            extra = f"; recreate {', '.join(step.recreate)}" if step.recreate else ""
            lines.append(f"{verb} {name} (layer {index}: {step.reason}{extra})")
    return lines


def down_plan_lines(plan: DownPlan) -> list[str]:
    lines = []
    for name in plan.order:
        step = plan.steps[name]
        verb = "stop and remove" if step.action == "stop" else "nothing to stop for"
        lines.append(f"{verb} {name} ({step.reason})"
                     + (", delete its volumes and data" if plan.remove_volumes else ""))
    return lines


PULL_FAILURE_SIGNS = ("pull access denied", "manifest unknown", "no such host",
                      "dial tcp", "toomanyrequests", "i/o timeout")
PULL_HINT = ("  hint: images could not be pulled: this engine reaches no registry that has them.\n"
             "    fix: set IMAGE_MIRROR to a registry that has them (e.g. the Zot mirror, "
             "host:5000), or `docker load` them, then run `invoke up` again.")


def failure_text(outcomes: Mapping[str, StackOutcome]) -> list[str]:
    """What failed, why, and the evidence (health output, last log lines)."""
    lines: list[str] = []
    evidence = " ".join(f"{o.detail} {f.health_output} {f.logs}" for o in outcomes.values()
                        for f in o.failures).lower()
    if any(sign in evidence for sign in PULL_FAILURE_SIGNS) and "pull" in evidence:
        lines.append(PULL_HINT)
    for outcome in outcomes.values():
        if outcome.ok:
            continue
        if outcome.status != "failed":
            lines.append(f"{outcome.stack}: {outcome.status} ({outcome.detail})")
            continue
        lines.append(f"{outcome.stack}: FAILED after {outcome.elapsed:.1f}s: {outcome.detail}")
        for failure in outcome.failures:
            lines.append(f"  service {failure.service}: {failure.state}")
            if failure.health_output:
                lines.append("    health output:")
                lines += [f"      {line}" for line in failure.health_output.splitlines()]
            if failure.logs:
                lines.append("    last log lines:")
                lines += [f"      {line}" for line in failure.logs.splitlines()]
    return lines
