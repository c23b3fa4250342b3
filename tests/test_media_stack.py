"""The media stack: Plex, the *arr apps, qBittorrent and Seerr on one hardlink-friendly /data."""

from __future__ import annotations

import configparser
import hashlib
import re
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest

from infra import catalogue as cat
from infra.project import Project
from infra.render import RenderedStack, render_stacks
from tests.support.rendering import compose_config, single_stack_project

from .conftest import require_program

STACK = "media"
LSIO = ("plex", "sonarr", "radarr", "prowlarr", "bazarr", "qbittorrent")
SHARED_DATA = ("sonarr", "radarr", "bazarr", "qbittorrent")  # all see the same /data tree


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return single_stack_project(tmp_path_factory.mktemp(STACK), STACK)


@pytest.fixture(scope="module")
def rendered(project: Project) -> RenderedStack:
    return render_stacks(project, [STACK])[STACK]


def services(project: Project) -> dict[str, cat.Service]:
    return {s.name: s for s in project.catalogue[STACK].services}


@pytest.mark.unit
def test_services_network_and_dependencies(project: Project) -> None:
    stack = project.catalogue[STACK]
    assert set(services(project)) == {*LSIO, "seerr", "media-layout"}
    assert stack.network == "media_default"
    assert stack.depends_on == ("traefik",)
    assert not stack.secrets


@pytest.mark.unit
def test_one_data_tree_for_hardlinks(project: Project) -> None:
    by_name = services(project)
    for name in SHARED_DATA:
        data = [v for v in by_name[name].volumes if v.target == "/data"]
        assert [(v.kind, v.source) for v in data] == [("data", "media-library")], name
    plex_library = [v for v in by_name["plex"].volumes if v.target == "/data/media"]
    assert [(v.source, v.read_only) for v in plex_library] == [("media-library/media", True)]
    # no separate /downloads or /movies mounts: they would break hardlinks
    for name in LSIO:
        targets = {v.target for v in by_name[name].volumes}
        assert not targets & {"/downloads", "/movies", "/tv"}, name
    assert {v.target for v in by_name["prowlarr"].volumes} == {"/config"}


@pytest.mark.unit
def test_lsio_images_drop_privileges_themselves(project: Project) -> None:
    config = project.config
    for name in LSIO:
        service = services(project)[name]
        assert not service.user, f"{name}: s6 starts as root and drops to PUID itself"
        env = service.environment
        assert (env["PUID"], env["PGID"], env["TZ"], env["UMASK"]) == (
            config["PUID"], config["PGID"], config["TZ"], config["UMASK"]), name
        assert {"SETUID", "SETGID", "CHOWN"} <= set(service.cap_add), name
        config_volume = next(v for v in service.volumes if v.target == "/config")
        assert config_volume.owner == (int(config["PUID"]), int(config["PGID"])), name
    assert services(project)["qbittorrent"].environment["WEBUI_PORT"] == "8080"


@pytest.mark.unit
def test_seerr(project: Project) -> None:
    seerr = services(project)["seerr"]
    assert seerr.image.startswith("ghcr.io/seerr-team/seerr:")
    assert seerr.user == "1000:1000"
    assert seerr.compose.get("init") is True
    assert [(v.target, v.owner) for v in seerr.volumes] == [("/app/config", (1000, 1000))]
    assert seerr.health and "http://127.0.0.1:5055/api/v1/settings/public" in seerr.health.command


@pytest.mark.unit
def test_health_checks_use_each_apps_own_endpoint(project: Project) -> None:
    expected = {"plex": "http://127.0.0.1:32400/identity", "sonarr": "http://127.0.0.1:8989/ping",
                "radarr": "http://127.0.0.1:7878/ping", "prowlarr": "http://127.0.0.1:9696/ping",
                "bazarr": "http://127.0.0.1:6767/api/system/ping", "qbittorrent": "http://127.0.0.1:8080/"}
    for name, url in expected.items():
        health = services(project)[name].health
        assert health and health.command[:2] == ("CMD", "curl"), name
        assert "-f" in health.command[2] and health.command[-1] == url, name


