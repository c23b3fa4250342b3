"""The rendered stacks held against the recorded upstream contracts of their images.

Each contract (contracts/*.yaml) says what a pinned image really does, with the upstream file
every fact was read from. These tests hold every rendered file against them: start-up writes on
a read-only root, health commands that need a program the image lacks, configuration keys and
environment variables the image does not read, dashboard queries of metrics nobody exports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from infra import contracts as ct
from infra.config import load_config
from infra.errors import ConfigError
from infra.project import Project
from infra.render import render_stack
from tests.support import rendering

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ct.load_contracts(ct.contracts_dir(ROOT))


def rendered_files(project: Project) -> dict[str, dict[str, str]]:
    return {name: render_stack(stack, project.catalogue, project.config)
            for name, stack in project.catalogue.stacks.items()}


@pytest.fixture(scope="module", params=rendering.PROFILES, ids=["default", "alt"])
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Project:
    return rendering.load(tmp_path_factory.mktemp("contracts"), request.param)


@pytest.fixture(scope="module")
def files(project: Project) -> dict[str, dict[str, str]]:
    return rendered_files(project)


def problems_of(project: Project, files: dict[str, dict[str, str]]) -> list[str]:
    return [str(p) for p in ct.conformance(project.catalogue, project.config.public, files,
                                           CONTRACTS)]


# ---------------------------------------------------------------- the contracts themselves


def test_every_pinned_image_has_a_contract_verified_at_its_pin() -> None:
    config = load_config(ROOT, None, {}, env_dir=ROOT / "env")
    assert [str(w) for w in ct.pin_drift(CONTRACTS, config.public)] == []
    pinned = {k for k, v in config.public.items() if k.endswith("_IMAGE") and v}
    assert pinned == set(CONTRACTS)


def test_a_moved_pin_is_reported_with_the_facts_to_reverify() -> None:
    config = load_config(ROOT, None, {}, env_dir=ROOT / "env")
    values = {**config.public, "MIMIR_IMAGE": "grafana/mimir:2.18.0"}
    [warning] = ct.pin_drift(CONTRACTS, values)
    assert warning.key == "MIMIR_IMAGE" and warning.file.endswith("contracts/mimir.yaml")
    assert "verified at 2.17.2" in warning.message
    assert "startup_writes" in warning.message and "config keys of" in warning.message


def test_the_issue_s_configs_and_environments_are_under_contract() -> None:
    """Mimir, Loki, Tempo, Zot, Traefik and Alloy configs have key lists; every linuxserver and
    Authentik image lists the variables it reads."""
    for setting in ("MIMIR_IMAGE", "LOKI_IMAGE", "TEMPO_IMAGE", "ZOT_IMAGE", "ALLOY_IMAGE"):
        assert CONTRACTS[setting].configs and all(c.keys for c in CONTRACTS[setting].configs)
    assert len(CONTRACTS["TRAEFIK_IMAGE"].configs) == 2  # static and dynamic
    lsio = [c for c in CONTRACTS.values() if c.repository.startswith("linuxserver/")]
    assert len(lsio) == 6
    for contract in [*lsio, CONTRACTS["AUTHENTIK_IMAGE"]]:
        assert contract.environment, contract.name
    for contract in CONTRACTS.values():
        assert contract.user and contract.programs and contract.workdir, contract.name


def test_a_contract_without_sources_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(yaml.safe_dump({
        "setting": "X_IMAGE", "repository": "x/x", "verified_at": "1", "upstream": "x/x",
        "read_at": "v1", "user": {"value": "0:0"}}))
    with pytest.raises(ConfigError) as error:
        ct.load_contracts(tmp_path)
    assert "source" in str(error.value) and "x.yaml" in str(error.value)


# ---------------------------------------------------------------- the parsers


def test_alloy_keys_are_blocks_then_attributes_without_labels() -> None:
    text = '''
    // a comment = with "braces" {
    prometheus.scrape "registry" {
      targets    = [{"__address__" = "zot:5000"}]
      tls_config {
        ca_file = "/x"
      }
      forward_to = [prometheus.remote_write.mimir.receiver]
    }
    loki.write "loki" { endpoint { url = "http://loki:3100" } }
    '''
    assert ct.alloy_keys(text) == {"prometheus.scrape.targets", "prometheus.scrape.forward_to",
                                   "prometheus.scrape.tls_config.ca_file",
                                   "loki.write.endpoint.url"}


def test_tree_keys_and_patterns() -> None:
    doc = {"http": {"routers": {"a": {"rule": "x"}}}, "tls": {"certificates": [{"certFile": 1}]},
           "list": [1, 2], "empty": {}}
    keys = ct.tree_keys(doc)
    assert keys == {"http.routers.a.rule", "tls.certificates[].certFile", "list", "empty"}
    assert ct.key_allowed("http.routers.a.rule", ["http.routers.*.rule"])
    assert not ct.key_allowed("http.routers.a.rules", ["http.routers.*.rule"])
    assert not ct.key_allowed("http.routers.a", ["http.routers.*.rule"])


def test_queried_metrics_leave_out_functions_labels_and_variables() -> None:
    dashboard = {"panels": [{"targets": [{"expr": (
        'histogram_quantile(0.99, sum by (le, method) (rate(zot_x_bucket{a=~"$v"}'
        '[$__rate_interval]))) / ignoring(a) sum(zot_y) offset 5m')},
        {"expr": '{service=~"$registry"}'}]}]}
    assert ct.queried_metrics(dashboard) == {"zot_x_bucket", "zot_y"}


# ---------------------------------------------------------------- the rendered stacks


def test_every_rendered_stack_conforms_to_its_contracts(
        project: Project, files: dict[str, dict[str, str]]) -> None:
    assert problems_of(project, files) == []


def mimir_configs(files: dict[str, dict[str, str]]) -> list:
    return [("/etc/mimir/config.yaml", CONTRACTS["MIMIR_IMAGE"].configs[0],
             yaml.safe_load(files["monitoring"]["mimir/config.yaml"]))]


def test_mimir_writes_nothing_to_its_read_only_root(
        project: Project, files: dict[str, dict[str, str]]) -> None:
    """Defect: the activity tracker opened ./metrics-activity.log in "/" (fatal on read_only)."""
    mimir = CONTRACTS["MIMIR_IMAGE"]
    tracker = [w for w in mimir.startup_writes if "activity" in w.path]
    assert tracker and tracker[0].fatal
    for name in ("mimir-1", "mimir-2", "mimir-3"):
        service = project.catalogue["monitoring"].service(name)
        assert service.read_only
        volumes = [v.target for v in service.volumes if not v.read_only and v.kind == "data"]
        for write in mimir.startup_writes:
            path = ct.where_written(mimir, write, service.command or (), mimir_configs(files))
            assert any(path.startswith(v + "/") for v in volumes), (write.path, path)


def test_a_mimir_left_writing_to_its_root_is_caught(
        project: Project, files: dict[str, dict[str, str]]) -> None:
    """The check above is real: today's render without the tracker key fails it."""
    broken = yaml.safe_load(files["monitoring"]["mimir/config.yaml"])
    del broken["activity_tracker"]
    changed = {**files, "monitoring": {**files["monitoring"],
                                       "mimir/config.yaml": yaml.safe_dump(broken)}}
    found = [p for p in problems_of(project, changed) if "metrics-activity.log" in p]
    assert len(found) == 3 and all("/metrics-activity.log" in p for p in found)


