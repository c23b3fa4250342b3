"""What `invoke plan` shows, as plain rows derived from the catalogue, and the Mermaid diagram."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from . import catalogue as cat

if TYPE_CHECKING:
    from .config import Config

Row = tuple[str, ...]

STACK_HEADERS: Row = ("order", "stack", "depends on", "network", "services", "description")
NETWORK_HEADERS: Row = ("network", "attached stacks")
VOLUME_HEADERS: Row = ("stack", "service", "host path", "container path", "owner", "mode")
ROUTE_HEADERS: Row = ("host", "path", "stack", "service", "protected by", "who", "app's login",
                      "reason")
APP_LOGINS = {"own": "its own, after SSO", "sso": "none: trusts SSO",
              "oidc": "through Authentik (OIDC)", "none": "none"}
PORT_HEADERS: Row = ("address", "published", "target", "stack", "service",
                     "why, and what guards it")


def stack_rows(catalogue: cat.Catalogue) -> list[Row]:
    rows: list[Row] = []
    for order, layer in enumerate(cat.stack_layers(catalogue, catalogue.names()), start=1):
        for name in layer:
            stack = catalogue[name]
            rows.append((str(order), name, ", ".join(stack.depends_on) or "-", stack.network,
                         ", ".join(s.name for s in stack.services), stack.title))
    return rows


def network_rows(catalogue: cat.Catalogue) -> list[Row]:
    return [(net, ", ".join(stacks)) for net, stacks in sorted(cat.networks(catalogue).items())]


def volume_rows(catalogue: cat.Catalogue, config: Config) -> list[Row]:
    data_root = config.path("DATA_ROOT")
    rows: list[Row] = []
    for name in _ordered(catalogue):
        for service, volume in cat.data_volumes(catalogue[name]):
            owner = f"{volume.owner[0]}:{volume.owner[1]}" if volume.owner else "-"
            rows.append((name, service.name, str(data_root / volume.source), volume.target,
                         owner, volume.mode or "-"))
    return rows


def route_rows(catalogue: cat.Catalogue, groups: str = "") -> list[Row]:
    """Every route: what guards it (forward auth, basic auth, nothing), for whom (the
    SSO_GROUPS), and the app's own login behind it."""
    rows = []
    for stack, service, route in cat.all_routes(catalogue):
        methods = f" ({'/'.join(route.methods)})" if route.methods else ""
        guard, who = {"sso": ("Authentik forward auth", groups or "SSO_GROUPS"),
                      "basic": ("basic auth", route.user),
                      "public": ("nothing (public)", "anyone")}.get(route.auth, (route.auth, "?"))
        login = APP_LOGINS[service.login] if route.auth != "basic" else "none"
        rows.append((route.host, route.path or "/", stack.name, service.name, guard + methods,
                     who, login, route.reason or "-"))
    return sorted(rows)


def port_rows(catalogue: cat.Catalogue, config: Config) -> list[Row]:
    rows: list[Row] = []
    for name in _ordered(catalogue):
        for service in catalogue[name].services:
            for port in service.ports:
                rows.append((port.bind or config["BIND_ADDRESS"],
                             f"{port.published}/{port.protocol}", str(port.target), name,
                             service.name, port.reason))
    return rows


def ports_markdown(catalogue: cat.Catalogue, config: Config) -> str:
    """The published ports as a Markdown table (README, Security), from the catalogue."""
    lines = ["| address | port | stack/service | why, and what guards it |", "|---|---|---|---|"]
    for address, published, _, stack, service, reason in port_rows(catalogue, config):
        lines.append(f"| {address} | {published} | {stack}/{service} | {reason} |")
    return "\n".join(lines)


def _ordered(catalogue: cat.Catalogue) -> list[str]:
    return [n for layer in cat.stack_layers(catalogue, catalogue.names()) for n in layer]


def _node(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def mermaid(catalogue: cat.Catalogue) -> str:
    """The architecture as a Mermaid flowchart: stacks, services, routes, dependencies."""
    ingress = [s for s in catalogue.stacks.values() if s.ingress]
    source = (next((s for s in ingress[0].services if s.ingress), ingress[0].services[0])
              if ingress and ingress[0].services else None)
    lines = ["graph LR"]
    if source:
        lines.append(f"    internet((Internet)) -->|80/443| svc_{_node(source.name)}")
    for name in _ordered(catalogue):
        stack = catalogue[name]
        lines.append(f'    subgraph stack_{_node(name)}["{stack.title} ({name}, '
                     f'{stack.network})"]')
        for service in stack.services:
            lines.append(f'        svc_{_node(service.name)}["{service.name}"]')
        lines.append("    end")
    for name in _ordered(catalogue):
        for dep in catalogue[name].depends_on:
            lines.append(f"    stack_{_node(name)} -.->|depends on| stack_{_node(dep)}")
        for service in catalogue[name].services:
            for dep in service.depends_on:
                lines.append(f"    svc_{_node(service.name)} --> svc_{_node(dep)}")
    for stack, service, route in cat.all_routes(catalogue):
        if stack.ingress or source is None:
            continue
        label = route.host + (route.path if route.path else "")
        label += " (SSO)" if route.auth == "sso" else " (public)"
        lines.append(f'    svc_{_node(source.name)} -->|"{label}"| svc_{_node(service.name)}')
    return "\n".join(lines) + "\n"


PLACEMENT_HEADERS: Row = ("stack", "host", "address", "notes")


def placement_rows(catalogue: cat.Catalogue, config: Config) -> list[Row]:
    """Where each stack runs (env/inventory.yaml; placed nowhere: this machine) and what
    cannot be wired across hosts (a routed port another host does not publish)."""
    from .inventory import inventory_of
    from .wiring import build_wiring

    inventory = inventory_of(config, catalogue)
    wiring = build_wiring(catalogue, inventory, config)
    unreachable = wiring.unreachable_routes()
    rows: list[Row] = []
    for name in _ordered(catalogue):
        host = wiring.placement.get(name, "")
        notes = [u for u in unreachable if f" {name}/" in u]
        rows.append((name, host or "this machine", inventory.hosts[host].address if host
                     else (config.get("DEPLOY_LOCAL_ADDRESS") or "-"),
                     "; ".join(notes) or "-"))
    return rows


BACKUP_HEADERS = ("stack", "volume", "how", "services", "size now")


def backup_rows(catalogue: cat.Catalogue, config: Config) -> list[Row]:
    """Per data volume: how `invoke backup` makes it consistent, and its size on this
    machine now (what a first snapshot reads; excluded volumes are not measured)."""
    from .backup import EXCLUDE, as_rows, plan_stack

    plans = [plan_stack(catalogue[name]) for name in _ordered(catalogue)]
    root = config.path("DATA_ROOT")
    sizes = {v.source: _size_of(root / v.source) for p in plans for v in p.volumes
             if v.mode != EXCLUDE}
    return [tuple(row) for row in as_rows(plans, {k: v for k, v in sizes.items()
                                                 if v is not None})]


def _size_of(folder: Path) -> int | None:
    """Bytes of the regular files under ``folder`` (None: absent or unreadable)."""
    if not folder.is_dir():
        return None
    total = 0
    try:
        for base, _, files in os.walk(folder, onerror=lambda error: None):
            for name in files:
                try:
                    total += (Path(base) / name).lstat().st_size
                except OSError:
                    continue
    except OSError:
        return None
    return total
