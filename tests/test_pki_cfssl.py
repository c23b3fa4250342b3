"""The PKI against the real cfssl and openssl: every property is read back with openssl."""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from invoke import Config, Context

from infra import pki
from infra.config import load_config
from infra.errors import MissingToolError
from tests.conftest import PROJECT_ROOT, require_program

pytestmark = pytest.mark.tools

SETTINGS = {"DOMAIN": "example.test", "CA_NAME": "Test", "CA_ORGANIZATION": "Acme",
            "REGISTRY_EXTRA_HOSTS": "reg.example.org,10.0.0.100", "CERT_EXPIRY": "720h"}
REGISTRY_SANS = ["DNS:registry.example.test", "DNS:registry", "DNS:localhost",
                 "IP Address:127.0.0.1", "DNS:reg.example.org", "IP Address:10.0.0.100"]


def local() -> Context:
    return Context(Config(overrides={"run": {"in_stream": False}}))  # pytest captures stdin


def build_config(tmp: Path, **extra: str):
    env_dir = tmp / "env"
    env_dir.mkdir(exist_ok=True)
    shutil.copy(PROJECT_ROOT / "env" / "defaults.env", env_dir / "defaults.env")
    return load_config(PROJECT_ROOT, environ={"CERTS_DIR": str(tmp / "certs"), **SETTINGS,
                                              **extra}, env_dir=env_dir)


def converge(config, scope=None, **options) -> pki.Plan:
    spec = pki.pki_spec(config)
    c = local()
    plan = pki.plan_certs(spec, pki.read_states(c, spec), scope or spec.items, **options)
    paths = pki.cert_paths(config)
    pki.write_rendered(pki.render_cfssl_files(config, spec), paths.rendered_dir)
    pki.apply_plan(plan, spec, pki.Cfssl(), paths.rendered_dir)
    pki.write_chains(spec)
    return plan


def openssl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=check)


def text_of(cert: Path) -> str:
    return openssl("x509", "-in", str(cert), "-noout", "-text").stdout


def dates(cert: Path) -> tuple[datetime, datetime]:
    out = openssl("x509", "-in", str(cert), "-noout", "-startdate", "-enddate").stdout
    values = dict(line.split("=", 1) for line in out.splitlines())
    parse = lambda v: datetime.strptime(" ".join(v.split()), "%b %d %H:%M:%S %Y GMT")  # noqa: E731
    return parse(values["notBefore"]), parse(values["notAfter"])


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def issued(tmp_path_factory):
    """One complete PKI (built once: the read-only tests share it)."""
    require_program("cfssl")
    require_program("cfssljson")
    require_program("openssl")
    tmp = tmp_path_factory.mktemp("pki")
    config = build_config(tmp)
    converge(config)
    return config, pki.cert_paths(config)


def test_root_is_a_ca_with_path_length_one(issued):
    _, paths = issued
    text = text_of(paths.root)
    assert "CA:TRUE, pathlen:1" in text
    assert "Certificate Sign, CRL Sign" in text
    assert "Subject: C = US, ST = FL, L = Tampa, O = Acme, OU = infrastructure, CN = Test Root CA" \
        in text
    start, end = dates(paths.root)
    assert (end - start).total_seconds() == 87600 * 3600


def test_intermediate_has_pathlen_zero_and_is_signed_by_root(issued):
    _, paths = issued
    text = text_of(paths.intermediate)
    assert "CA:TRUE, pathlen:0" in text
    assert "Issuer: C = US, ST = FL, L = Tampa, O = Acme, OU = infrastructure, CN = Test Root CA" \
        in text
    assert openssl("verify", "-CAfile", str(paths.root), str(paths.intermediate)).returncode == 0


def _routed_hosts() -> list[str]:
    """Every host name the catalogue routes, with DOMAIN=example.test."""
    from infra import catalogue as cat
    from infra.config import load_config

    root = Path(__file__).resolve().parent.parent
    config = load_config(root, None, {"DOMAIN": "example.test"}, [], env_dir=root / "env")
    resolved = cat.resolve(cat.load_raw(root / "stacks"), config.public)
    return sorted({route.host for _, _, route in cat.all_routes(resolved)})