def test_mimir_keeps_exemplars(files: dict[str, dict[str, str]]) -> None:
    """Defect: max_global_exemplars_per_user defaults to 0, so Tempo's exemplars were dropped."""
    config = yaml.safe_load(files["monitoring"]["mimir/config.yaml"])
    assert config["limits"]["max_global_exemplars_per_user"] > 0
    assert "limits.max_global_exemplars_per_user" in CONTRACTS["MIMIR_IMAGE"].configs[0].keys


def test_cadvisor_is_pinned_to_a_tag_that_exists() -> None:
    """Defect: ghcr has no v0.56.2 (tags lacked the v before v0.57.0)."""
    contract = CONTRACTS["CADVISOR_IMAGE"]
    assert contract.tag_pattern is not None
    broken = {"CADVISOR_IMAGE": "ghcr.io/google/cadvisor:v0.56.2"}
    assert any("publishes no tag" in w.message for w in ct.pin_drift(CONTRACTS, broken))
    config = load_config(ROOT, None, {}, env_dir=ROOT / "env")
    assert re.fullmatch(str(contract.tag_pattern.value),
                        ct.image_tag(config["CADVISOR_IMAGE"]))


def test_plex_gets_no_variable_its_image_ignores(project: Project,
                                                 files: dict[str, dict[str, str]]) -> None:
    """Defect: ADVERTISE_IP is plexinc/pms-docker's, the linuxserver image ignores it."""
    plex = project.catalogue["media"].service("plex")
    assert "ADVERTISE_IP" not in plex.environment
    assert "ADVERTISE_IP" not in CONTRACTS["PLEX_IMAGE"].environment
    broken = yaml.safe_load(files["media"]["compose.yaml"])
    assert "ADVERTISE_IP" not in broken["services"]["plex"].get("environment", {})


