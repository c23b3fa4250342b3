"""`up` creates missing certificates (helper of infra.pki), cheaply when nothing changed.

Checking every certificate runs openssl several times (~0.6 s). A fingerprint of the settings,
the routed names, the PEM files (size, mtime, mode) and the day, recorded after a full check,
lets a no-op `up` skip that: any change of settings, names or files triggers the full check
again, and so does a new day (certificates expire while nothing changes).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..fsutil import atomic_write, sha256_hex

if TYPE_CHECKING:
    from ..project import Project

FINGERPRINT_FILE = "certificates.checked"


def fingerprint(project: Project) -> str | None:
    """Every public setting, every routed host name and every PEM file's size and mtime.

    Cheaper than ``pki.pki_spec`` (which resolves the catalogue again): any change in what
    the certificates could depend on makes the fingerprint differ. None: no certificates yet.
    """
    from ..catalogue import all_routes

    certs_dir = project.config.path("CERTS_DIR")
    files = sorted(certs_dir.glob("*.pem")) if certs_dir.is_dir() else []
    if not files:
        return None
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_mode)
             for p in files]
    hosts = sorted({route.host for _, _, route in all_routes(project.catalogue)})
    # and the day: certificates expire with nothing changing, so a full check once a day
    today = datetime.now(UTC).date().isoformat()
    return sha256_hex(json.dumps([sorted(project.config.public.items()), hosts, stats, today]))


def ensure_certificates(c: Any, project: Project, dry: bool) -> list[str]:
    """Create the missing CA and certificates; returns what it did (or would do)."""
    from .. import pki

    config = project.config
    marker = config.build_dir / FINGERPRINT_FILE
    before = fingerprint(project)
    if before and marker.is_file() and marker.read_text().strip() == before:
        return []
    spec = pki.pki_spec(config, pki.routed_hosts(project.catalogue))

    def lines(plan: Any, verb: str) -> list[str]:
        return ([f"{verb} {key} readable by its owner only" for key in plan.protect]
                + [f"{step.action} certificate {step.item} ({step.reason})"
                   for step in plan.steps])

    # the same converge step as `invoke certs` (infra/pki/converge.py)
    plan, written = pki.converge(c, config, spec, dry=dry)
    if dry:
        return lines(plan, "make")
    done = lines(plan, "made") if written else []
    after = fingerprint(project)
    if after:
        atomic_write(marker, after + "\n")
    return done
