"""Rendering: deterministic, secrets kept out of compose files, labels and ports as declared.

Generic over every stack present (the monitoring and media stacks included when they exist).
"""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import catalogue as cat
from infra.compose import FORWARD_AUTH_MIDDLEWARE, OUTPOST_PATH, OUTPOST_SERVICE
from infra.errors import ConfigError
from infra.render import RenderedStack, render_stacks
from tests.support.blueprints import load_blueprint
from tests.support.rendering import PROFILES, load, make_env_dir

pytestmark = pytest.mark.unit


@pytest.fixture(params=PROFILES, ids=["default", "alt"])
def rendered(request: pytest.FixtureRequest, tmp_path: Path
             ) -> tuple[Any, dict[str, RenderedStack]]:
    project = load(tmp_path, request.param)
    return project, render_stacks(project)


def compose_of(result: RenderedStack) -> dict[str, Any]:
    return yaml.safe_load(result.compose_file.read_text())


def test_rendering_twice_is_byte_identical(tmp_path: Path) -> None:
    project = load(tmp_path, "alt")
    first = render_stacks(project)
    snapshot = {p: p.read_bytes() for r in first.values() for p in r.directory.rglob("*")
                if p.is_file()}
    second = render_stacks(project)
    assert all(not r.changed for r in second.values())
    assert {n: r.digest for n, r in first.items()} == {n: r.digest for n, r in second.items()}
    assert snapshot == {p: p.read_bytes() for p in snapshot}
    # A fresh build folder with the same secrets gets the same bytes (no state carried over).
    make_env_dir(tmp_path / "again")
    (tmp_path / "again" / "env" / "secrets.env").write_bytes(
        (tmp_path / "env" / "secrets.env").read_bytes())
    again = render_stacks(load(tmp_path / "again", "alt"))
    for name, result in first.items():
        relocated = {k: v.replace(str(tmp_path / "again"), str(tmp_path))
                     for k, v in again[name].files.items()}
        assert relocated == result.files


def test_every_stack_is_rendered_with_a_compose_file(rendered: Any) -> None:
    project, results = rendered
    assert set(results) == set(project.catalogue.names())
    for name, result in results.items():
        doc = compose_of(result)
        assert doc["name"] == name
        assert set(doc["services"]) == {s.name for s in project.catalogue[name].services}
        assert result.directory == project.config.build_dir / "stacks" / name


def test_every_yaml_and_json_file_parses(rendered: Any) -> None:
    _, results = rendered
    checked = 0
    for result in results.values():
        for relative, content in result.files.items():
            if relative.endswith((".yaml", ".yml")):
                # Authentik's blueprint has its loader's tags; every other file is plain YAML
                load_blueprint(content) if relative.startswith("blueprints/") \
                    else yaml.safe_load(content)
                checked += 1
            elif relative.endswith(".json"):
                json.loads(content)
                checked += 1
    assert checked >= len(results)


def test_secret_files_are_0600_and_nothing_else_holds_a_secret(rendered: Any) -> None:
    project, results = rendered
    secrets = [v for v in project.config.secrets.values() if v]
    assert secrets
    for result in results.values():
        for relative in result.files:
            path = result.directory / relative
            mode = stat.S_IMODE(path.stat().st_mode)
            if relative.startswith("secrets/files/"):
                # read by the container's uid; the 0700 secrets folder keeps host users out
                assert mode == 0o444, relative
                assert stat.S_IMODE((result.directory / "secrets").stat().st_mode) == 0o700
            elif relative.startswith("secrets/"):
                assert mode == 0o600, relative
                assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            else:
                assert mode == 0o644, relative
                text = path.read_text()
                leaked = [s for s in secrets if s in text]
                assert not leaked, f"{result.name}/{relative} contains a secret value"


def test_services_with_secrets_read_them_from_their_env_file(rendered: Any) -> None:
    project, results = rendered
    for name, result in results.items():
        services = compose_of(result)["services"]
        for service in project.catalogue[name].services:
            if not service.secret_env and not service.credentials_from:
                assert "env_file" not in services[service.name]
                continue
            (env_file,) = services[service.name]["env_file"]
            content = result.files[env_file]
            for variable, key in service.secret_env.items():
                assert f"{variable}={project.config.secrets[key]}" in content