def test_every_registry_dashboard_query_names_a_metric_zot_exports(
        files: dict[str, dict[str, str]]) -> None:
    """Defect: the cache-hit panel queried metrics zot v2.1.14 does not export."""
    dashboard = json.loads(files["monitoring"]["grafana/dashboards/docker-registry.json"])
    exported = set(CONTRACTS["ZOT_IMAGE"].metrics.value)  # type: ignore[union-attr]
    used = {m for m in ct.queried_metrics(dashboard) if m.startswith("zot_")}
    assert used and all(ct.exports(exported, m) for m in used), used - exported
    assert not ct.exports(exported, "zot_storage_cache_hits_total")


def test_grafana_links_exemplars_by_the_label_tempo_writes(
        files: dict[str, dict[str, str]]) -> None:
    """Tempo labels exemplars traceID; a link keyed on another name never matches."""
    datasources = yaml.safe_load(
        files["monitoring"]["grafana/provisioning/datasources/datasources.yaml"])
    mimir = next(d for d in datasources["datasources"] if d["uid"] == "mimir")
    [destination] = mimir["jsonData"]["exemplarTraceIdDestinations"]
    assert destination["name"] == CONTRACTS["TEMPO_IMAGE"].facts["exemplar_label"].value
    assert destination["datasourceUid"] == "tempo"


def test_postgres_is_healthy_only_when_the_real_server_answers(project: Project) -> None:
    """The entrypoint's first-start server listens on the socket only: probe over TCP."""
    postgres = project.catalogue["auth"].service("postgresql")
    command = list(postgres.health.command)  # type: ignore[union-attr]
    assert command[:2] == ["CMD", "pg_isready"] and CONTRACTS["POSTGRES_IMAGE"].has_program(
        "pg_isready")
    assert command[command.index("-h") + 1] == "127.0.0.1"


# ---------------------------------------------------------------- who reads what, as whom


def test_every_private_file_is_the_container_s_own_copy(project: Project) -> None:
    """Keys and credentials reach containers only as copies owned by the uid that reads them
    (Traefik: root without capabilities; Zot: 65532; Alloy: root): the operator's 0600
    originals are unreadable to them."""
    for stack in project.catalogue.stacks.values():
        for service in stack.services:
            for volume in service.volumes:
                if ct.private_file(volume.source):
                    assert volume.kind == "key", (service.name, volume.source)
    if not project.config.flag("ACME_ENABLED"):
        traefik = project.catalogue["traefik"].service("traefik")
        [key] = [v for v in traefik.volumes if v.kind == "key"]
        assert key.owner == CONTRACTS["TRAEFIK_IMAGE"].user_ids
    if project.config.flag("ZOT_TLS_ENABLED"):
        zot = project.catalogue["zot"].service("zot")
        assert {v.owner for v in zot.volumes if v.kind == "key"} == {(65532, 65532)}
        alloy = project.catalogue["monitoring"].service("alloy")
        assert {v.owner for v in alloy.volumes if v.kind == "key"} == {
            CONTRACTS["ALLOY_IMAGE"].user_ids}


def test_a_key_its_container_cannot_read_is_caught(tmp_path: Path) -> None:
    """Today's render, with Traefik's key mounted as the operator's file (as it was), or
    copied for the wrong uid, fails the check (default profile: our CA's certificate)."""
    import dataclasses

    project = rendering.load(tmp_path)
    files = rendered_files(project)
    stack = project.catalogue["traefik"]
    traefik = stack.service("traefik")

    def with_key(**changes: object) -> list[str]:
        volumes = tuple(dataclasses.replace(v, **changes) if v.kind == "key" else v
                        for v in traefik.volumes)
        service = dataclasses.replace(traefik, volumes=volumes)
        changed = dataclasses.replace(stack, services=tuple(
            service if s.name == "traefik" else s for s in stack.services))
        catalogue = dataclasses.replace(project.catalogue, stacks={
            **project.catalogue.stacks, "traefik": changed})
        return [str(p) for p in ct.conformance(catalogue, project.config.public, files,
                                               CONTRACTS) if "ingress-key.pem" in str(p)]

    assert with_key() == []
    [as_host] = with_key(kind="host", owner=None)
    assert "DAC_OVERRIDE" in as_host and "kind: key" in as_host
    [wrong] = with_key(owner=(1000, 1000))
    assert "owned by uid 1000" in wrong and "as uid 0" in wrong


