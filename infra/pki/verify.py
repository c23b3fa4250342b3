"""Checks of the files on disk against the spec: chains, usages, key pairs."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .cfssl import chain_contents
from .constants import INTERMEDIATE, PROFILE_EKU, PROFILE_PURPOSE, ROOT
from .facts import CertFacts, _require_openssl, read_cert_facts
from .plan import _days_left
from .spec import PkiSpec, item_files


@dataclass(frozen=True)
class Check:
    item: str
    ok: bool
    detail: str


def expected_problems(item: str, facts: CertFacts, spec: PkiSpec) -> list[str]:
    """What is wrong with a certificate's content, compared with what this PKI issues (pure)."""
    found = []
    if item == ROOT:
        if not facts.is_ca or facts.path_len != 1:
            found.append(f"expected CA:TRUE, pathlen:1 (is_ca={facts.is_ca}, "
                         f"pathlen={facts.path_len})")
        if not {"Certificate Sign", "CRL Sign"} <= set(facts.key_usage):
            found.append(f"key usage {facts.key_usage} lacks cert sign / CRL sign")
    elif item == INTERMEDIATE:
        if not facts.is_ca or facts.path_len != 0:
            found.append(f"expected CA:TRUE, pathlen:0 (is_ca={facts.is_ca}, "
                         f"pathlen={facts.path_len})")
    else:
        leaf = spec.leaf(item)
        if facts.is_ca:
            found.append("a leaf must be CA:FALSE")
        if set(facts.sans) != set(leaf.hosts):
            found.append(f"names {sorted(facts.sans)} differ from configured "
                         f"{sorted(leaf.hosts)}: run `invoke certs`")
        if set(facts.ext_key_usage) != set(PROFILE_EKU[leaf.profile]):
            found.append(f"extended key usage {facts.ext_key_usage} does not fit profile "
                         f"{leaf.profile}")
    return found


def verify_certs(c: Any, spec: PkiSpec, now: datetime | None = None) -> list[Check]:
    """Check every file with openssl: chains, constraints, names, usages, key modes, key match."""
    _require_openssl(c)
    now = now or datetime.now(UTC)
    d = spec.certs_dir
    root, _ = item_files(d, ROOT)
    inter, _ = item_files(d, INTERMEDIATE)
    checks: list[Check] = []
    for item in spec.items:
        cert, key = item_files(d, item)
        facts = read_cert_facts(c, cert)
        if facts is None:
            checks.append(Check(item, False, f"{cert.name} is missing: run `invoke certs`"))
            continue
        found = expected_problems(item, facts, spec)
        if item == INTERMEDIATE:
            found += _openssl_verify(c, root, None, cert, ())
        elif item != ROOT:
            found += _openssl_verify(c, root, inter, cert, PROFILE_PURPOSE[spec.leaf(item).profile])
        if key.is_file():
            mode = key.stat().st_mode & 0o777
            if mode != 0o600:
                found.append(f"{key.name} has mode {mode:04o}; fix: chmod 600 {key}")
            if not _key_matches(c, cert, key):
                found.append(f"{key.name} does not belong to {cert.name}: run `invoke certs`")
        elif item != ROOT:  # the root key may be kept offline on purpose
            found.append(f"{key.name} is missing")
        days = _days_left(facts, now)
        if days < 0:
            found.append("has expired")
        detail = "; ".join(found) or f"ok, {days:.0f} days left"
        checks.append(Check(item, not found, detail))
    for path, text in chain_contents(spec).items():
        ok = path.is_file() and path.read_text() == text
        checks.append(Check(path.name, ok, "ok" if ok else "missing or stale: "
                                                            "run `invoke certs.chain`"))
    return checks


def _openssl_verify(c: Any, root: Path, untrusted: Path | None, cert: Path,
                    purposes: Sequence[str]) -> list[str]:
    found = []
    base = f"openssl verify -CAfile {shlex.quote(str(root))}"
    if untrusted:
        base += f" -untrusted {shlex.quote(str(untrusted))}"
    for purpose in purposes or ("",):
        option = f" -purpose {purpose}" if purpose else ""
        result = c.run(f"{base}{option} {shlex.quote(str(cert))}", hide=True, warn=True)
        if not result.ok:
            text = (result.stdout + result.stderr).strip().replace("\n", " ")
            found.append(f"openssl verify{option} failed: {text}")
    return found


def _key_matches(c: Any, cert: Path, key: Path) -> bool:
    from_cert = c.run(f"openssl x509 -in {shlex.quote(str(cert))} -noout -pubkey",
                      hide=True, warn=True)
    from_key = c.run(f"openssl pkey -in {shlex.quote(str(key))} -pubout", hide=True, warn=True)
    return bool(from_cert.ok and from_key.ok and from_cert.stdout == from_key.stdout)