def _routers(labels: dict[str, str]) -> dict[str, dict[str, str]]:
    routers: dict[str, dict[str, str]] = {}
    for key, value in labels.items():
        match = re.fullmatch(r"traefik\.http\.routers\.([^.]+)\.(.+)", key)
        if match:
            routers.setdefault(match.group(1), {})[match.group(2)] = value
    return routers


def test_protected_routers_carry_forward_auth_and_a_callback_router(rendered: Any) -> None:
    project, results = rendered
    public = {(r.host, r.path) for _, _, r in cat.all_routes(project.catalogue)
              if r.auth == "public" and r.reason}
    basic = {(r.host, r.path) for _, _, r in cat.all_routes(project.catalogue)
             if r.auth == "basic"}
    protected_seen = 0
    for result in results.values():
        for service in compose_of(result)["services"].values():
            routers = _routers(service.get("labels", {}))
            for name, router in routers.items():
                assert router["entrypoints"] == "websecure"
                assert router["tls"] == "true"
                if name.endswith("-outpost"):
                    assert OUTPOST_PATH in router["rule"]
                    assert router["service"] == OUTPOST_SERVICE
                    continue
                host = re.search(r"Host\(`([^`]+)`\)", router["rule"]).group(1)  # type: ignore[union-attr]
                path = re.search(r"PathPrefix\(`([^`]+)`\)", router["rule"])
                if router.get("middlewares") == FORWARD_AUTH_MIDDLEWARE:
                    protected_seen += 1
                    callback = routers[f"{name}-outpost"]
                    assert callback["rule"] == (
                        f"Host(`{host}`) && PathPrefix(`{OUTPOST_PATH}`)")
                    assert int(callback["priority"]) > len(router["rule"])
                elif router.get("middlewares", "").endswith("-basic@file"):
                    assert (host, path.group(1) if path else "") in basic, name
                else:
                    # Unprotected routers exist only for public routes that give a reason.
                    assert (host, path.group(1) if path else "") in public, name
    sso = [r for _, _, r in cat.all_routes(project.catalogue) if r.auth == "sso"]
    assert protected_seen == len(sso) > 0


def _published(spec: str) -> tuple[str, int, int]:
    address, published, target = spec.rsplit("/", 1)[0].rsplit(":", 2)
    return address.strip("[]"), int(published), int(target)


def test_only_the_ingress_publishes_80_and_443_on_all_addresses(rendered: Any) -> None:
    project, results = rendered
    bind = project.config["BIND_ADDRESS"]
    declared = {(s.name, p.published): p.bind for st in project.catalogue.stacks.values()
                for s in st.services for p in s.ports}
    web_ports = {int(project.config[key]) for key in ("TRAEFIK_HTTP_PORT", "TRAEFIK_HTTPS_PORT")}
    for name, result in results.items():
        for service_name, service in compose_of(result)["services"].items():
            for spec in service.get("ports", []):
                address, published, target = _published(spec)
                if published in web_ports or target in (80, 443):
                    assert project.catalogue[name].ingress, f"{service_name} publishes {spec}"
                    assert service_name == "traefik"
                    continue
                expected = declared[(service_name, published)] or bind
                assert address == expected, f"{name}/{service_name} binds {spec}"


def test_hardening_is_applied_to_every_service(rendered: Any) -> None:
    project, results = rendered
    for name, result in results.items():
        for service_name, service in compose_of(result)["services"].items():
            assert "no-new-privileges:true" in service["security_opt"], service_name
            assert service["cap_drop"] == ["ALL"]
            assert service["mem_limit"] and service["pids_limit"] > 0 and service["cpus"] > 0
            oneshot = project.catalogue[name].service(service_name).oneshot
            assert service["restart"] == ("no" if oneshot else "unless-stopped")
            assert service["labels"]["io.stackyard.stack"] == name
            assert not service.get("image", "").endswith(":latest")


