"""Private PKI with cfssl: root CA -> intermediate CA (pathlen 0) -> leaf certificates.

Data flows one way: configuration -> ``PkiSpec`` -> rendered cfssl JSON -> facts about the files
on disk (``CertState``, parsed from openssl) -> ``Plan`` -> ``apply_plan`` (cfssl through plumbum)
-> chain files. Everything except ``Cfssl``, ``read_states``, ``verify_certs`` and ``apply_trust``
is pure. The root key is only ever read by cfssl in place, never copied.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .config import Config
from .errors import ConfigError, InfraError, MissingToolError, Problem
from .fsutil import atomic_write

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "cfssl"
KEY_SIZES = {"ecdsa": (256, 384, 521), "rsa": (2048, 4096)}
CFSSL_HINT = ("install cfssl and cfssljson: on Debian/Ubuntu `sudo apt-get install golang-cfssl`; "
              "elsewhere the release binaries from https://github.com/cloudflare/cfssl/releases")
OPENSSL_HINT = "install openssl: on Debian/Ubuntu `sudo apt-get install openssl`"

ROOT = "root"
INTERMEDIATE = "intermediate"
# Extended key usage openssl prints for each cfssl profile.
PROFILE_EKU = {
    "server": ("TLS Web Server Authentication",),
    "client": ("TLS Web Client Authentication",),
    "peer": ("TLS Web Server Authentication", "TLS Web Client Authentication"),
}
PROFILE_PURPOSE = {"server": ("sslserver",), "client": ("sslclient",),
                   "peer": ("sslserver", "sslclient")}
# Which items each task is responsible for (missing prerequisites are created too).
SCOPES = {
    "ca": (ROOT,),
    "intermediate": (ROOT, INTERMEDIATE),
    "registry": (ROOT, INTERMEDIATE, "registry-server", "registry-client", "registry-peer"),
}
ROOT_REPLACE_WARNING = (
    "replacing the root CA breaks every certificate issued under the old one: the intermediate "
    "and all leaves are reissued here, but every docker host that trusts the old root "
    "(certs.d/<registry>/ca.crt) must run `invoke certs.trust` again, every browser or OS trust "
    "store holding the old ca.pem must import the new one, and services serving the old "
    "certificates must be restarted. The old files are kept under CERTS_DIR/replaced/.")
INTERMEDIATE_REPLACE_WARNING = (
    "replacing the intermediate CA reissues every leaf certificate: services serving the old "
    "ones (zot, traefik) must be restarted, and clients holding old registry-client "
    "certificates need the new ones. The root stays, so docker trust (certs.d) is unaffected. "
    "The old files are kept under CERTS_DIR/replaced/.")


# ------------------------------------------------------------------ spec and paths


@dataclass(frozen=True)
class LeafSpec:
    name: str  # file stem: <name>.pem, <name>-key.pem
    profile: str  # cfssl signing profile: server | client | peer
    csr_file: str  # rendered CSR JSON it is issued from
    hosts: tuple[str, ...]  # the SANs, exactly


@dataclass(frozen=True)
class PkiSpec:
    certs_dir: Path
    key_algo: str
    key_size: int
    leaf_lifetime: timedelta
    renew_days: int
    leaves: tuple[LeafSpec, ...]

    def leaf(self, name: str) -> LeafSpec:
        return next(leaf for leaf in self.leaves if leaf.name == name)

    @property
    def items(self) -> tuple[str, ...]:
        return (ROOT, INTERMEDIATE, *(leaf.name for leaf in self.leaves))


@dataclass(frozen=True)
class CertPaths:
    """Where every PKI file lives (for templates and other tasks: pure, touches nothing)."""

    certs_dir: Path
    root: Path
    root_key: Path
    intermediate: Path
    intermediate_key: Path
    ca_chain: Path  # intermediate + root: what clients trust besides the root
    registry_server: Path
    registry_server_key: Path
    registry_server_fullchain: Path  # leaf + intermediate: what the registry serves
    registry_client: Path
    registry_client_key: Path
    registry_peer: Path
    registry_peer_key: Path
    ingress: Path
    ingress_key: Path
    ingress_fullchain: Path  # leaf + intermediate: what Traefik serves when ACME is off
    rendered_dir: Path  # the cfssl JSON rendered from configuration


def cert_paths(config: Config) -> CertPaths:
    d = config.path("CERTS_DIR")
    return CertPaths(
        certs_dir=d,
        root=d / "ca.pem", root_key=d / "ca-key.pem",
        intermediate=d / "intermediate_ca.pem", intermediate_key=d / "intermediate_ca-key.pem",
        ca_chain=d / "ca-chain.pem",
        registry_server=d / "registry-server.pem",
        registry_server_key=d / "registry-server-key.pem",
        registry_server_fullchain=d / "registry-server-fullchain.pem",
        registry_client=d / "registry-client.pem",
        registry_client_key=d / "registry-client-key.pem",
        registry_peer=d / "registry-peer.pem", registry_peer_key=d / "registry-peer-key.pem",
        ingress=d / "ingress.pem", ingress_key=d / "ingress-key.pem",
        ingress_fullchain=d / "ingress-fullchain.pem",
        rendered_dir=d / "cfssl",
    )


def item_files(certs_dir: Path, item: str) -> tuple[Path, Path]:
    """(certificate, key) of one item."""
    stem = {ROOT: "ca", INTERMEDIATE: "intermediate_ca"}.get(item, item)
    return certs_dir / f"{stem}.pem", certs_dir / f"{stem}-key.pem"


def fullchain_path(certs_dir: Path, leaf: str) -> Path:
    return certs_dir / f"{leaf}-fullchain.pem"


ZOT_TLS_DIR = "/etc/zot/tls"


def registry_tls(config: Config) -> dict[str, str] | None:
    """Zot's TLS files when ZOT_TLS_ENABLED: container paths for its config, host paths to mount."""
    if not config.flag("ZOT_TLS_ENABLED"):
        return None
    paths = cert_paths(config)
    return {
        "cert": f"{ZOT_TLS_DIR}/registry-server-fullchain.pem",
        "key": f"{ZOT_TLS_DIR}/registry-server-key.pem",
        "host_cert": str(paths.registry_server_fullchain),
        "host_key": str(paths.registry_server_key),
    }


