"""The PKI as configured: items, their names and paths, the cfssl JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import ConfigError, InfraError, Problem
from .constants import INTERMEDIATE, KEY_SIZES, ROOT, TEMPLATES_DIR


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


def routed_hosts(catalogue: Any) -> tuple[str, ...]:
    """Every host name the (resolved) catalogue routes: what the ingress certificate names."""
    from .. import catalogue as cat

    return tuple(sorted({route.host for _, _, route in cat.all_routes(catalogue)}))


def ingress_hosts(config: Config, routed: Sequence[str]) -> tuple[str, ...]:
    """The wildcard and the bare domain, plus every routed host name (``routed``: from the
    catalogue the caller has loaded; ``routed_hosts``).

    The routed names are listed one by one because TLS clients (OpenSSL, browsers) refuse a
    wildcard directly under a top-level name such as ``*.localhost``, the default domain.
    """
    names = [f"*.{config['DOMAIN']}", config["DOMAIN"], *sorted(routed)]
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


def pki_spec(config: Config, routed: Sequence[str] | None = None) -> PkiSpec:
    """Validate the certificate settings; ConfigError names every bad key and its fix.

    ``routed``: the host names the loaded catalogue routes (``routed_hosts``); a caller without
    a catalogue leaves it out and it is read from the stacks folder."""
    if routed is None:
        from .. import catalogue as cat

        routed = routed_hosts(cat.resolve(cat.load_raw(cat.stacks_dir(config.project_root)),
                                          config.public))
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
        LeafSpec("ingress", "server", "ingress.json", ingress_hosts(config, routed)),
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
        "ingress_hosts": list(spec.leaf("ingress").hosts),
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