def test_socket_mounts_use_the_configured_socket(rendered: Any) -> None:
    project, results = rendered
    socket = project.config["DOCKER_SOCKET"]
    mounts = [v for r in results.values() for s in compose_of(r)["services"].values()
              for v in s.get("volumes", []) if "docker.sock" in v]
    assert mounts
    assert all(v.startswith(f"{socket}:") for v in mounts), mounts


def test_images_go_through_the_mirror_when_set(rendered: Any) -> None:
    project, results = rendered
    mirror = project.config.get("IMAGE_MIRROR")
    images = [s["image"] for r in results.values() for s in compose_of(r)["services"].values()]
    if mirror:
        assert all(i.startswith(f"{mirror}/") for i in images), images
        assert f"{mirror}/docker/library/busybox:" in " ".join(images) or True
    else:
        assert not any(i.startswith("localhost:5000/") for i in images)


def test_data_volumes_are_absolute_under_data_root(rendered: Any) -> None:
    project, results = rendered
    data_root = str(project.config.path("DATA_ROOT"))
    for name, result in results.items():
        services = compose_of(result)["services"]
        for service, volume in cat.data_volumes(project.catalogue[name]):
            expected = f"{data_root}/{volume.source}:{volume.target}"
            mounts = services[service.name]["volumes"]
            assert expected in mounts or f"{expected}:ro" in mounts


def test_traefik_certificates_follow_acme(rendered: Any) -> None:
    project, results = rendered
    traefik = results["traefik"]
    static = yaml.safe_load(traefik.files["traefik.yml"])
    dynamic = yaml.safe_load(traefik.files["dynamic/stackyard.yml"])
    volumes = compose_of(traefik)["services"]["traefik"]["volumes"]
    assert static["providers"]["docker"]["exposedByDefault"] is False
    assert static["entryPoints"]["web"]["http"]["redirections"]["entryPoint"]["to"] == "websecure"
    assert dynamic["tls"]["options"]["default"]["minVersion"] == "VersionTLS12"
    assert dynamic["tls"]["options"]["default"]["sniStrict"] is True
    assert "forwardAuth" in dynamic["http"]["middlewares"]["authentik"]
    certs = str(project.config.path("CERTS_DIR"))
    if project.config.flag("ACME_ENABLED"):
        assert "letsencrypt" in static["certificatesResolvers"]
        assert "certificates" not in dynamic["tls"]
        assert not any(v.startswith(f"{certs}/ingress") for v in volumes)
    else:
        assert "certificatesResolvers" not in static
        served = "/etc/traefik/certs/ingress-fullchain.pem"
        assert dynamic["tls"]["certificates"][0]["certFile"] == served
        assert f"{certs}/ingress-fullchain.pem:{served}:ro" in volumes
        # the key: Traefik's own copy (root-owned 0400, made by `up`), never the original
        data = project.config.path("DATA_ROOT")
        assert (f"{data}/keys/traefik/traefik/ingress-key.pem:"
                "/etc/traefik/certs/ingress-key.pem:ro") in volumes
        assert not any(v.startswith(f"{certs}/ingress-key.pem") for v in volumes)


def test_landing_page_links_every_routed_host(rendered: Any) -> None:
    project, results = rendered
    page = results["traefik"].files["landing/index.html"]
    for _, _, route in cat.all_routes(project.catalogue):
        if not route.path and route.host != project.config["DOMAIN"]:
            assert f'href="https://{route.host}/"' in page


def test_zot_config(rendered: Any) -> None:
    project, results = rendered
    config = json.loads(results["zot"].files["config.json"])
    assert config["storage"]["gc"] is True
    assert config["http"]["externalUrl"] == f"https://registry.{project.config['DOMAIN']}"
    destinations = {r["content"][0]["destination"]: r["onDemand"]
                    for r in config["extensions"]["sync"]["registries"]}
    assert destinations == {p: True for p in
                            ("/docker", "/ghcr", "/gcr", "/quay", "/k8s", "/lscr")}
    for extension in ("search", "ui", "metrics", "scrub"):
        assert config["extensions"][extension]["enable"] is True
    assert "credentialsFile" not in config["extensions"]["sync"]
    volumes = compose_of(results["zot"])["services"]["zot"]["volumes"]
    assert not any("credentials" in v for v in volumes)
    if project.config.flag("ZOT_TLS_ENABLED"):
        assert config["http"]["tls"]["cert"] == "/etc/zot/certs/registry-server-fullchain.pem"
        assert any(v.endswith("/registry-server-key.pem:ro") for v in volumes)
    else:
        assert "tls" not in config["http"]


