"""Pure PKI core: settings validation, rendering, openssl parsing, planning, trust targets."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from invoke import MockContext, Result

from infra import pki
from infra.config import load_config
from infra.errors import ConfigError

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def make_config(project_root: Path, env_dir: Path, **overrides: str):
    return load_config(project_root, environ=overrides, env_dir=env_dir)


def test_key_algorithm_and_size_are_validated_with_a_fix(project_root, env_dir):
    # the configuration's one validation refuses them first (config.check says the same)
    with pytest.raises(ConfigError) as err:
        make_config(project_root, env_dir, CA_KEY_ALGO="dsa")
    assert "CA_KEY_ALGO" in str(err.value) and "ecdsa or rsa" in str(err.value)

    config = make_config(project_root, env_dir, CA_KEY_ALGO="rsa", CA_KEY_SIZE="256")
    with pytest.raises(ConfigError) as err:
        pki.pki_spec(config)
    assert "CA_KEY_SIZE" in str(err.value) and "2048, 4096" in str(err.value)

    with pytest.raises(ConfigError) as err:
        make_config(project_root, env_dir, CERT_EXPIRY="1 year", CERT_RENEW_DAYS="soon")
    assert len(err.value.problems) == 2  # every problem at once, not just the first


@pytest.mark.parametrize("algo,size", [("ecdsa", "256"), ("ecdsa", "384"), ("ecdsa", "521"),
                                       ("rsa", "2048"), ("rsa", "4096")])
def test_supported_keys_pass(project_root, env_dir, algo, size):
    spec = pki.pki_spec(make_config(project_root, env_dir, CA_KEY_ALGO=algo, CA_KEY_SIZE=size))
    assert (spec.key_algo, spec.key_size) == (algo, int(size))


def test_durations():
    assert pki.parse_duration("8760h") == timedelta(days=365)
    assert pki.parse_duration("90h30m") == timedelta(hours=90, minutes=30)
    assert pki.parse_duration("1y") is None
    assert pki.parse_duration("") is None
    assert pki.parse_duration("0h") is None


def test_rendered_json_follows_configuration(project_root, env_dir, tmp_path):
    config = make_config(project_root, env_dir, DOMAIN="example.test", CA_ORGANIZATION="Acme",
                         CA_LOCALITY="Oslo", CA_KEY_ALGO="rsa", CA_KEY_SIZE="2048",
                         REGISTRY_EXTRA_HOSTS="reg.example.org,10.0.0.100", CERT_EXPIRY="720h",
                         CERTS_DIR=str(tmp_path))
    rendered = {name: json.loads(text)
                for name, text in pki.render_cfssl_files(config, pki.pki_spec(config)).items()}
    assert set(rendered) == {"ca.json", "intermediate-ca.json", "registry.json", "ingress.json",
                             "cfssl.json"}
    assert rendered["ca.json"]["ca"] == {"expiry": "87600h", "pathlen": 1}
    assert rendered["ca.json"]["key"] == {"algo": "rsa", "size": 2048}
    assert rendered["ca.json"]["names"][0]["O"] == "Acme"
    assert rendered["intermediate-ca.json"]["names"][0]["L"] == "Oslo"
    assert rendered["registry.json"]["hosts"] == ["registry.example.test", "registry", "localhost",
                                                  "127.0.0.1", "reg.example.org", "10.0.0.100"]
    assert rendered["registry.json"]["CN"] == "registry.example.test"
    ingress = rendered["ingress.json"]["hosts"]
    assert ingress[:2] == ["*.example.test", "example.test"]
    # routed names listed one by one (clients refuse *.<top-level name> wildcards)
    assert {"grafana.example.test", "auth.example.test", "plex.example.test"} <= set(ingress)
    assert len(ingress) == len(set(ingress))
    profiles = rendered["cfssl.json"]["signing"]["profiles"]
    assert set(profiles) == {"intermediate_ca", "server", "client", "peer"}
    assert profiles["intermediate_ca"]["ca_constraint"] == {
        "is_ca": True, "max_path_len": 0, "max_path_len_zero": True}
    assert profiles["server"]["expiry"] == "720h"
    assert {"server auth", "client auth"} <= set(profiles["peer"]["usages"])


def test_names_stay_valid_json_and_quotes_are_refused(project_root, env_dir):
    config = make_config(project_root, env_dir, CA_NAME="Bob & Co <The> CA")
    rendered = pki.render_cfssl_files(config, pki.pki_spec(config))
    assert json.loads(rendered["ca.json"])["CN"] == "Bob & Co <The> CA Root CA"
    with pytest.raises(ConfigError) as err:  # a quote is refused before any file is rendered
        make_config(project_root, env_dir, CA_NAME='Bob "The" CA')
    assert "CA_NAME" in str(err.value) and "quote" in str(err.value)


def test_cert_paths_and_registry_tls(project_root, env_dir, tmp_path):
    config = make_config(project_root, env_dir, CERTS_DIR=str(tmp_path))
    paths = pki.cert_paths(config)
    assert paths.root == tmp_path / "ca.pem"
    assert paths.ingress_fullchain == tmp_path / "ingress-fullchain.pem"
    assert pki.registry_tls(config) is None
    on = make_config(project_root, env_dir, CERTS_DIR=str(tmp_path), ZOT_TLS_ENABLED="true")
    assert pki.registry_tls(on) == {
        "cert": "/etc/zot/tls/registry-server-fullchain.pem",
        "key": "/etc/zot/tls/registry-server-key.pem",
        "host_cert": str(tmp_path / "registry-server-fullchain.pem"),
        "host_key": str(tmp_path / "registry-server-key.pem"),
    }


OPENSSL_LEAF = """\
subject=CN=registry.localhost,OU=u,O=T,L=Tampa,ST=FL,C=US
issuer=CN=Test Intermediate CA,OU=u,O=T,L=Tampa,ST=FL,C=US
serial=686E628C45ED38BAC6094084E36AA4369163E005
notBefore=Nov 27 14:38:00 2026 GMT
notAfter=Dec  7 14:38:00 2026 GMT
X509v3 Key Usage: critical
    Digital Signature, Key Encipherment
