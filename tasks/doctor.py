"""Preflight checks before anything is brought up (seed: Prerequisites, Port Requirements,
Troubleshooting)."""

from __future__ import annotations

from invoke import Collection, Exit

from ._common import console, infra_task, load


@infra_task(help={"socket": "engine socket (default: DOCKER_SOCKET)"})
def doctor(c, socket="", profile=""):
    """Preflight: RAM, disk, Linux, Docker >= 24, compose v2, free ports, rootless daemon."""
    from rich.markup import escape
    from rich.table import Table

    from infra.host import doctor as dr

    project = load(profile, write=False)
    config = project.config
    facts = dr.gather(c, str(config.path("DATA_ROOT")), socket or config["DOCKER_SOCKET"],
                      config.flag("ROOTLESS"))
    checks = dr.evaluate(facts, dr.required_ports(project.catalogue, config.public))
    colour = {dr.OK: "green", dr.WARN: "yellow", dr.FAIL: "red"}
    table = Table(title="doctor")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column)
    for check in checks:
        table.add_row(escape(check.name), f"[{colour[check.status]}]{check.status}[/]",
                      escape(check.detail), escape(check.fix))
    console().print(table)
    failures = dr.hard_failures(checks)
    if failures:
        raise Exit(f"doctor: {len(failures)} hard failure(s): "
                   f"{', '.join(check.name for check in failures)}", code=1)


ns = Collection(doctor)  # root tasks (tasks/__init__.py)