def test_zot_credentials_are_mounted_only_when_configured(tmp_path: Path) -> None:
    load(tmp_path)  # creates the env folder
    creds = tmp_path / "creds.json"
    creds.write_text("{}")
    with (tmp_path / "env" / "alt.env").open("a") as handle:
        handle.write(f"ZOT_CREDENTIALS_PATH={creds}\n")
    results = render_stacks(load(tmp_path, "alt"), ["zot"])
    config = json.loads(results["zot"].files["config.json"])
    assert config["extensions"]["sync"]["credentialsFile"] == "/etc/zot/credentials.json"
    # zot (65532) gets its own copy: the user's file may well be 0600
    data = tmp_path / "data"
    assert f"{data}/keys/zot/zot/creds.json:/etc/zot/credentials.json:ro" in compose_of(
        results["zot"])["services"]["zot"]["volumes"]


def test_stale_files_are_removed_inside_the_build_folder_only(tmp_path: Path) -> None:
    project = load(tmp_path)
    result = render_stacks(project, ["zot"])["zot"]
    stale = result.directory / "old" / "leftover.conf"
    stale.parent.mkdir(parents=True)
    stale.write_text("x")
    outside = tmp_path / "keep.txt"
    outside.write_text("keep")
    again = render_stacks(project, ["zot"])["zot"]
    assert not stale.exists() and not stale.parent.exists()
    assert "old/leftover.conf" in again.changed
    assert outside.read_text() == "keep"


def test_unknown_stack_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown stack"):
        render_stacks(load(tmp_path), ["nope"])


def test_dry_render_writes_nothing(tmp_path: Path) -> None:
    project = load(tmp_path)
    results = render_stacks(project, write=False)
    assert results and not (tmp_path / "build").exists()


def test_render_task_writes_then_reports_unchanged(tmp_path: Path) -> None:
    import os
    import subprocess

    from tests.conftest import PROJECT_ROOT, program_of_this_python

    load(tmp_path)  # prepares the env folder
    env = {**os.environ, "INFRA_ENV_DIR": str(tmp_path / "env"),
           "BUILD_DIR": str(tmp_path / "build"), "DATA_ROOT": str(tmp_path / "data")}
    invoke = [program_of_this_python("invoke"), "render", "--stack", "zot"]
    runs = [subprocess.run(invoke, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                           timeout=60) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    assert "wrote compose.yaml" in runs[0].stdout
    assert "unchanged" in runs[1].stdout
    assert (tmp_path / "build" / "default" / "stacks" / "zot" / "compose.yaml").is_file()
    unknown = subprocess.run([*invoke[:-1], "nope"], cwd=PROJECT_ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode != 0 and "unknown stack" in unknown.stderr


def test_acme_credentials_reach_only_traefiks_private_env_file(rendered: Any) -> None:
    from tests.support.rendering import ACME_TEST_TOKEN

    project, results = rendered
    traefik = results["traefik"]
    service = compose_of(traefik)["services"]["traefik"]
    if not project.config.flag("ACME_ENABLED"):
        assert "env_file" not in service and "secrets/traefik.env" not in traefik.files
        return
    assert service["env_file"] == ["secrets/traefik.env"]
    assert f"CF_DNS_API_TOKEN={ACME_TEST_TOKEN}" in traefik.files["secrets/traefik.env"]
    written = traefik.directory / "secrets" / "traefik.env"
    assert oct(written.stat().st_mode & 0o777) == "0o600"
    for stack in results.values():
        for relative, text in stack.files.items():
            if relative != "secrets/traefik.env":
                assert ACME_TEST_TOKEN not in text, f"{stack.name}/{relative}"
