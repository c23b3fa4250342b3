"""`invoke check`: health of every service and of every routed URL, as one verdict."""

from __future__ import annotations

from invoke import Collection, Exit

from ._common import console, infra_task, load


@infra_task(iterable=["stack"], help={
    "stack": "stack to check (repeatable); default: every stack",
    "routes": "also request every routed URL through Traefik (default on; --no-routes skips)",
    "timeout": "seconds an external health probe may take",
    "json": "print one JSON document instead of the table (its shape: infra/jsonout.py)",
})
def check(c, stack=None, routes=True, timeout=20, json=False, profile=""):
    """Check every service's health and every route's answer; exit non-zero on any failure."""
    from rich.markup import escape
    from rich.table import Table

    from infra.bringup import checks, facts, probes, report
    from infra.bringup.session import helper_image
    from infra.pki import cert_paths

    project = load(profile, write=False)
    config, catalogue = project.config, project.catalogue
    names = list(stack) if stack else catalogue.names()
    https_port = config["TRAEFIK_HTTPS_PORT"]
    containers = facts.containers_by_project(facts.read_containers(c))
    rows = report.status_rows(catalogue, names, containers, https_port)
    running = {row.service for row in rows if row.state == "running"}
    helper = helper_image(config)
    probe_results = []
    for name in names:
        wanted = [s.name for s in catalogue[name].services if s.name in running]
        by_network: dict[str, list[probes.HttpCheck]] = {}
        for http in probes.http_checks(catalogue[name], wanted):
            by_network.setdefault(http.network, []).append(http)  # its home network
        for network, group in by_network.items():
            done = c.run(probes.probe_command(helper, network, group, timeout), hide=True,
                         warn=True)
            probe_results += probes.parse_probe_output(done.stdout)
    results = checks.service_results(rows, probe_results)
    if routes and "traefik" in names and not config.flag("ACME_ENABLED"):
        cacert = str(cert_paths(config).root)
        for route in checks.route_checks(catalogue, names, https_port, config["DOMAIN"]):
            answer = c.run(checks.route_command(route, https_port, cacert), hide=True,
                           warn=True)
            results.append(checks.route_result(route, answer.stdout, answer.stderr))
    failed = [r for r in results if not r.ok]
    if json:
        from infra import jsonout

        print(jsonout.document("check", ok=not failed, results=[
            {"stack": r.stack, "subject": r.subject, "ok": r.ok, "detail": r.detail}
            for r in results]))
        if failed:
            raise Exit(code=1)
        return
    table = Table(title="check")
    for column in ("stack", "subject", "result", "detail"):
        table.add_column(column)
    for result in results:
        mark = "[green]ok[/green]" if result.ok else "[red]FAIL[/red]"
        table.add_row(escape(result.stack), escape(result.subject), mark, escape(result.detail))
    console().print(table)
    if failed:
        raise Exit(f"error: {len(failed)} of {len(results)} checks failed", code=1)
    console().print(f"[green]all {len(results)} checks passed[/green]")


ns = Collection(check)  # root tasks (tasks/__init__.py)