def test_traefik_checks_zot_s_certificate_against_a_name_it_carries(
        project: Project, files: dict[str, dict[str, str]]) -> None:
    """Traefik dials Zot's container address, which the certificate does not name."""
    from infra.pki import registry_hosts

    dynamic = yaml.safe_load(files["traefik"]["dynamic/stackyard.yml"])
    if not project.config.flag("ZOT_TLS_ENABLED"):
        assert "serversTransports" not in dynamic["http"]
        return
    transport = dynamic["http"]["serversTransports"]["internal-ca"]
    assert transport["serverName"] in registry_hosts(project.config)
    assert ct.key_allowed("http.serversTransports.internal-ca.serverName",
                          CONTRACTS["TRAEFIK_IMAGE"].configs[1].keys)
    labels = yaml.safe_load(files["zot"]["compose.yaml"])["services"]["zot"]["labels"]
    https = [k for k, v in labels.items() if k.endswith(".scheme") and v == "https"]
    assert https and all(
        labels[k.replace(".server.scheme", ".serversTransport")] == "internal-ca@file"
        for k in https)


def test_zot_keeps_upstream_digests(files: dict[str, dict[str, str]]) -> None:
    """Without preserveDigest, zot converts Docker manifests to OCI: a pull by upstream digest
    through the mirror misses."""
    config = json.loads(files["zot"]["config.json"])
    registries = config["extensions"]["sync"]["registries"]
    assert registries and all(r["preserveDigest"] is True for r in registries)
    assert "docker2s2" in config["http"]["compat"]  # which preserveDigest requires


def test_long_uploads_are_not_cut_at_traefik_s_default(project: Project,
                                                       files: dict[str, dict[str, str]]) -> None:
    static = yaml.safe_load(files["traefik"]["traefik.yml"])
    timeout = static["entryPoints"]["websecure"]["transport"]["respondingTimeouts"]
    assert timeout["readTimeout"] == f"{project.config['TRAEFIK_READ_TIMEOUT']}s"
    assert int(project.config["TRAEFIK_READ_TIMEOUT"]) > 60


def test_zot_cve_scanning_is_a_setting(tmp_path: Path) -> None:
    rendering.load(tmp_path)
    with (tmp_path / "env" / "alt.env").open("a") as handle:
        handle.write("ZOT_CVE_ENABLED=false\n")
    off = rendered_files(rendering.load(tmp_path, "alt"))
    search = json.loads(off["zot"]["config.json"])["extensions"]["search"]
    assert search == {"enable": True}


def test_a_plex_claim_reaches_only_plex_through_its_0600_env_file(tmp_path: Path) -> None:
    """PLEX_CLAIM is read by the image's claim step (contracts/plex.yaml), never a setting."""
    claim = tmp_path / "plex-claim.env"
    claim.write_text("PLEX_CLAIM=claim-test-not-a-secret\n")
    claim.chmod(0o600)
    rendering.load(tmp_path)
    with (tmp_path / "env" / "alt.env").open("a") as handle:
        handle.write(f"PLEX_CLAIM_PATH={claim}\n")
    files = rendered_files(rendering.load(tmp_path, "alt"))
    assert "PLEX_CLAIM" in CONTRACTS["PLEX_IMAGE"].environment
    secret = [(stack, rel) for stack, found in files.items() for rel, text in found.items()
              if "claim-test-not-a-secret" in text]
    assert secret == [("media", "secrets/plex.env")]


def _bytes(size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)\s*([kmg]i?b?)?", size.lower()).groups()  # type: ignore[union-attr]
    return int(number) * 1024 ** " kmg".index((unit or " ")[0])


def test_mimir_fits_its_memory_limit(project: Project, files: dict[str, dict[str, str]]) -> None:
    """The store-gateway's in-memory index cache defaults to 1 GiB, the node's whole limit:
    capped, and the Go runtime told to collect before the limit (GOMEMLIMIT)."""
    config = yaml.safe_load(files["monitoring"]["mimir/config.yaml"])
    cache = config["blocks_storage"]["bucket_store"]["index_cache"]["inmemory"]["max_size_bytes"]
    for name in ("mimir-1", "mimir-2", "mimir-3"):
        node = project.catalogue["monitoring"].service(name)
        limit = _bytes(node.memory)
        go_limit = _bytes(node.environment["GOMEMLIMIT"])
        assert cache <= limit // 4 and go_limit < limit
    assert "GOMEMLIMIT" in CONTRACTS["MIMIR_IMAGE"].environment
