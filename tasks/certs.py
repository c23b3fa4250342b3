"""Private PKI with cfssl: root CA, intermediate CA, registry and ingress certificates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from invoke import Collection, Exit

from ._common import console, infra_task, load, settings

if TYPE_CHECKING:
    from infra.config import Config
    from infra.pki import Plan

DRY_HELP = "show the plan; run nothing"


def _config(profile: str) -> Config:
    """Configuration only: certificates need neither the stack catalogue nor the secrets."""
    return settings(profile)


def _spec(profile: str) -> tuple[Config, Any]:
    """The configuration and the PKI it describes, the ingress certificate naming the routed
    hosts of the catalogue loaded here (parsed once; no secret is generated or written)."""
    from infra import pki

    project = load(profile, write=False)
    return project.config, pki.pki_spec(project.config, pki.routed_hosts(project.catalogue))


def _converge(c: Any, profile: str, scope: tuple[str, ...] | None, dry: bool,
              replace: str | None = None, renew_days: int | None = None,
              force_leaves: bool = False) -> None:
    """Plan against the files on disk, show the plan, apply it, rewrite the chains."""
    from infra import pki
    from infra.interrupt import track

    config, spec = _spec(profile)
    steps = track([])

    def show(plan: Any) -> None:
        _show_plan(plan, dry)
        steps.planned[:] = [f"{s.action} {s.item}" for s in plan.steps] + ["chains"]

    def notify(step: Any) -> None:
        steps.begin(f"{step.action} {step.item}")
        console().print(f"  [cyan]{step.action}[/cyan] {step.item} ({step.reason})")

    _, changed = pki.converge(c, config, spec, scope, dry=dry, whenever=True, replace=replace,
                              renew_days=renew_days, force_leaves=force_leaves,
                              cfssl=pki.Cfssl(), show=show, notify=notify,
                              chains=lambda: steps.begin("chains"))
    if dry:
        return
    steps.finish("chains")
    if changed:
        console().print(f"[green]done[/green]: {len(changed)} file(s) written in {spec.certs_dir}")
    else:
        console().print(f"[green]ok[/green]: nothing to do in {spec.certs_dir}")


def _show_plan(plan: Plan, dry: bool) -> None:
    """Kept items and warnings; the steps too when dry (otherwise they print as they run)."""
    from rich.markup import escape

    out = console()
    for item, why in plan.kept:
        out.print(f"  [dim]keep[/dim] {item} ({why})")
    for key in plan.protect:
        out.print(f"  [bold]{'would make' if dry else 'making'}[/bold] {escape(key)} readable "
                  "by its owner only (it was readable by others)")
    for step in plan.steps if dry or plan.problems else ():
        out.print(f"  [bold]would {step.action}[/bold] {step.item} ({step.reason})")
    for warning in plan.warnings:
        out.print(f"[yellow]warning[/yellow]: {warning}")


@infra_task(default=True, help={"dry": DRY_HELP})
def certs(c, profile="", dry=False):
    """Create every missing CA and certificate (root, intermediate, registry, ingress, chains)."""
    _converge(c, profile, None, dry)


@infra_task(help={"replace": "replace an existing root CA (breaks everything issued under it; "
                             "the warning says what)", "dry": DRY_HELP})
def ca(c, profile="", replace=False, dry=False):
    """Create the root CA (CA:TRUE, pathlen:1) if missing; --replace to make a new one."""
    from infra.pki import ROOT, SCOPES

    _converge(c, profile, SCOPES["ca"], dry, replace=ROOT if replace else None)


@infra_task(help={"replace": "replace an existing intermediate CA (every leaf is reissued)",
                  "dry": DRY_HELP})
def intermediate(c, profile="", replace=False, dry=False):
    """Create the intermediate CA (CA:TRUE, pathlen:0) signed by the root, if missing."""
    from infra.pki import INTERMEDIATE, SCOPES

    _converge(c, profile, SCOPES["intermediate"], dry, replace=INTERMEDIATE if replace else None)


@infra_task(help={"dry": DRY_HELP})
def registry(c, profile="", dry=False):
    """Issue the registry's server, client and peer certificates (reissued when names change)."""
    from infra.pki import SCOPES

    _converge(c, profile, SCOPES["registry"], dry)


@infra_task(help={"days": "reissue leaves expiring within this many days "
                          "(default: CERT_RENEW_DAYS)",
                  "force": "reissue every leaf certificate now", "dry": DRY_HELP})
