"""Show and validate the effective configuration."""

from __future__ import annotations

from invoke import Collection

from ._common import console, infra_task, load


@infra_task(default=True, help={"reveal_origin": "also show the file:line each value came from"})
def show(c, profile="", reveal_origin=False):
    """Print the effective configuration, the source of each value, secrets masked."""
    from rich.table import Table

    from infra.secrets import mask

    project = load(profile)
    config = project.config
    table = Table(title=f"configuration (profile: {config.profile or 'none'})")
    table.add_column("key")
    table.add_column("value")
    table.add_column("source")
    if reveal_origin:
        table.add_column("from")
    for setting in config.settings.values():
        value = mask(setting.value) if setting.secret else setting.value
        row = [setting.key, value, setting.source]
        if reveal_origin:
            row.append(setting.origin)
        table.add_row(*row)
    console().print(table)


@infra_task
def check(c, profile=""):
    """Validate configuration and catalogue; exit non-zero with every problem found."""
    project = load(profile)
    config = project.config
    console().print(f"[green]ok[/green]: {len(config.settings)} settings "
                    f"({len(config.secrets)} secrets), {len(project.catalogue.stacks)} stacks, "
                    f"profile {config.profile or 'none'}")


ns = Collection("config", show, check)