INGRESS_SANS = list(dict.fromkeys(["DNS:*.example.test", "DNS:example.test",
                                   *(f"DNS:{host}" for host in _routed_hosts())]))
assert "DNS:grafana.example.test" in INGRESS_SANS  # each routed name is listed explicitly


@pytest.mark.parametrize("leaf,eku,sans", [
    ("registry-server", "TLS Web Server Authentication", REGISTRY_SANS),
    ("registry-client", "TLS Web Client Authentication", REGISTRY_SANS),
    ("registry-peer", "TLS Web Server Authentication, TLS Web Client Authentication",
     REGISTRY_SANS),
    ("ingress", "TLS Web Server Authentication", INGRESS_SANS),
])
def test_leaves_constraints_names_usages_lifetime(issued, leaf, eku, sans):
    _, paths = issued
    cert = paths.certs_dir / f"{leaf}.pem"
    text = text_of(cert)
    assert "CA:FALSE" in text
    lines = text.splitlines()
    eku_line = lines[lines.index("            X509v3 Extended Key Usage: ") + 1].strip()
    assert eku_line == eku
    san_line = lines[lines.index("            X509v3 Subject Alternative Name: ") + 1].strip()
    assert sorted(san_line.split(", ")) == sorted(sans)
    start, end = dates(cert)
    assert (end - start).total_seconds() == 720 * 3600  # CERT_EXPIRY, as configured
    verify = openssl("verify", "-CAfile", str(paths.root), "-untrusted", str(paths.intermediate),
                     str(cert), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_private_keys_are_0600_and_the_root_key_exists_once(issued):
    _, paths = issued
    keys = sorted(paths.certs_dir.glob("*-key.pem"))
    assert len(keys) == 6
    assert {k.stat().st_mode & 0o777 for k in keys} == {0o600}
    root_key = paths.root_key.read_bytes()
    holders = [p for p in paths.certs_dir.rglob("*") if p.is_file() and root_key in p.read_bytes()]
    assert holders == [paths.root_key]


def test_chains(issued):
    _, paths = issued
    assert paths.ca_chain.read_text() == paths.intermediate.read_text() + paths.root.read_text()
    assert paths.registry_server_fullchain.read_text() == (
        paths.registry_server.read_text() + paths.intermediate.read_text())


def test_rendered_cfssl_files_are_kept_for_inspection(issued):
    _, paths = issued
    assert sorted(p.name for p in paths.rendered_dir.iterdir()) == [
        "ca.json", "cfssl.json", "ingress.json", "intermediate-ca.json", "registry.json"]


def test_a_sub_ca_under_the_intermediate_is_rejected(issued, tmp_path):
    """pathlen:0 on the intermediate: a CA it signs cannot issue valid leaves."""
    _, paths = issued
    ext = tmp_path / "ext.cnf"
    ext.write_text("[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                   "[leaf]\nbasicConstraints=CA:FALSE\nsubjectAltName=DNS:evil.example.test\n")

    def issue(name: str, ca: Path, ca_key: Path, section: str) -> Path:
        key, csr, cert = (tmp_path / f"{name}{s}" for s in ("-key.pem", ".csr", ".pem"))
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", str(key), "-subj", f"/CN={name}", "-out", str(csr))
        openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                "-set_serial", "7", "-days", "30", "-extfile", str(ext), "-extensions", section,
                "-out", str(cert))
        return cert

    sub = issue("sub", paths.intermediate, paths.intermediate_key, "ca")
    evil = issue("evil", sub, tmp_path / "sub-key.pem", "leaf")
    untrusted = tmp_path / "untrusted.pem"
    untrusted.write_text(paths.intermediate.read_text() + sub.read_text())
    verify = openssl("verify", "-CAfile", str(paths.root), "-untrusted", str(untrusted),
                     str(evil), check=False)
    assert verify.returncode != 0
    assert "path length constraint exceeded" in verify.stdout + verify.stderr


def test_verify_certs_passes_on_a_good_pki(issued):
    config, _ = issued
    checks = pki.verify_certs(local(), pki.pki_spec(config))
    assert [c for c in checks if not c.ok] == []
    assert len(checks) == 6 + 5  # six certificates, five chain files


def test_second_run_empty(issued):
    config, paths = issued
    before = snapshot(paths.certs_dir)
    plan = converge(config)
    assert plan.steps == ()
    assert snapshot(paths.certs_dir) == before


def test_replacing_the_root_reissues_everything_and_keeps_the_old_files(tmp_path):
    require_program("cfssl")
    config = build_config(tmp_path)
    converge(config, pki.SCOPES["intermediate"])
    paths = pki.cert_paths(config)
    old_root = paths.root.read_text()
    assert converge(config, pki.SCOPES["ca"]).steps == ()  # never silently
    plan = converge(config, pki.SCOPES["ca"], replace=pki.ROOT)
    assert [s.item for s in plan.steps] == [pki.ROOT, pki.INTERMEDIATE]
    assert paths.root.read_text() != old_root
    [backup] = (paths.certs_dir / "replaced").iterdir()
    assert (backup / "ca.pem").read_text() == old_root
    assert openssl("verify", "-CAfile", str(paths.root), str(paths.intermediate)).returncode == 0
    assert openssl("verify", "-CAfile", str(backup / "ca.pem"), str(paths.intermediate),
                   check=False).returncode != 0


def test_changed_names_reissue_only_the_registry_leaves(tmp_path):
    require_program("cfssl")
    config = build_config(tmp_path)
    converge(config)
    paths = pki.cert_paths(config)
    ingress_before = paths.ingress.read_bytes()
    changed = build_config(tmp_path, REGISTRY_EXTRA_HOSTS="reg.example.org,10.0.0.100,new.lan")
    plan = converge(changed)
    assert [s.item for s in plan.steps] == ["registry-server", "registry-client", "registry-peer"]
    assert "DNS:new.lan" in text_of(paths.registry_server)
    assert paths.ingress.read_bytes() == ingress_before


def test_renew_reissues_leaves_in_the_window_only(tmp_path):
    require_program("cfssl")
    config = build_config(tmp_path)
    converge(config)
    paths = pki.cert_paths(config)
    leaves = tuple(leaf.name for leaf in pki.pki_spec(config).leaves)
    ca_before = (paths.root.read_bytes(), paths.intermediate.read_bytes())
    assert converge(config, leaves, renew_days=10).steps == ()  # 30-day leaves
    server_before = paths.registry_server.read_bytes()
    plan = converge(config, leaves, renew_days=31)
    assert [s.item for s in plan.steps] == list(leaves)
    assert paths.registry_server.read_bytes() != server_before
    assert (paths.root.read_bytes(), paths.intermediate.read_bytes()) == ca_before


def test_rsa_keys_follow_configuration(tmp_path):
    require_program("cfssl")
    config = build_config(tmp_path, CA_KEY_ALGO="rsa", CA_KEY_SIZE="2048")
    converge(config, pki.SCOPES["ca"])
    assert "Public-Key: (2048 bit)" in text_of(pki.cert_paths(config).root)
    assert "rsaEncryption" in text_of(pki.cert_paths(config).root)


def test_missing_cfssl_says_how_to_install(tmp_path):
    with pytest.raises(MissingToolError) as err:
        pki.Cfssl(search_path=str(tmp_path))
    assert "golang-cfssl" in str(err.value) and err.value.program == "cfssl"
    (tmp_path / "cfssl").symlink_to(require_program("cfssl"))
    with pytest.raises(MissingToolError) as err:
        pki.Cfssl(search_path=str(tmp_path))
    assert err.value.program == "cfssljson"