def renew(c, profile="", days=0, force=False, dry=False):
    """Reissue leaf certificates that expire soon (CAs are never renewed silently)."""

    _, spec = _spec(profile)
    leaves = tuple(leaf.name for leaf in spec.leaves)
    _converge(c, profile, leaves, dry, renew_days=int(days) or spec.renew_days, force_leaves=force)


@infra_task
def chain(c, profile=""):
    """Write ca-chain.pem (intermediate + root) and <leaf>-fullchain.pem (leaf + intermediate)."""
    from infra import pki

    _, spec = _spec(profile)
    changed = pki.write_chains(spec)
    if not pki.chain_contents(spec):
        raise Exit("error: no CA yet: run `invoke certs` first", code=1)
    console().print(f"[green]ok[/green]: {len(changed)} chain file(s) written" if changed
                    else "[green]ok[/green]: chain files are up to date")


@infra_task
def verify(c, profile=""):
    """Check every certificate with openssl: chain, constraints, names, usages, key modes."""
    from infra import pki

    _, spec = _spec(profile)
    checks = pki.verify_certs(c, spec)
    for check in checks:
        mark = "[green]ok[/green]  " if check.ok else "[red]FAIL[/red]"
        console().print(f"{mark} {check.item}: {check.detail}")
    failed = [check for check in checks if not check.ok]
    if failed:
        raise Exit(f"error: {len(failed)} certificate check(s) failed", code=1)


@infra_task(help={"target": "HOST:PORT of a live TLS endpoint",
                  "servername": "name to verify and send as SNI (default: HOST)",
                  "cafile": "CA certificate to trust (default: the root CA in CERTS_DIR)",
                  "timeout": "seconds per connection attempt"})
def test_tls(c, target, profile="", servername="", cafile="", timeout=5):
    """Probe a TLS endpoint: chain valid for the name, protocol and cipher, TLS 1.0/1.1 refused."""
    from infra import pki, tlsprobe

    host, port = tlsprobe.parse_target(target)
    ca_file = cafile or str(pki.cert_paths(_config(profile)).root)
    report = tlsprobe.probe_tls(host, port, ca_file, servername, float(timeout))
    out = console()
    if report.verified:
        out.print(f"[green]ok[/green]   chain valid for {report.server_name} (trusting {ca_file})")
    else:
        out.print(f"[red]FAIL[/red] chain not valid for {report.server_name}: "
                  f"{report.verify_error}")
    out.print(f"     negotiated {report.protocol} with {report.cipher}")
    for legacy in report.legacy:
        mark = "[green]ok[/green]  " if legacy.refused else "[red]FAIL[/red]"
        out.print(f"{mark} {legacy.version}: {legacy.detail}")
    if not report.ok:
        raise Exit(f"error: {target} failed the TLS check", code=1)


@infra_task(iterable=["registry"],
            help={"registry": "registry host:port to trust the CA for (repeatable; default: "
                              "every registry name on ZOT_PORT, and registry.<DOMAIN>)",
                  "mode": "rootless or rootful (default: from ROOTLESS)",
                  "certs_d": "docker certs.d folder to write into instead of the mode's default",
                  "dry": DRY_HELP})
def trust(c, profile="", registry=None, mode="", certs_d="", dry=False):
    """Install the root CA as docker's certs.d/<registry>/ca.crt (rootless or rootful path)."""
    from infra import pki

    config = _config(profile)
    root = pki.cert_paths(config).root
    if not root.is_file():
        raise Exit(f"error: {root} is missing: run `invoke certs` first", code=1)
    if mode not in ("", "rootless", "rootful"):
        raise Exit(f"error: --mode {mode!r}: use rootless or rootful", code=2)
    rootless = config.flag("ROOTLESS") if not mode else mode == "rootless"
    home = c.run('printf %s "$HOME"', hide=True).stdout.strip()
    addresses = registry or pki.registry_addresses(config)
    targets = pki.trust_targets(addresses, rootless, home, certs_d)
    results = pki.apply_trust(c, targets, root.read_text(), dry=dry)
    for result in results:
        verb = ("would write" if dry else "wrote") if result.changed else "unchanged"
        console().print(f"  {verb} {result.target.path}")


ns = Collection("certs", certs, ca, intermediate, registry, chain, verify, test_tls, trust, renew)