X509v3 Extended Key Usage:
    TLS Web Server Authentication, TLS Web Client Authentication
X509v3 Basic Constraints: critical
    CA:FALSE
X509v3 Subject Key Identifier:
    B6:0B:68:77
X509v3 Authority Key Identifier:
    50:23:4C:2D
X509v3 Subject Alternative Name:
    DNS:registry.localhost, DNS:registry, IP Address:127.0.0.1
"""


def test_parse_openssl_facts():
    facts = pki.parse_x509_facts(OPENSSL_LEAF)
    assert facts.not_after == datetime(2026, 12, 7, 14, 38, tzinfo=UTC)
    assert facts.lifetime == timedelta(days=10)
    assert not facts.is_ca and facts.path_len is None
    assert facts.sans == ("registry.localhost", "registry", "127.0.0.1")
    assert facts.ext_key_usage == ("TLS Web Server Authentication",
                                   "TLS Web Client Authentication")
    assert (facts.subject_key_id, facts.authority_key_id) == ("B6:0B:68:77", "50:23:4C:2D")
    ca = pki.parse_x509_facts(OPENSSL_LEAF.replace("CA:FALSE", "CA:TRUE, pathlen:0"))
    assert ca.is_ca and ca.path_len == 0


# ---------------------------------------------------------------- planning (synthetic facts)

def facts(ski: str, aki: str, sans: tuple[str, ...] = (), days_left: int = 300,
          is_ca: bool = False) -> pki.CertFacts:
    return pki.CertFacts("s", "i", "1", NOW - timedelta(days=10), NOW + timedelta(days=days_left),
                         is_ca, None, (), (), sans, ski, aki)


@pytest.fixture
def spec(project_root, env_dir, tmp_path) -> pki.PkiSpec:
    return pki.pki_spec(make_config(project_root, env_dir, CERTS_DIR=str(tmp_path)))


def complete(spec: pki.PkiSpec) -> dict[str, pki.CertState]:
    states = {pki.ROOT: pki.CertState(facts("R", "", is_ca=True, days_left=3000), True),
              pki.INTERMEDIATE: pki.CertState(facts("I", "R", is_ca=True, days_left=1500), True)}
    for leaf in spec.leaves:
        states[leaf.name] = pki.CertState(facts(leaf.name, "I", leaf.hosts), True)
    return states


def absent(spec: pki.PkiSpec) -> dict[str, pki.CertState]:
    return {item: pki.CertState(None, False) for item in spec.items}


def test_an_expired_leaf_is_reissued_without_being_asked(spec):
    states = complete(spec)
    states["ingress"] = pki.CertState(facts("ingress", "I", spec.leaf("ingress").hosts,
                                            days_left=-2), True)
    plan = pki.plan_certs(spec, states, spec.items)
    expired = states["ingress"].cert.not_after  # type: ignore[union-attr]
    assert plan.step("ingress") == pki.Step("ingress", "reissue", f"expired on {expired:%Y-%m-%d}")
    assert not plan.problems


def test_no_leaf_is_issued_under_an_expired_ca(spec):
    states = complete(spec)
    states[pki.INTERMEDIATE] = pki.CertState(facts("I", "R", is_ca=True, days_left=-1), True)
    states["ingress"] = pki.CertState(None, False)
    plan = pki.plan_certs(spec, states, spec.items)
    assert any("intermediate CA expired" in p.message and "certs.intermediate --replace" in p.fix
               for p in plan.problems), plan.problems


def test_a_loose_or_garbage_key_is_planned_for(spec):
    states = complete(spec)
    states["ingress"] = pki.CertState(states["ingress"].cert, True, key_mode=0o644)
    states[pki.ROOT] = pki.CertState(states[pki.ROOT].cert, True, key_valid=False)
    plan = pki.plan_certs(spec, states, spec.items)
    assert plan.protect == (str(spec.certs_dir / "ingress-key.pem"),)
    assert [p.message for p in plan.problems] == [
        f"{spec.certs_dir / 'ca-key.pem'} is not a readable private key"]


def test_fresh_plan_creates_everything_in_order(spec):
    plan = pki.plan_certs(spec, absent(spec), spec.items, now=NOW)
    assert [s.item for s in plan.steps] == list(spec.items)
    assert {s.action for s in plan.steps} == {"create"}
    assert not plan.problems


def test_scopes_create_only_their_level(spec):
    plan = pki.plan_certs(spec, absent(spec), pki.SCOPES["ca"], now=NOW)
    assert [s.item for s in plan.steps] == [pki.ROOT]
    plan = pki.plan_certs(spec, absent(spec), pki.SCOPES["registry"], now=NOW)
    assert "ingress" not in [s.item for s in plan.steps]


def test_complete_pki_plans_nothing(spec):
    plan = pki.plan_certs(spec, complete(spec), spec.items, now=NOW)
    assert plan.steps == () and not plan.problems and len(plan.kept) == len(spec.items)


def test_existing_root_is_never_replaced_without_the_flag(spec):
    states = complete(spec)
    assert pki.plan_certs(spec, states, pki.SCOPES["ca"], now=NOW).steps == ()
    plan = pki.plan_certs(spec, states, pki.SCOPES["ca"], replace=pki.ROOT, now=NOW)
    assert [(s.item, s.action) for s in plan.steps] == [
        (pki.ROOT, "replace"), (pki.INTERMEDIATE, "replace"),
        *((leaf.name, "reissue") for leaf in spec.leaves)]
    assert any("certs.trust" in w for w in plan.warnings)


def test_replacing_the_intermediate_reissues_leaves_and_keeps_root(spec):
    plan = pki.plan_certs(spec, complete(spec), pki.SCOPES["intermediate"],
                          replace=pki.INTERMEDIATE, now=NOW)
    items = [s.item for s in plan.steps]
    assert pki.ROOT not in items and items[0] == pki.INTERMEDIATE
    assert set(items[1:]) == {leaf.name for leaf in spec.leaves}


def test_orphans_and_mismatches_are_problems_not_silent_replacements(spec):
    states = complete(spec)
    states[pki.ROOT] = pki.CertState(None, False)
    plan = pki.plan_certs(spec, states, spec.items, now=NOW)
    assert plan.problems and "--replace" in plan.problems[0].fix and not plan.steps

    states = complete(spec)
    states[pki.INTERMEDIATE] = pki.CertState(facts("I", "OTHER", is_ca=True), True)
    plan = pki.plan_certs(spec, states, spec.items, now=NOW)
    assert any("not issued by ca.pem" in p.message for p in plan.problems)


def test_offline_root_key_is_fine_until_it_is_needed(spec):
    states = complete(spec)
    states[pki.ROOT] = replace(states[pki.ROOT], key_present=False)
    assert not pki.plan_certs(spec, states, spec.items, now=NOW).problems
    states[pki.INTERMEDIATE] = pki.CertState(None, False)
    plan = pki.plan_certs(spec, {**states, **{leaf.name: pki.CertState(None, False)
                                              for leaf in spec.leaves}}, spec.items, now=NOW)
    assert any("ca-key.pem is missing" in p.message for p in plan.problems)


def test_leaves_follow_names_issuer_and_keys(spec):
    states = complete(spec)
    states["registry-server"] = pki.CertState(facts("x", "I", ("registry.localhost",)), True)
    states["registry-client"] = pki.CertState(states["registry-client"].cert, False)
    states["registry-peer"] = pki.CertState(facts("x", "OLD", spec.leaf("registry-peer").hosts),
                                            True)
    plan = pki.plan_certs(spec, states, spec.items, now=NOW)
    reasons = {s.item: s.reason for s in plan.steps}
    assert "names changed" in reasons["registry-server"] and "localhost" in reasons[
        "registry-server"]
    assert reasons["registry-client"] == "its key is missing"
    assert "not issued by the current intermediate" in reasons["registry-peer"]
    assert "ingress" not in reasons


def test_renewal_window_and_force(spec):
    states = complete(spec)
    states["ingress"] = pki.CertState(facts("x", "I", spec.leaf("ingress").hosts, days_left=5),
                                      True)
    plain = pki.plan_certs(spec, states, spec.items, now=NOW)
    assert plain.steps == () and any("ingress expires in 5 days" in w for w in plain.warnings)
    leaves = tuple(leaf.name for leaf in spec.leaves)
    renew = pki.plan_certs(spec, states, leaves, renew_days=30, now=NOW)
    assert [s.item for s in renew.steps] == ["ingress"]
    forced = pki.plan_certs(spec, states, leaves, renew_days=30, force_leaves=True, now=NOW)
    assert [s.item for s in forced.steps] == list(leaves)  # never a CA


def test_trust_targets_per_mode():
    rootless = pki.trust_targets(["registry.localhost:5000"], True, "/home/ann")
    assert rootless == [pki.TrustTarget(
        "/home/ann/.config/docker/certs.d/registry.localhost:5000/ca.crt", False)]
    rootful = pki.trust_targets(["registry.localhost:5000"], False, "/home/ann")
    assert rootful == [pki.TrustTarget("/etc/docker/certs.d/registry.localhost:5000/ca.crt", True)]


def test_registry_addresses(project_root, env_dir):
    config = make_config(project_root, env_dir, REGISTRY_EXTRA_HOSTS="10.0.0.100", ZOT_PORT="5001")
    assert pki.registry_addresses(config) == (
        "registry.localhost:5001", "registry:5001", "localhost:5001", "127.0.0.1:5001",
        "10.0.0.100:5001", "registry.localhost")


def test_rootful_trust_uses_sudo_when_not_root():
    # sudo cannot run on this machine (no sudo, tests run as root): the only mocked path.
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    c = MockContext(run={"id -u": Result("1000\n")},
                    sudo={re.compile(r"cat .*"): Result("", exited=1),
                          re.compile(r"mkdir -p .*"): Result("")}, repeat=True)
    targets = pki.trust_targets(["r:5000"], False, "/home/ann")
    results = pki.apply_trust(c, targets, pem)
    assert results[0].changed
    commands = [call.args[0] for call in c.sudo.call_args_list]
    assert commands[0] == "cat /etc/docker/certs.d/r:5000/ca.crt"
    # the one atomic write of host steps: staged, installed 0644, renamed into place
    assert "mkdir -p /etc/docker/certs.d/r:5000" in commands[1] and "mv -f" in commands[1]
    assert "install -m 0644" in commands[1]

    unchanged = MockContext(run={"id -u": Result("1000\n")},
                            sudo={re.compile(r"cat .*"): Result(pem)}, repeat=True)
    assert not pki.apply_trust(unchanged, targets, pem)[0].changed
    assert len(unchanged.sudo.call_args_list) == 1  # read only: no write when identical