@pytest.mark.unit
def test_routes(project: Project) -> None:
    routes = {r.host: r for _, r in project.catalogue[STACK].routes}
    sso = {f"{n}.localhost" for n in ("sonarr", "radarr", "prowlarr", "bazarr", "qbittorrent",
                                      "requests")}
    assert set(routes) == sso | {"plex.localhost"}
    assert all(routes[host].auth == "sso" for host in sso)
    plex = routes["plex.localhost"]
    assert plex.auth == "public" and "forward-auth" in plex.reason
    published = [(s.name, p.published, p.target, p.protocol, p.bind)
                 for s in project.catalogue[STACK].services for p in s.ports]
    torrenting = int(project.config["QBITTORRENT_TORRENTING_PORT"])
    assert published == [("plex", int(project.config["PLEX_PORT"]), 32400, "tcp", ""),
                         # peers must reach qBittorrent: the announced port, on every address
                         ("qbittorrent", torrenting, torrenting, "tcp", "0.0.0.0"),
                         ("qbittorrent", torrenting, torrenting, "udp", "0.0.0.0")]
    environment = services(project)["qbittorrent"].environment
    assert environment["TORRENTING_PORT"] == str(torrenting)


def test_layout_job_creates_the_trash_tree(project: Project, rendered: RenderedStack) -> None:
    layout = services(project)["media-layout"]
    assert layout.oneshot and layout.user == f"{project.config['PUID']}:{project.config['PGID']}"
    assert layout.command == ("/media-setup.sh",)
    mounts = {v.target: v.source for v in layout.volumes}
    assert mounts["/media-setup.sh"] == "media-setup.sh" and "media-setup.sh" in rendered.files
    # the same data folders the apps mount as /config
    assert mounts["/config-plex"] == next(v.source for v in services(project)["plex"].volumes
                                          if v.target == "/config")
    assert mounts["/config-qbittorrent"] == next(
        v.source for v in services(project)["qbittorrent"].volumes if v.target == "/config")
    for name in ("plex", *SHARED_DATA):
        assert services(project)[name].depends_on == {"media-layout":
                                                      "service_completed_successfully"}


@pytest.mark.tools
def test_layout_script_runs_and_never_changes_an_existing_file(
        project: Project, rendered: RenderedStack, tmp_path: Path) -> None:
    """The rendered script, run by busybox sh under a scratch folder: the TRaSH tree, Plex's
    public URL and qBittorrent's download paths on the first run; nothing changed after."""
    busybox = require_program("busybox")
    script = rendered.directory / "media-setup.sh"
    run = [busybox, "sh", str(script), str(tmp_path)]
    result = subprocess.run(run, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    made = {p.relative_to(tmp_path / "data").as_posix() for p in (tmp_path / "data").rglob("*")}
    assert {"torrents/movies", "torrents/incomplete", "usenet/incomplete", "media/tv",
            "media/books"} <= made
    prefs = (tmp_path / "config-plex/Library/Application Support/Plex Media Server"
             / "Preferences.xml")
    root = ElementTree.fromstring(prefs.read_text())
    assert root.tag == "Preferences" and len(root) == 0 and prefs.read_text().count("/>") == 1
    port = project.config["TRAEFIK_HTTPS_PORT"]
    assert root.get("customConnections") == f"https://plex.{project.config['DOMAIN']}:{port}"
    machine = root.get("MachineIdentifier") or ""
    assert re.fullmatch(r"[0-9a-f-]{36}", machine)
    assert root.get("ProcessedMachineIdentifier") == hashlib.sha1(
        f"{machine}- Plex Media Server".encode()).hexdigest()
    conf = configparser.ConfigParser(interpolation=None)
    conf.optionxform = str  # type: ignore[assignment,method-assign]
    conf.read(tmp_path / "config-qbittorrent/qBittorrent/qBittorrent.conf")
    session = conf["BitTorrent"]
    assert session["Session\\DefaultSavePath"] == "/data/torrents/"
    assert session["Session\\TempPath"] == "/data/torrents/incomplete/"
    assert session["Session\\TempPathEnabled"] == "true"
    assert conf["Meta"]["MigrationVersion"] == "8"  # no legacy /downloads/ key migrated over
    assert not any("Downloads\\" in key for key in conf["Preferences"])
    # a second run changes nothing, even files the apps or the user have changed since
    prefs.write_text("<Preferences edited=\"1\"/>\n")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = subprocess.run(run, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.tools
def test_compose_file_is_valid(rendered: RenderedStack) -> None:
    composed = compose_config(rendered)
    assert composed["seerr"]["init"] is True
    assert composed["plex"]["environment"]["PUID"] == "1000"
    library = {m["source"] for name in SHARED_DATA for m in composed[name]["volumes"]
               if m["target"] == "/data"}
    assert len(library) == 1 and library.pop().endswith("/media-library")
    assert not [n for n, s in composed.items() if s.get("privileged")]
