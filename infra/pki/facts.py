"""What the certificate files on disk say (openssl), as data."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import InfraError, MissingToolError
from .constants import OPENSSL_HINT
from .spec import PkiSpec, item_files

OPENSSL_X509_FACTS = ("-noout -subject -issuer -serial -startdate -enddate -nameopt RFC2253 -ext "
                      "subjectAltName,basicConstraints,keyUsage,extendedKeyUsage,"
                      "subjectKeyIdentifier,authorityKeyIdentifier")


@dataclass(frozen=True)
class CertFacts:
    subject: str
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    is_ca: bool
    path_len: int | None
    key_usage: tuple[str, ...]
    ext_key_usage: tuple[str, ...]
    sans: tuple[str, ...]  # as cfssl takes them: DNS names and IPs without prefixes
    subject_key_id: str
    authority_key_id: str

    @property
    def lifetime(self) -> timedelta:
        return self.not_after - self.not_before


@dataclass(frozen=True)
class CertState:
    cert: CertFacts | None  # None: no certificate file
    key_present: bool
    key_valid: bool = True  # the key file parses as a private key
    key_mode: int = 0o600  # its permission bits


def _openssl_date(value: str) -> datetime:
    return datetime.strptime(" ".join(value.split()), "%b %d %H:%M:%S %Y GMT").replace(tzinfo=UTC)


def parse_x509_facts(text: str) -> CertFacts:
    """Parse ``openssl x509`` output made with OPENSSL_X509_FACTS."""
    top: dict[str, str] = {}
    ext: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[0].isspace() and current is not None:
            current.append(line.strip())
        elif line.startswith("X509v3 "):
            name = line.split(":", 1)[0].removeprefix("X509v3 ").strip()
            current = ext.setdefault(name, [])
        elif "=" in line:
            key, _, value = line.partition("=")
            top[key.strip()] = value.strip()
            current = None

    def items(name: str) -> tuple[str, ...]:
        joined = ", ".join(ext.get(name, []))
        return tuple(part.strip() for part in joined.split(",") if part.strip())

    constraints = items("Basic Constraints")
    path_len = next((int(c.split(":", 1)[1]) for c in constraints if c.startswith("pathlen:")),
                    None)
    sans = tuple(s.split(":", 1)[1].strip() if ":" in s else s
                 for s in items("Subject Alternative Name"))
    return CertFacts(
        subject=top.get("subject", ""), issuer=top.get("issuer", ""),
        serial=top.get("serial", ""),
        not_before=_openssl_date(top["notBefore"]), not_after=_openssl_date(top["notAfter"]),
        is_ca="CA:TRUE" in constraints, path_len=path_len,
        key_usage=items("Key Usage"), ext_key_usage=items("Extended Key Usage"), sans=sans,
        subject_key_id=" ".join(ext.get("Subject Key Identifier", [])).strip(),
        authority_key_id=" ".join(ext.get("Authority Key Identifier", []))
        .strip().removeprefix("keyid:"),
    )


def _require_openssl(c: Any) -> None:
    if not c.run("command -v openssl", hide=True, warn=True).ok:
        raise MissingToolError("openssl", OPENSSL_HINT)


def read_cert_facts(c: Any, path: Path) -> CertFacts | None:
    if not path.is_file():
        return None
    result = c.run(f"openssl x509 -in {shlex.quote(str(path))} {OPENSSL_X509_FACTS}",
                   hide=True, warn=True)
    if not result.ok:
        raise InfraError(f"{path} is not a readable PEM certificate: {result.stderr.strip()}\n"
                         "    fix: restore it from backup, or move it away to have it reissued")
    return parse_x509_facts(result.stdout)


ITEM_MARK = "::pki-item::"
UNREADABLE = "::unreadable::"


def read_states(c: Any, spec: PkiSpec) -> dict[str, CertState]:
    """Facts about every item: one openssl run per certificate, all in a single shell."""
    _require_openssl(c)
    files = {item: item_files(spec.certs_dir, item) for item in spec.items}
    present = [item for item, (cert, _) in files.items() if cert.is_file()]
    outputs: dict[str, str] = {}
    if present:
        script = "; ".join(
            f"echo {ITEM_MARK}{item}; openssl x509 -in {shlex.quote(str(files[item][0]))} "
            f"{OPENSSL_X509_FACTS} 2>&1 || echo {UNREADABLE}" for item in present)
        for chunk in c.run(script, hide=True, warn=True).stdout.split(ITEM_MARK)[1:]:
            item, _, body = chunk.partition("\n")
            if UNREADABLE in body:
                detail = body.replace(UNREADABLE, "").strip().splitlines()[:1]
                raise InfraError(f"{files[item][0]} is not a readable PEM certificate "
                                 f"({' '.join(detail)})\n    fix: restore it from backup, or "
                                 "move it away to have it reissued")
            outputs[item] = body
    keys = [item for item, (_, key) in files.items() if key.is_file()]
    bad_keys: set[str] = set()
    if keys:
        script = "; ".join(
            f"openssl pkey -in {shlex.quote(str(files[item][1]))} -noout >/dev/null 2>&1 || "
            f"echo {ITEM_MARK}{item}" for item in keys)
        found = c.run(script, hide=True, warn=True).stdout
        bad_keys = {line.removeprefix(ITEM_MARK).strip() for line in found.splitlines()
                    if line.startswith(ITEM_MARK)}
    return {item: CertState(parse_x509_facts(outputs[item]) if item in outputs else None,
                            key.is_file(), item not in bad_keys,
                            key.stat().st_mode & 0o777 if key.is_file() else 0o600)
            for item, (_, key) in files.items()}