def registry_hosts(config: Config) -> tuple[str, ...]:
    """The registry certificate's names: FQDN first (it is the CN), then the fixed ones, extras."""
    extras = [h.strip() for h in config.get("REGISTRY_EXTRA_HOSTS").split(",") if h.strip()]
    names = [f"registry.{config['DOMAIN']}", "registry", "localhost", "127.0.0.1", *extras]
    return tuple(dict.fromkeys(names))


def ingress_hosts(config: Config) -> tuple[str, ...]:
    """The wildcard and the bare domain, plus every routed host name from the catalogue.

    The routed names are listed one by one because TLS clients (OpenSSL, browsers) refuse a
    wildcard directly under a top-level name such as ``*.localhost``, the default domain.
    """
    from . import catalogue as cat

    resolved = cat.resolve(cat.load_raw(cat.stacks_dir(config.project_root)), config.public)
    routed = sorted({route.host for _, _, route in cat.all_routes(resolved)})
    names = [f"*.{config['DOMAIN']}", config["DOMAIN"], *routed]
    return tuple(dict.fromkeys(names))


def registry_addresses(config: Config) -> tuple[str, ...]:
    """host:port names docker may use for the registry (one certs.d folder each)."""
    port = config["ZOT_PORT"]
    direct = [f"{host}:{port}" for host in registry_hosts(config) if not host.startswith("*")]
    return (*direct, f"registry.{config['DOMAIN']}")  # through the ingress on 443


_DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: str) -> timedelta | None:
    """A cfssl (Go) duration like 8760h or 90h30m; None when it is not one."""
    match = _DURATION_RE.match(value.strip())
    if not value.strip() or not match:
        return None
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    return total if total > timedelta(0) else None


def pki_spec(config: Config) -> PkiSpec:
    """Validate the certificate settings; ConfigError names every bad key and its fix."""
    problems: list[Problem] = []
    algo = config["CA_KEY_ALGO"].strip().lower()
    size_text = config["CA_KEY_SIZE"].strip()
    if algo not in KEY_SIZES:
        problems.append(Problem(f"{algo!r} is not a key algorithm cfssl supports",
                                key="CA_KEY_ALGO", fix="use ecdsa or rsa"))
    elif not size_text.isdigit() or int(size_text) not in KEY_SIZES[algo]:
        sizes = ", ".join(str(s) for s in KEY_SIZES[algo])
        problems.append(Problem(f"{size_text!r} is not a valid {algo} key size",
                                key="CA_KEY_SIZE", fix=f"use one of {sizes} with {algo}"))
    lifetimes = {}
    for key in ("CA_ROOT_EXPIRY", "CA_INTERMEDIATE_EXPIRY", "CERT_EXPIRY"):
        lifetimes[key] = parse_duration(config[key])
        if lifetimes[key] is None:
            problems.append(Problem(f"{config[key]!r} is not a duration", key=key,
                                    fix="use hours as cfssl expects, e.g. 8760h (one year)"))
    renew = config.get("CERT_RENEW_DAYS", "30").strip()
    if not renew.isdigit() or not 0 < int(renew) <= 3650:
        problems.append(Problem(f"{renew!r} is not a number of days", key="CERT_RENEW_DAYS",
                                fix="use a whole number from 1 to 3650"))
    if problems:
        raise ConfigError(problems)
    certs_dir = config.path("CERTS_DIR")
    registry = registry_hosts(config)
    leaves = (
        LeafSpec("registry-server", "server", "registry.json", registry),
        LeafSpec("registry-client", "client", "registry.json", registry),
        LeafSpec("registry-peer", "peer", "registry.json", registry),
        LeafSpec("ingress", "server", "ingress.json", ingress_hosts(config)),
    )
    return PkiSpec(certs_dir, algo, int(size_text), lifetimes["CERT_EXPIRY"] or timedelta(0),
                   int(renew), leaves)


