"""Tables and texts shown after a bring-up and by ``status`` (plain data; the task prints)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..catalogue import Catalogue
from .facts import ContainerFact
from .ownership import OwnershipChange
from .plan import DownPlan, UpPlan
from .schedule import (
    BLOCKED,
    FAILED,
    NOT_STARTED,
    ROLLED_BACK,
    ServiceFailure,
    StackOutcome,
)


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


def url_rows(catalogue: Catalogue, names: Sequence[str], statuses: Mapping[str, str],
             https_port: str | int) -> list[tuple[str, str, str, str]]:
    """(stack, service, url, status) for the routed services of ``names``, each URL once (the
    registry's UI and its /v2/ are two routes of one host)."""
    rows, shown = [], set()
    for name in names:
        for service, route in catalogue[name].routes:
            url = route_url(route.host, https_port)
            if url not in shown:
                shown.add(url)
                rows.append((name, service.name, url, statuses.get(name, "")))
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


def prepared_summary(changes: Sequence[str]) -> str:
    """One line for what preparing the engine changed (networks, data folders, owners,
    modes, key copies) instead of a line per folder."""
    counts: dict[str, int] = {}
    for change in changes:
        word = "network" if change.startswith("created network") else change.split(" ", 1)[0]
        counts[word] = counts.get(word, 0) + 1
    names = {"network": "networks created", "created": "data folders created",
             "chown": "owners set", "chmod": "modes set", "key": "key copies written"}
    parts = [f"{counts[k]} {v}" for k, v in names.items() if counts.get(k)]
    parts += [f"{n} {k}" for k, n in counts.items() if k not in names]
    return "prepared the engine: " + ", ".join(parts)


PULL_FAILURE_SIGNS = ("pull access denied", "manifest unknown", "no such host",
                      "dial tcp", "toomanyrequests", "i/o timeout", "not found: manifest")
PORT_SIGNS = ("port is already allocated", "address already in use")
PULL_FIX = ("set IMAGE_MIRROR to a registry that has the images (e.g. the Zot mirror, "
            "host:5000), or `docker load` them; then run `invoke up` again")
PORT_FIX = ("stop what holds the port (`ss -ltnp`), or give the service another one "
            "(its *_PORT setting); then run `invoke up` again")
UNHEALTHY_FIX = ("read the health output and log lines above; fix the service's "
                 "configuration or its data, then run `invoke up` again")
ROLLBACK_FIX = ("the change that failed is still in your settings: fix it or undo it, then run "
                "`invoke up` again (`invoke history --stack NAME` shows both revisions; "
                "`--no-rollback` keeps a failed change up for debugging)")


@dataclass(frozen=True)
class Failure:
    """The failure report of a bring-up: each cause once, grouped, the fix last."""

    lines: tuple[str, ...]
    summary: str  # one line: what stopped it
    fixes: tuple[str, ...]

    @property
    def final(self) -> str:
        """The last words the user reads: what stopped, then what to do."""
        return "error: " + self.summary + "".join(f"\nfix: {fix}" for fix in self.fixes)


def _engine_lines(text: str) -> list[str]:
    """The engine's own words in compose's output, once each ('Pulling', progress and
    'Interrupted' lines are noise next to the cause)."""
    kept: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.endswith((" Pulling", " Interrupted", " Waiting", " Creating",
                                      " Created", " Starting", " Started")):
            continue
        # compose prefixes a service's line with its name: the cause is the same for all
        words = line.split(" ", 2)
        if len(words) == 3 and words[1] == "Error":
            line = words[2]
        if line not in kept:
            kept.append(line)
    return kept


def failure_report(outcomes: Mapping[str, StackOutcome]) -> Failure | None:
    """What failed and why, each root cause once with the services it hit, the evidence
    (health output, last log lines) once per service, and the fixes (last); ``None`` when
    nothing failed."""
    pulls: dict[str, list[str]] = {}  # engine message -> stack/service
    ports: dict[str, list[str]] = {}
    unhealthy: list[tuple[str, ServiceFailure]] = []
    other: list[str] = []
    rollbacks = [f"{o.stack}: {o.rollback}" for o in outcomes.values()
                 if o.status == ROLLED_BACK]
    for outcome in outcomes.values():
        if outcome.status not in (FAILED, ROLLED_BACK):
            continue
        evidence = [(f.service, f"{f.health_output}\n{outcome.detail}") for f in outcome.failures]
        evidence = evidence or [("", outcome.detail)]
        for service, text in evidence:
            who = f"{outcome.stack}/{service}" if service else outcome.stack
            lowered = text.lower()
            if any(sign in lowered for sign in PULL_FAILURE_SIGNS):
                for line in _engine_lines(text) or [text.strip()]:
                    if any(sign in line.lower() for sign in PULL_FAILURE_SIGNS):
                        pulls.setdefault(line, []).append(who)
                        break
            elif any(sign in lowered for sign in PORT_SIGNS):
                line = next((x for x in _engine_lines(text)
                             if any(s in x.lower() for s in PORT_SIGNS)), text.strip())
                ports.setdefault(line, []).append(who)
            elif service:
                failure = next(f for f in outcome.failures if f.service == service)
                unhealthy.append((outcome.stack, failure))
            else:
                other.append(f"{outcome.stack}: {outcome.detail}")
    blocked = [(n, o.detail) for n, o in outcomes.items() if o.status in (BLOCKED, NOT_STARTED)]
    if not (pulls or ports or unhealthy or other or blocked or rollbacks):
        return None
    lines: list[str] = []
    fixes: list[str] = []
    causes: list[str] = []
    for title, groups, fix in (("images could not be pulled", pulls, PULL_FIX),
                               ("a host port is taken", ports, PORT_FIX)):
        if groups:
            lines.append(f"{title}:")
            for message, hit in groups.items():
                lines.append(f"  {', '.join(dict.fromkeys(hit))}: {message}")
            fixes.append(fix)
            causes.append(title)
    for stack, failure in unhealthy:
        lines.append(f"{stack}/{failure.service}: not healthy ({failure.state})")
        if failure.health_output.strip():
            lines.append("  health output:")
            lines += [f"    {x}" for x in _engine_lines(failure.health_output)[-8:]]
        if failure.logs.strip():
            lines.append("  last log lines:")
            lines += [f"    {x}" for x in failure.logs.strip().splitlines()[-12:]]
    if unhealthy:
        fixes.append(UNHEALTHY_FIX)
        causes.append(", ".join(f"{s}/{f.service} not healthy" for s, f in unhealthy))
    lines += other
    causes += other
    if rollbacks:
        lines += rollbacks
        causes.append("rolled back: " + ", ".join(r.split(":", 1)[0] for r in rollbacks))
        fixes.append(ROLLBACK_FIX)
    if blocked:
        waiting = ", ".join(n for n, _ in blocked)
        reasons = sorted({d for _, d in blocked})
        lines.append(f"not started: {waiting} ({'; '.join(reasons)})")
    summary = "bring-up stopped: " + ("; ".join(causes) or "interrupted") + \
        " (stacks already up stay up)"
    return Failure(tuple(lines), summary, tuple(dict.fromkeys(fixes)))
