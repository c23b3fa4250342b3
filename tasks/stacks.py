"""Render the stacks into the build folder, and show the plan derived from the catalogue."""

from __future__ import annotations

from typing import Any

from invoke import Collection, Exit

from ._common import console, infra_task, load


@infra_task(
    help={
        "stack": "render only this stack (repeatable); default: every stack",
        "dry": "show what would change without writing anything",
    },
    iterable=["stack"],
)
def render(c: Any, stack: list[str] | None = None, dry: bool = False, profile: str = "") -> None:
    """Render compose files, configs and 0600 secret env files into the build folder."""
    from infra.render import render_stacks

    project = load(profile, write=not dry)
    rendered = render_stacks(project, stack or None, write=not dry)
    out = console()
    for result in rendered.values():
        if dry:
            out.print(f"[bold]{result.name}[/bold] {len(result.files)} file(s) -> "
                      f"{result.directory} (dry run, nothing written)")
            continue
        state = f"{len(result.changed)} changed" if result.changed else "unchanged"
        out.print(f"[bold]{result.name}[/bold] {len(result.files)} file(s), {state} -> "
                  f"{result.directory}  [dim]{result.digest[:12]}[/dim]")
        for relative in result.changed:
            out.print(f"  [green]wrote[/green] {relative}")


@infra_task(help={"format": "table (default), mermaid or json (its shape: infra/jsonout.py)",
                  "json": "the same as --format json"})
def plan(c: Any, format: str = "table", json: bool = False, profile: str = "") -> None:
    """Show stacks in order, networks, volumes, hostnames, ports, placement and the backup
    plan (or a Mermaid graph)."""
    from infra import plan as views

    project = load(profile, write=False)
    format = "json" if json else format
    if format == "mermaid":
        print(views.mermaid(project.catalogue), end="")
        return
    if format not in ("table", "json"):
        raise Exit(f"error: unknown format {format!r}; use table, mermaid or json", code=2)
    from rich.markup import escape
    from rich.table import Table

    catalogue, config = project.catalogue, project.config
    sections = [
        ("Stacks in dependency order", views.STACK_HEADERS, views.stack_rows(catalogue)),
        ("Networks (external)", views.NETWORK_HEADERS, views.network_rows(catalogue)),
        ("Volumes and owners", views.VOLUME_HEADERS, views.volume_rows(catalogue, config)),
        ("Hostnames (Traefik)", views.ROUTE_HEADERS,
         views.route_rows(catalogue, config["SSO_GROUPS"])),
        ("Published ports", views.PORT_HEADERS, views.port_rows(catalogue, config)),
        ("Placement (env/inventory.yaml; `invoke deploy`)", views.PLACEMENT_HEADERS,
         views.placement_rows(catalogue, config)),
        ("Backups (`invoke backup`)", views.BACKUP_HEADERS, views.backup_rows(catalogue, config)),
    ]
    if format == "json":
        from infra import jsonout

        names = ("stacks", "networks", "volumes", "hostnames", "ports", "placement", "backups")
        print(jsonout.document("plan", sections=jsonout.sections(
            {n: (h, r) for n, (_, h, r) in zip(names, sections, strict=True)})))
        return
    out = console()
    for title, headers, rows in sections:
        table = Table(title=title, title_justify="left")
        for header in headers:
            table.add_column(header)
        for row in rows:
            table.add_row(*(escape(str(cell)) for cell in row))
        out.print(table)


ns = Collection(render, plan)  # root tasks (tasks/__init__.py)
