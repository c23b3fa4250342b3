"""The catalogue as shipped, and the promise that a seventh stack needs no engine change."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from infra import catalogue as cat
from infra.errors import ConfigError
from infra.plan import mermaid, route_rows, stack_rows
from infra.render import render_stacks
from tests.conftest import PROJECT_ROOT
from tests.support.rendering import load

pytestmark = pytest.mark.unit

def test_my_stacks_and_their_order(tmp_path: Path) -> None:
    catalogue = load(tmp_path).catalogue
    for name in ("traefik", "auth", "minio", "zot"):
        assert name in catalogue.stacks
    layers = cat.stack_layers(catalogue, catalogue.names())
    assert layers[0] == ["traefik"]
    assert catalogue["auth"].depends_on == ("traefik",)
    assert catalogue["minio"].network == "storage_default"
    assert catalogue["zot"].network == "registry_default"


def test_the_ingress_joins_routed_networks_only(tmp_path: Path) -> None:
    catalogue = load(tmp_path).catalogue
    joined = {net for net, stacks in cat.networks(catalogue).items() if "traefik" in stacks}
    routed = set(cat.routed_networks(catalogue))
    own = {catalogue["traefik"].network, catalogue["traefik"].internal_network}
    assert joined == routed | own
    # its own internal network holds only its read-only Docker API
    assert not (joined - own) & cat.internal_networks(catalogue)


def test_backends_sit_on_internal_networks_only(tmp_path: Path) -> None:
    catalogue = load(tmp_path).catalogue
    internal = cat.internal_networks(catalogue)
    assert {"auth_internal", "monitoring_internal"} <= internal
    for stack, service in (("auth", "postgresql"), ("monitoring", "mimir-1"),
                           ("monitoring", "mimir-3")):
        home = catalogue[stack].home_network(catalogue[stack].service(service))
        assert home in internal, f"{stack}/{service} is reachable from {home}"
        routed_by_ingress = set(cat.routed_networks(catalogue))
        assert not {home, *catalogue[stack].service(service).networks} & routed_by_ingress


def test_every_service_declares_health_and_every_route_its_auth(tmp_path: Path) -> None:
    catalogue = load(tmp_path).catalogue
    for stack in catalogue.stacks.values():
        for service in stack.services:
            if not service.oneshot:
                assert service.health and (service.health.command or service.health.http), (
                    f"{stack.name}.{service.name} has no health check")
            for route in service.routes:
                assert route.auth in cat.AUTH_MODES
                assert route.auth != "public" or route.reason


def test_volumes_declare_owners(tmp_path: Path) -> None:
    catalogue = load(tmp_path).catalogue
    for stack in catalogue.stacks.values():
        for service, volume in cat.data_volumes(stack):
            assert volume.owner is not None, f"{stack.name}.{service.name} {volume.source}"


def test_auth_has_no_redis_and_patched_authentik(tmp_path: Path) -> None:
    project = load(tmp_path)
    auth = project.catalogue["auth"]
    assert {s.name for s in auth.services} == {"postgresql", "authentik-server",
                                               "authentik-worker"}
    assert "Redis" in auth.description
    version = project.config["AUTHENTIK_IMAGE"].rsplit(":", 1)[1]
    assert tuple(int(p) for p in version.split(".")) >= (2025, 12, 4)


def test_optional_volume_is_dropped_when_its_condition_is_false(tmp_path: Path) -> None:
    zot = load(tmp_path).catalogue["zot"].service("zot")
    assert not any(v.target.endswith("credentials.json") for v in zot.volumes)
    alt = load(tmp_path, "alt").catalogue["zot"].service("zot")
    assert any(v.target.endswith("registry-server-fullchain.pem") for v in alt.volumes)


def _copy_project(target: Path) -> Path:
    for folder in ("stacks", "templates"):
        shutil.copytree(PROJECT_ROOT / folder, target / folder)
    return target


SEVENTH = {
    "name": "wiki",
    "title": "Wiki",
    "description": "a seventh stack added without touching the engine",
    "network": "wiki_default",
    "depends_on": ["auth"],
    "secrets": {"WIKI_DB_PASSWORD": {"length": 20}},
    "services": {
        "wiki": {
            "image": "{{ NGINX_IMAGE }}",
            "user": "101:101",
            "secret_env": {"DB_PASSWORD": "WIKI_DB_PASSWORD"},
            "volumes": [{"source": "wiki", "target": "/data", "owner": "101:101",
                         "backup": "stop"},
                        {"source": "site.conf", "target": "/etc/site.conf", "kind": "config"}],
            "ports": [{"published": 8089, "target": 8080,
                       "reason": "the wiki behind its own login"}],
            "health": {"command": ["CMD", "wget", "-q", "--spider", "http://127.0.0.1:8080/"]},
            "routes": [{"host": "wiki.{{ DOMAIN }}", "port": 8080, "auth": "sso"}],
            "read_only": True,
        },
    },
}


def test_a_seventh_stack_needs_no_engine_change(tmp_path: Path) -> None:
    root = _copy_project(tmp_path / "project")
    (root / "stacks" / "wiki").mkdir()
    (root / "stacks" / "wiki" / "stack.yaml").write_text(yaml.safe_dump(SEVENTH))
    (root / "templates" / "wiki").mkdir()
    (root / "templates" / "wiki" / "site.conf.j2").write_text("host wiki.{{ DOMAIN }}\n")
    project = load(tmp_path, root=root)
    results = render_stacks(project)
    wiki = yaml.safe_load(results["wiki"].files["compose.yaml"])
    assert results["wiki"].files["site.conf"] == "host wiki.localhost\n"
    assert wiki["services"]["wiki"]["labels"]["traefik.http.routers.wiki.middlewares"] == (
        "authentik@file")
    # Derived everywhere: order, ingress networks, landing page, plan, diagram, secrets.
    assert "wiki_default" in yaml.safe_load(results["traefik"].files["compose.yaml"])[
        "services"]["traefik"]["networks"]
    assert 'href="https://wiki.localhost/"' in results["traefik"].files["landing/index.html"]
    order = [row[1] for row in stack_rows(project.catalogue)]
    assert order.index("wiki") > order.index("auth")
    assert any(row[0] == "wiki.localhost" for row in route_rows(project.catalogue))
    assert "svc_wiki" in mermaid(project.catalogue)
    assert "WIKI_DB_PASSWORD" in project.config.secrets
    from infra.backup import plan_stack

    wiki_backup = plan_stack(project.catalogue["wiki"])
    assert wiki_backup.included == ("wiki",) and wiki_backup.stop == ("wiki",)


def test_a_public_route_without_reason_is_refused(tmp_path: Path) -> None:
    root = _copy_project(tmp_path / "project")
    bad = dict(SEVENTH)
    bad["services"] = {"wiki": {**SEVENTH["services"]["wiki"],  # type: ignore[dict-item]
                                "routes": [{"host": "wiki.x", "port": 80, "auth": "public"}]}}
    (root / "stacks" / "wiki").mkdir()
    (root / "stacks" / "wiki" / "stack.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="gives no reason"):
        load(tmp_path, root=root)


def test_a_template_using_an_unknown_setting_fails_with_its_file(tmp_path: Path) -> None:
    root = _copy_project(tmp_path / "project")
    (root / "templates" / "zot" / "broken.conf.j2").write_text("{{ NO_SUCH_SETTING }}\n")
    with pytest.raises(ConfigError) as caught:
        render_stacks(load(tmp_path, root=root), ["zot"])
    assert "broken.conf.j2" in str(caught.value)
    assert "NO_SUCH_SETTING" in str(caught.value)