def render_cfssl_files(config: Config, spec: PkiSpec,
                       templates_dir: Path = TEMPLATES_DIR) -> dict[str, str]:
    """The cfssl CSR and signing-profile JSON, rendered from configuration: {file name: text}."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    context: dict[str, Any] = {
        **config.public,
        "key_algo": spec.key_algo,
        "key_size": spec.key_size,
        "names": {"C": config["CA_COUNTRY"], "ST": config["CA_STATE"],
                  "L": config["CA_LOCALITY"], "O": config["CA_ORGANIZATION"],
                  "OU": config["CA_UNIT"]},
        "registry_hosts": list(registry_hosts(config)),
        "ingress_hosts": list(ingress_hosts(config)),
    }
    rendered = {}
    for template in sorted(templates_dir.glob("*.json.j2")):
        text = env.get_template(template.name).render(context)
        name = template.name.removesuffix(".j2")
        # Re-serialise: proves the template produced JSON, and gives a stable layout.
        try:
            rendered[name] = json.dumps(json.loads(text), indent=2) + "\n"
        except json.JSONDecodeError as exc:
            raise InfraError(f"{template} did not render valid JSON: {exc}") from exc
    return rendered


# ------------------------------------------------------------------ facts (openssl)

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


# ------------------------------------------------------------------ plan


@dataclass(frozen=True)
class Step:
    item: str
    action: str  # create | reissue | replace
    reason: str


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...] = ()
    kept: tuple[tuple[str, str], ...] = ()  # (item, why it stays)
    problems: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()
    protect: tuple[str, ...] = ()  # key files others may read: made 0600 first

    def step(self, item: str) -> Step | None:
        return next((s for s in self.steps if s.item == item), None)


def _days_left(facts: CertFacts, now: datetime) -> float:
    return (facts.not_after - now).total_seconds() / 86400


def plan_certs(spec: PkiSpec, states: Mapping[str, CertState], scope: Collection[str], *,
               replace: str | None = None, renew_days: int | None = None,
               force_leaves: bool = False, now: datetime | None = None) -> Plan:
    """Decide what to create, reissue or replace; existing CAs stay unless ``replace`` names one.

    ``scope`` lists the items the caller asked for; a replaced CA also reissues every leaf that
    exists (leaves under the old CA would no longer validate).
    """
    now = now or datetime.now(UTC)
    steps: list[Step] = []
    kept: list[tuple[str, str]] = []
    problems: list[Problem] = []
    warnings: list[str] = []
    d = spec.certs_dir
    root, inter = states[ROOT], states[INTERMEDIATE]
    protect = tuple(str(item_files(d, item)[1]) for item, state in states.items()
                    if state.key_present and state.key_mode & 0o077)
    for item, state in states.items():
        if state.key_present and not state.key_valid:
            again = (f"`invoke certs.{'ca' if item == ROOT else item} --replace`"
                     if item in (ROOT, INTERMEDIATE) else
                     "moving the certificate and the key away, then `invoke certs`")
            problems.append(Problem(f"{item_files(d, item)[1]} is not a readable private key",
                                    key="CERTS_DIR",
                                    fix=f"restore it from backup, or start it again: {again}"))

    root_action = None
    if replace == ROOT:
        root_action = "replace" if root.cert else "create"
        warnings.append(ROOT_REPLACE_WARNING)
    elif root.cert is None:
        if root.key_present:
            problems.append(Problem(f"{d / 'ca-key.pem'} exists without ca.pem", key="CERTS_DIR",
                                    fix="restore ca.pem from backup, or run "
                                        "`invoke certs.ca --replace` to start a new CA"))
        elif inter.cert is not None:
            problems.append(Problem("ca.pem is missing but the intermediate signed by it exists",
                                    key="CERTS_DIR",
                                    fix="restore ca.pem and ca-key.pem from backup, or run "
                                        "`invoke certs.ca --replace` to build a new hierarchy"))
        else:
            root_action = "create"
    if root_action:
        steps.append(Step(ROOT, root_action, "--replace given" if root_action == "replace"
                          and replace == ROOT else "missing"))
    elif root.cert:
        kept.append((ROOT, f"valid until {root.cert.not_after:%Y-%m-%d}"))

    inter_action = None
    if root_action == "replace" or replace == INTERMEDIATE or (root_action and inter.cert):
        inter_action = "replace" if inter.cert else "create"
        if replace == INTERMEDIATE:
            warnings.append(INTERMEDIATE_REPLACE_WARNING)
        reason = "--replace given" if replace == INTERMEDIATE else "the root CA is new"
    elif inter.cert is None and INTERMEDIATE in scope:
        if inter.key_present:
            problems.append(Problem(f"{d / 'intermediate_ca-key.pem'} exists without "
                                    "intermediate_ca.pem", key="CERTS_DIR",
                                    fix="restore intermediate_ca.pem from backup, or run "
                                        "`invoke certs.intermediate --replace`"))
        else:
            inter_action, reason = "create", "missing"
    elif inter.cert and root.cert and inter.cert.authority_key_id != root.cert.subject_key_id:
        problems.append(Problem("intermediate_ca.pem was not issued by ca.pem", key="CERTS_DIR",
                                fix="restore the matching pair from backup, or run "
                                    "`invoke certs.intermediate --replace`"))
    if inter_action:
        steps.append(Step(INTERMEDIATE, inter_action, reason))
        if not root_action and not root.key_present:
            problems.append(Problem(f"{d / 'ca-key.pem'} is missing, so the intermediate cannot "
                                    "be signed", key="CERTS_DIR",
                                    fix="put the offline root key back for this run"))
    elif inter.cert:
        kept.append((INTERMEDIATE, f"valid until {inter.cert.not_after:%Y-%m-%d}"))

    leaf_steps = []
    for leaf in spec.leaves:
        state = states[leaf.name]
        cert = state.cert
        action, why = None, ""
        if inter_action and (cert or leaf.name in scope):
            action, why = ("reissue" if cert else "create"), "the intermediate CA is new"
        elif leaf.name not in scope:
            continue
        elif cert is None:
            action, why = "create", "missing"
        elif not state.key_present:
            action, why = "reissue", "its key is missing"
        elif inter.cert and cert.authority_key_id != inter.cert.subject_key_id:
            action, why = "reissue", "not issued by the current intermediate CA"
        elif set(cert.sans) != set(leaf.hosts):
            added = sorted(set(leaf.hosts) - set(cert.sans))
            removed = sorted(set(cert.sans) - set(leaf.hosts))
            action, why = "reissue", f"names changed (added {added}, removed {removed})"
        elif _days_left(cert, now) < 0:
            action, why = "reissue", f"expired on {cert.not_after:%Y-%m-%d}"
        elif force_leaves:
            action, why = "reissue", "--force given"
        elif renew_days is not None and _days_left(cert, now) <= renew_days:
            action, why = "reissue", f"expires in {_days_left(cert, now):.0f} days"
        if action:
            leaf_steps.append(Step(leaf.name, action, why))
        elif cert:
            kept.append((leaf.name, f"valid until {cert.not_after:%Y-%m-%d}"))
    for ca_name, ca in ((INTERMEDIATE, inter), (ROOT, root)):
        if leaf_steps and not inter_action and not root_action and ca.cert \
                and _days_left(ca.cert, now) < 0:
            problems.append(Problem(
                f"the {'intermediate' if ca_name == INTERMEDIATE else 'root'} CA expired on "
                f"{ca.cert.not_after:%Y-%m-%d}: a certificate issued under it would not "
                "validate", key="CERTS_DIR",
                fix=f"replace it: `invoke certs.{'ca' if ca_name == ROOT else ca_name} "
                    "--replace`"))
    if leaf_steps and not inter_action and inter.cert and not inter.key_present:
        problems.append(Problem(f"{d / 'intermediate_ca-key.pem'} is missing, so no leaf can be "
                                "issued", key="CERTS_DIR",
                                fix="restore it from backup, or run "
                                    "`invoke certs.intermediate --replace`"))
    if leaf_steps and not inter_action and inter.cert is None:
        problems.append(Problem("there is no intermediate CA to issue leaves", key="CERTS_DIR",
                                fix="run `invoke certs` (or `invoke certs.intermediate`) first"))
    steps += leaf_steps

    threshold = renew_days if renew_days is not None else spec.renew_days
    for item in spec.items:
        cert = states[item].cert
        if cert and not any(s.item == item for s in steps) and _days_left(cert, now) <= threshold:
            days = _days_left(cert, now)
            state_text = "has expired" if days < 0 else f"expires in {days:.0f} days"
            hint = ("run `invoke certs.renew`" if item not in (ROOT, INTERMEDIATE)
                    else f"plan its replacement (`invoke certs.{'ca' if item == ROOT else item}"
                         " --replace`)")
            warnings.append(f"{item} {state_text}: {hint}")
    return Plan(tuple(steps), tuple(kept), tuple(problems), tuple(warnings), protect)


# ------------------------------------------------------------------ apply (cfssl via plumbum)


class Cfssl:
    """cfssl + cfssljson, found on PATH (or ``search_path``) before anything is written."""

    def __init__(self, search_path: str | None = None):
        from plumbum import local

        found = {}
        for program in ("cfssl", "cfssljson"):
            location = shutil.which(program, path=search_path)
            if location is None:
                raise MissingToolError(program, CFSSL_HINT)
            found[program] = local[location]
        self._cfssl, self._cfssljson = found["cfssl"], found["cfssljson"]

    def _cfssl_json(self, *args: str) -> str:
        from plumbum import ProcessExecutionError

        try:
            return str(self._cfssl(*args))
        except ProcessExecutionError as exc:
            log = [line for line in str(exc.stderr).splitlines() if "[INFO]" not in line]
            raise InfraError(f"cfssl {args[0]} failed: {' '.join(log).strip()}") from None

    def _bare(self, output: str, prefix: Path) -> None:
        (self._cfssljson["-bare", str(prefix)] << output)()

    def init_ca(self, csr_file: Path, prefix: Path) -> None:
        self._bare(self._cfssl_json("gencert", "-loglevel=2", "-initca", str(csr_file)), prefix)

    def sign(self, ca: Path, ca_key: Path, config_file: Path, profile: str, csr: Path,
             prefix: Path) -> None:
        self._bare(self._cfssl_json("sign", "-loglevel=2", f"-ca={ca}", f"-ca-key={ca_key}",
                                    f"-config={config_file}", f"-profile={profile}", str(csr)),
                   prefix)

    def gencert(self, ca: Path, ca_key: Path, config_file: Path, profile: str, csr_file: Path,
                prefix: Path) -> None:
        self._bare(self._cfssl_json("gencert", "-loglevel=2", f"-ca={ca}", f"-ca-key={ca_key}",
                                    f"-config={config_file}", f"-profile={profile}",
                                    str(csr_file)), prefix)


def write_rendered(rendered: Mapping[str, str], rendered_dir: Path) -> list[Path]:
    return [rendered_dir / name for name, text in rendered.items()
            if atomic_write(rendered_dir / name, text, 0o644)]


def apply_plan(plan: Plan, spec: PkiSpec, cfssl: Cfssl, rendered_dir: Path,
               notify: Callable[[Step], None] = lambda step: None,
               now: datetime | None = None) -> list[Path]:
    """Run the plan's steps in a private work folder, then move the results into place.

    Nothing lands in CERTS_DIR unless every step succeeded. Replaced CA files are moved (not
    copied) to CERTS_DIR/replaced/<UTC time>/. Returns the files that changed.
    """
    if plan.problems:
        raise ConfigError(list(plan.problems))
    protected = []
    for key in plan.protect:  # before anything else: a key others could read, no longer
        os.chmod(key, 0o600)
        protected.append(Path(key))
    if not plan.steps:
        return protected
    d = spec.certs_dir
    d.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=d))
    produced: dict[str, Path] = {}  # item -> prefix in work

    def current(item: str) -> tuple[Path, Path]:
        if item in produced:
            return Path(f"{produced[item]}.pem"), Path(f"{produced[item]}-key.pem")
        return item_files(d, item)

    profiles = rendered_dir / "cfssl.json"
    try:
        for step in plan.steps:
            notify(step)
            cert_file = item_files(d, step.item)[0]
            prefix = work / cert_file.stem
            if step.item == ROOT:
                cfssl.init_ca(rendered_dir / "ca.json", prefix)
            elif step.item == INTERMEDIATE:
                cfssl.init_ca(rendered_dir / "intermediate-ca.json", prefix)
                root_cert, root_key = current(ROOT)
                cfssl.sign(root_cert, root_key, profiles, "intermediate_ca",
                           Path(f"{prefix}.csr"), prefix)
            else:
                leaf = spec.leaf(step.item)
                inter_cert, inter_key = current(INTERMEDIATE)
                cfssl.gencert(inter_cert, inter_key, profiles, leaf.profile,
                              rendered_dir / leaf.csr_file, prefix)
            produced[step.item] = prefix
        from .interrupt import shielded

        # a key without its certificate, or a CA replaced without its leaves, is not a state
        # to stop in: the moves finish, then an interruption takes effect
        with shielded("moving the new certificates and keys into place"):
            return protected + _move_into_place(plan, produced, d, now or datetime.now(UTC))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _move_into_place(plan: Plan, produced: Mapping[str, Path], d: Path,
                     now: datetime) -> list[Path]:
    backup = d / "replaced" / now.strftime("%Y%m%dT%H%M%SZ")
    changed = []
    for step in plan.steps:
        prefix = produced[step.item]
        cert, key = item_files(d, step.item)
        files = [(Path(f"{prefix}-key.pem"), key, 0o600), (Path(f"{prefix}.pem"), cert, 0o644),
                 (Path(f"{prefix}.csr"), cert.with_suffix(".csr"), 0o644)]
        if step.action == "replace":
            backup.mkdir(parents=True, exist_ok=True, mode=0o700)
            for _, target, _mode in files:
                if target.exists():
                    os.replace(target, backup / target.name)
        # Key first: a crash in between leaves a cert that plan_certs reissues, not a stray key.
        for source, target, mode in files:
            if source.exists():
                os.chmod(source, mode)
                os.replace(source, target)
                changed.append(target)
    return changed


def chain_contents(spec: PkiSpec) -> dict[Path, str]:
    """The bundles to write: ca-chain.pem (intermediate + root), <leaf>-fullchain.pem."""
    d = spec.certs_dir
    root, _ = item_files(d, ROOT)
    inter, _ = item_files(d, INTERMEDIATE)
    if not (root.is_file() and inter.is_file()):
        return {}
    inter_pem = inter.read_text()
    wanted = {d / "ca-chain.pem": inter_pem + root.read_text()}
    for leaf in spec.leaves:
        cert, _ = item_files(d, leaf.name)
        if cert.is_file():
            wanted[fullchain_path(d, leaf.name)] = cert.read_text() + inter_pem
    return wanted


def write_chains(spec: PkiSpec) -> list[Path]:
    return [path for path, text in chain_contents(spec).items() if atomic_write(path, text, 0o644)]


# ------------------------------------------------------------------ verify


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


# ------------------------------------------------------------------ trust (docker certs.d)


@dataclass(frozen=True)
class TrustTarget:
    path: str  # .../certs.d/<host:port>/ca.crt on the target host
    privileged: bool  # needs root (the rootful /etc/docker)


@dataclass(frozen=True)
class TrustResult:
    target: TrustTarget
    changed: bool


def trust_targets(addresses: Iterable[str], rootless: bool, home: str,
                  certs_d: str = "") -> list[TrustTarget]:
    """Where docker looks for a registry's CA: one ca.crt per registry host:port."""
    if certs_d:
        base, privileged = certs_d.rstrip("/"), False
    elif rootless:
        base, privileged = f"{home.rstrip('/')}/.config/docker/certs.d", False
    else:
        base, privileged = "/etc/docker/certs.d", True
    return [TrustTarget(f"{base}/{address}/ca.crt", privileged) for address in addresses]


def apply_trust(c: Any, targets: Sequence[TrustTarget], pem: str,
                dry: bool = False) -> list[TrustResult]:
    """Install the root certificate at each target through ``c`` (works over Fabric too)."""
    as_root = c.run("id -u", hide=True).stdout.strip() == "0"
    results = []
    for target in targets:
        run = c.sudo if target.privileged and not as_root else c.run
        path = shlex.quote(target.path)
        current = run(f"cat {path}", hide=True, warn=True)
        changed = not (current.ok and current.stdout == pem)
        if changed and not dry:
            folder = shlex.quote(target.path.rsplit("/", 1)[0])
            tmp = shlex.quote(f"{target.path}.tmp")
            script = (f"mkdir -p {folder} && printf %s {shlex.quote(pem)} > {tmp} "
                      f"&& chmod 0644 {tmp} && mv -f {tmp} {path}")
            run(f"sh -c {shlex.quote(script)}", hide=True)
        results.append(TrustResult(target, changed))
    return results

