"""`invoke plan`: rows derived from the catalogue, the Mermaid graph, and the task itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from infra import catalogue as cat
from infra import plan
from tests.conftest import PROJECT_ROOT, program_of_this_python
from tests.support.rendering import load

pytestmark = pytest.mark.unit


def test_rows_cover_the_catalogue(tmp_path: Path) -> None:
    project = load(tmp_path)
    catalogue, config = project.catalogue, project.config
    stacks = plan.stack_rows(catalogue)
    assert stacks[0][1] == "traefik"
    assert {r[1] for r in stacks} == set(catalogue.names())
    assert all(len(r) == len(plan.STACK_HEADERS) for r in stacks)
    assert {r[0] for r in plan.network_rows(catalogue)} == set(cat.networks(catalogue))
    volumes = plan.volume_rows(catalogue, config)
    assert ("auth", "postgresql", str(config.path("DATA_ROOT") / "auth/postgres"),
            "/var/lib/postgresql/data", "70:70", "0700") in volumes
    routes = plan.route_rows(catalogue, "admins")
    assert all(len(r) == len(plan.ROUTE_HEADERS) for r in routes)
    by_host = {(r[0], r[1]): r for r in routes}
    assert by_host[("auth.localhost", "/")][2:7] == (
        "auth", "authentik-server", "nothing (public)", "anyone", "its own, after SSO")
    registry = by_host[("registry.localhost", "/v2/")]
    assert registry[4] == "basic auth (GET/HEAD)" and registry[5] == "pull"
    grafana = by_host[("grafana.localhost", "/")]
    assert grafana[4:7] == ("Authentik forward auth", "admins", "through Authentik (OIDC)")
    assert by_host[("sonarr.localhost", "/")][6] == "none: trusts SSO"
    assert by_host[("requests.localhost", "/")][6] == "its own, after SSO"  # Seerr
    ports = plan.port_rows(catalogue, config)
    assert ("0.0.0.0", "443/tcp", "443", "traefik", "traefik") in [r[:5] for r in ports]
    assert all(len(r[5].split()) >= 3 for r in ports)  # each says why it is open
    # only the ingress's 80/443 and qBittorrent's peer port (for peers) bind to every address
    public = {("traefik", "80"), ("traefik", "443"),
              ("qbittorrent", config["QBITTORRENT_TORRENTING_PORT"])}
    assert all(r[0] == "127.0.0.1" for r in ports if (r[4], r[2]) not in public)



def test_mermaid_names_every_stack_service_and_route(tmp_path: Path) -> None:
    catalogue = load(tmp_path).catalogue
    graph = plan.mermaid(catalogue)
    assert graph.startswith("graph LR\n")
    for stack in catalogue.stacks.values():
        assert f"subgraph stack_{stack.name}" in graph
        for service in stack.services:
            assert f'["{service.name}"]' in graph
    assert "stack_auth -.->|depends on| stack_traefik" in graph
    assert '"auth.localhost (public)"' in graph
    assert '"minio.localhost (SSO)"' in graph


def test_plan_task_prints_tables_and_mermaid(tmp_path: Path) -> None:
    load(tmp_path)  # prepares the env folder
    env = {**os.environ, "INFRA_ENV_DIR": str(tmp_path / "env"),
           "BUILD_DIR": str(tmp_path / "build"), "COLUMNS": "200"}
    invoke = program_of_this_python("invoke")
    table = subprocess.run([invoke, "plan"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                           text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    for title in ("Stacks in dependency order", "Networks", "Volumes and owners",
                  "Hostnames", "Published ports"):
        assert title in table.stdout
    graph = subprocess.run([invoke, "plan", "--format", "mermaid"], cwd=PROJECT_ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert graph.returncode == 0 and graph.stdout.startswith("graph LR")
    bad = subprocess.run([invoke, "plan", "--format", "dot"], cwd=PROJECT_ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "mermaid" in bad.stderr
