"""Private PKI with cfssl: root CA -> intermediate CA (pathlen 0) -> leaf certificates.

Data flows one way: configuration -> ``PkiSpec`` (``spec``) -> rendered cfssl JSON -> facts
about the files on disk (``CertState``, parsed from openssl: ``facts``) -> ``Plan`` (``plan``)
-> ``apply_plan`` (cfssl through plumbum: ``cfssl``) -> chain files; ``verify`` checks what is
on disk, ``trust`` installs the root where docker hosts trust it. Everything except ``Cfssl``,
``read_states``, ``verify_certs`` and ``apply_trust`` is pure. The root key is only ever read
by cfssl in place, never copied. The names re-exported here are the package's API.
"""

from __future__ import annotations

from .cfssl import (
    Cfssl,
    apply_plan,
    chain_contents,
    write_chains,
    write_rendered,
)
from .constants import (
    CFSSL_HINT,
    INTERMEDIATE,
    INTERMEDIATE_REPLACE_WARNING,
    KEY_SIZES,
    OPENSSL_HINT,
    PROFILE_EKU,
    PROFILE_PURPOSE,
    ROOT,
    ROOT_REPLACE_WARNING,
    SCOPES,
    TEMPLATES_DIR,
)
from .converge import converge
from .facts import (
    ITEM_MARK,
    OPENSSL_X509_FACTS,
    UNREADABLE,
    CertFacts,
    CertState,
    parse_x509_facts,
    read_cert_facts,
    read_states,
)
from .plan import (
    Plan,
    Step,
    plan_certs,
)
from .spec import (
    ZOT_TLS_DIR,
    CertPaths,
    LeafSpec,
    PkiSpec,
    cert_paths,
    fullchain_path,
    ingress_hosts,
    item_files,
    parse_duration,
    pki_spec,
    registry_addresses,
    registry_hosts,
    registry_tls,
    render_cfssl_files,
    routed_hosts,
)
from .trust import (
    TrustResult,
    TrustTarget,
    apply_trust,
    trust_targets,
)
from .verify import (
    Check,
    expected_problems,
    verify_certs,
)

__all__ = [
    "CFSSL_HINT",
    "INTERMEDIATE",
    "INTERMEDIATE_REPLACE_WARNING",
    "ITEM_MARK",
    "KEY_SIZES",
    "OPENSSL_HINT",
    "OPENSSL_X509_FACTS",
    "PROFILE_EKU",
    "PROFILE_PURPOSE",
    "ROOT",
    "ROOT_REPLACE_WARNING",
    "SCOPES",
    "TEMPLATES_DIR",
    "UNREADABLE",
    "ZOT_TLS_DIR",
    "CertFacts",
    "CertPaths",
    "CertState",
    "Cfssl",
    "Check",
    "LeafSpec",
    "PkiSpec",
    "Plan",
    "Step",
    "TrustResult",
    "TrustTarget",
    "apply_plan",
    "apply_trust",
    "cert_paths",
    "chain_contents",
    "converge",
    "expected_problems",
    "fullchain_path",
    "ingress_hosts",
    "item_files",
    "parse_duration",
    "parse_x509_facts",
    "pki_spec",
    "plan_certs",
    "read_cert_facts",
    "read_states",
    "registry_addresses",
    "registry_hosts",
    "registry_tls",
    "render_cfssl_files",
    "routed_hosts",
    "trust_targets",
    "verify_certs",
    "write_chains",
    "write_rendered",
]
