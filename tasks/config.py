"""Show and validate the effective configuration."""

from __future__ import annotations

from invoke import Collection

from ._common import console, infra_task, load


@infra_task(default=True, help={"reveal_origin": "also show the file:line each value came from",
                                "json": "print one JSON document (infra/jsonout.py), "
                                        "secrets masked"})
def show(c, profile="", reveal_origin=False, json=False):
    """Print the effective configuration, the source of each value, secrets masked."""
    from rich.markup import escape
    from rich.table import Table

    from infra.secrets import mask

    project = load(profile, write=False)
    config = project.config
    if json:
        from infra import jsonout

        print(jsonout.document("config", profile=config.profile or "", settings=[
            {"key": s.key, "value": mask(s.value) if s.secret else s.value,
             "source": s.source, "origin": s.origin} for s in config.settings.values()]))
        return
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
        table.add_row(*(escape(cell) for cell in row))  # values are text, never markup
    console().print(table)


@infra_task(help={"json": "print the result as JSON (ok, warnings) for scripts"})
def check(c, profile="", json=False):
    """Validate configuration, catalogue and image contracts; warn on pins not verified and
    on an image lock (env/images.lock) that no longer matches the pins."""
    import json as json_module

    from infra.contracts import contracts_dir, load_contracts, pin_drift
    from infra.host.daemon_json import desired_settings
    from infra.pki import pki_spec, routed_hosts

    project = load(profile, write=False)
    config = project.config
    # the same validation the certs and docker tasks use: check never passes what they refuse
    pki_spec(config, routed_hosts(project.catalogue))
    desired_settings(config.public, rootless=config.flag("ROOTLESS"))
    contracts = load_contracts(contracts_dir(project.root))
    warnings = pin_drift(contracts, config.public)
    from infra import updates
    from infra.errors import Problem

    if updates.lock_path(config.env_dir).is_file():  # a lock must match the pins
        lock = updates.read_lock(config.env_dir)
        warnings += [Problem(text, file=str(updates.lock_path(config.env_dir)),
                             fix="run `invoke pins.lock` to write it again")
                     for text in updates.lock_problems(lock, updates.pinned_images(project))]
    if json:
        print(json_module.dumps({
            "v": 1, "kind": "config.check",
            "ok": True, "settings": len(config.settings), "secrets": len(config.secrets),
            "stacks": len(project.catalogue.stacks), "contracts": len(contracts),
            "warnings": [{"key": w.key, "file": w.file, "message": w.message, "fix": w.fix}
                         for w in warnings]}, indent=2))
        return
    from rich.markup import escape

    out = console()
    for warning in warnings:
        out.print(f"[yellow]warning[/yellow]: {escape(str(warning))}", highlight=False)
    out.print(f"[green]ok[/green]: {len(config.settings)} settings "
              f"({len(config.secrets)} secrets), {len(project.catalogue.stacks)} stacks, "
              f"{len(contracts)} image contracts, profile {config.profile or 'none'}"
              + (f", {len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
                 if warnings else ""))


ns = Collection("config", show, check)
