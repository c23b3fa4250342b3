"""The deploy core without hosts: targets, remote layout, upload plan, wiring, failure reasons."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from infra.config import HostLayer
from infra.deploy import layout, run, summary, upload
from infra.deploy.targets import resolve_targets, stacks_per_target
from infra.errors import ConfigError
from infra.inventory import parse_inventory
from infra.project import load_project

pytestmark = pytest.mark.unit
STACKS = ["traefik", "auth", "minio", "zot", "monitoring", "media"]
INVENTORY = """
hosts:
  media-box:
    address: 10.0.0.20
    user: deploy
    port: 2222
    key: /keys/id
    docker_socket: /run/user/1000/docker.sock
    rootless: true
    stacks: [media]
  monitor-box:
    address: 10.0.0.21
    stacks: [monitoring, zot]
    settings: {BIND_ADDRESS: 10.0.0.21}
  storage-box:
    address: 10.0.0.22
    stacks: [minio]
    settings: {BIND_ADDRESS: 0.0.0.0}
"""


def inventory(text: str = INVENTORY):
    return parse_inventory(yaml.safe_load(text), "inventory.yaml", STACKS,
                           ["BIND_ADDRESS", "DATA_ROOT", "DEPLOY_ROOT"])


def test_hosts_resolve_by_name_address_and_plain_ssh_target() -> None:
    media, by_address, plain = resolve_targets(inventory(), ["media-box", "admin@10.0.0.21",
                                                             "other.lan:2200"])
    assert media.connection_kwargs()["host"] == "10.0.0.20"
    assert media.connection_kwargs()["port"] == 2222 and media.host.user == "deploy"
    assert media.connection_kwargs()["connect_kwargs"] == {"key_filename": "/keys/id"}
    assert media.run_env() == {"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}
    assert by_address.name == "monitor-box" and by_address.host.user == "admin"
    assert not plain.in_inventory and plain.host.port == 2200 and plain.stacks == ()
    assert [t.name for t in resolve_targets(inventory(), [], every=True)] == [
        "media-box", "monitor-box", "storage-box"]


def test_stacks_per_target_filters_by_stack_and_explains_mistakes() -> None:
    targets = resolve_targets(inventory(), [], every=True)
    assert stacks_per_target(targets, [], STACKS)["monitor-box"] == ["monitoring", "zot"]
    assert stacks_per_target(targets, ["zot"], STACKS) == {"monitor-box": ["zot"]}
    with pytest.raises(ConfigError, match=r"not in env/inventory\.yaml"):
        stacks_per_target(resolve_targets(inventory(), ["elsewhere"]), [], STACKS)
    with pytest.raises(ConfigError, match="placed on none of media-box"):
        stacks_per_target(resolve_targets(inventory(), ["media-box"]), ["zot"], STACKS)
    with pytest.raises(ConfigError, match="no host given"):
        resolve_targets(inventory(), [])


def test_remote_layout_defaults_per_user() -> None:
    assert layout.deploy_root("", "/root", "0") == "/opt/stackyard"
    assert layout.deploy_root("", "/home/deploy", "1000") == "/home/deploy/.stackyard"
    assert layout.deploy_root("~/apps/sy", "/home/d", "1000") == "/home/d/apps/sy"
    remote = layout.RemoteLayout("/opt/stackyard")
    host = inventory().hosts["media-box"]
    assert layout.data_root("data", host, remote) == "/opt/stackyard/data"
    assert layout.data_root("/mnt/data", host, remote) == "/mnt/data"


def test_upload_plan_from_real_sha256sum(tmp_path: Path) -> None:
    stack_dir = tmp_path / "stacks" / "zot"
    files = upload.stack_files(str(stack_dir), {"compose.yaml": "a\n", "config.json": "{}\n",
                                                "secrets/zot.env": "X=1\n"})
    stack_dir.mkdir(parents=True)
    (stack_dir / "compose.yaml").write_text("a\n")  # same
    (stack_dir / "config.json").write_text("old\n")  # changed
    (stack_dir / "stale.txt").write_text("gone\n")  # no longer rendered
    # left by a run killed mid-upload: one beside a file no longer rendered, one in certs/
    (stack_dir / f"gone.yaml{upload.TMP_SUFFIX}").write_text("half")
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / f"ca.pem{upload.TMP_SUFFIX}").write_text("half")
    command = upload.checksum_command([str(stack_dir), str(tmp_path / "missing"), str(certs)])
    listed = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    plan = upload.plan_upload(files, upload.parse_checksums(listed.stdout), [str(stack_dir)])
    assert [Path(f.remote_path).name for f in plan.upload] == ["config.json", "zot.env"]
    assert plan.delete == sorted([str(certs / f"ca.pem{upload.TMP_SUFFIX}"),
                                  str(stack_dir / f"gone.yaml{upload.TMP_SUFFIX}"),
                                  str(stack_dir / "stale.txt")]) and plan.unchanged == 1
    assert {Path(f.remote_path).name: f.mode for f in files}["zot.env"] == 0o600
    assert upload.is_secret("ingress-key.pem") and not upload.is_secret("ca.pem")
    unchanged = {k: v for k, v in upload.parse_checksums(listed.stdout).items()
                 if not k.endswith(upload.TMP_SUFFIX)}
    same = upload.plan_upload(files[:1], unchanged, [])
    assert same.empty


def test_refused_connection_is_named(tmp_path: Path) -> None:
    from fabric import Connection

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conn = Connection("127.0.0.1", port=port, connect_timeout=3)
    with pytest.raises(Exception) as caught:
        conn.run("true", hide=True)
    assert summary.classify(caught.value).startswith("connection refused")


def test_summary_rows_and_exit_code() -> None:
    ok = summary.HostResult("a", ("zot",), summary.UNCHANGED, 1.234)
    bad = summary.HostResult("b", ("media",), summary.FAILED, 0.5, "auth failed: ...")
    assert summary.rows([ok, bad]) == [("a", "zot", "unchanged", "0", "1.2s", "-"),
                                       ("b", "media", "failed", "0", "0.5s", "auth failed: ...")]
    assert summary.exit_code([ok]) == 0 and summary.exit_code([ok, bad]) == 1


def test_a_multi_line_cause_reaches_the_user_whole(tmp_path: Path) -> None:
    """A configuration problem (a cause, then its fix, on later lines) raised while a host is
    deployed: the host's result keeps it whole, with the step; the table points to it; the
    task prints it whole. And a compose error's later lines are kept too."""
    from infra.errors import ConfigError, Problem

    problem = ConfigError(Problem("publishes auth/authentik-server:9000 on 127.0.0.1, which "
                                  "host h1 cannot reach", key="BIND_ADDRESS",
                                  file="env/inventory.yaml", fix="set BIND_ADDRESS for h2"))

    class Refusing:
        def run(self, *_: object, **__: object) -> object:
            raise problem

    target = type("T", (), {"name": "h1", "host": type("H", (), {"rootless": False,
                                                                  "docker_socket": ""})()})()
    result = run.deploy_host(Refusing(), target, ["traefik"], None, run.DeployOptions(),
                             lambda *_: None)
    assert result.result == summary.FAILED
    assert result.reason.startswith("while connecting: ")
    assert "cannot reach" in result.reason and "fix: set BIND_ADDRESS for h2" in result.reason
    [row] = summary.rows([result])
    assert row[-1].endswith("(whole cause below)")
    compose = RuntimeError("service \"zot\" failed\nError response from daemon: pull access "
                           "denied for x, repository does not exist")
    assert "pull access denied" in summary.classify(compose)


def _render(env_dir: Path, stack: str, host: str = "") -> dict[str, str]:
    from infra.render import render_stacks

    project = load_project(None, environ={"INFRA_ENV_DIR": str(env_dir)})
    if host:  # rendered for that inventory host: its layer on the configuration
        project = project.for_host(HostLayer(host, {}))
    return render_stacks(project, [stack], write=False)[stack].files


def test_peer_is_container_dns_without_an_inventory(env_dir: Path) -> None:
    files = _render(env_dir, "monitoring")
    assert "endpoint: minio:9000" in files["mimir/config.yaml"]
    assert '"__address__" = "zot:5000"' in files["alloy/config.alloy"]


def test_peer_on_another_host_uses_its_address_and_published_port(env_dir: Path) -> None:
    (env_dir / "inventory.yaml").write_text(INVENTORY)
    files = _render(env_dir, "monitoring", host="monitor-box")
    assert "endpoint: 10.0.0.22:9000" in files["mimir/config.yaml"]  # MINIO_API_PORT there
    assert "endpoint: 10.0.0.22:9000" in files["loki/loki-config.yaml"]
    assert '"__address__" = "zot:5000"' in files["alloy/config.alloy"]  # same host


def test_peer_refuses_a_loopback_only_peer(env_dir: Path) -> None:
    (env_dir / "inventory.yaml").write_text(INVENTORY.replace("{BIND_ADDRESS: 0.0.0.0}", "{}"))
    with pytest.raises(ConfigError, match="BIND_ADDRESS"):
        _render(env_dir, "monitoring", host="monitor-box")


def test_traefik_routes_to_stacks_on_other_hosts_through_published_ports(env_dir: Path
                                                                         ) -> None:
    (env_dir / "inventory.yaml").write_text(INVENTORY)
    dynamic = yaml.safe_load(_render(env_dir, "traefik")["dynamic/stackyard.yml"])
    routers, services = dynamic["http"]["routers"], dynamic["http"]["services"]
    # zot on monitor-box publishes ZOT_PORT: routed there; grafana publishes GRAFANA_PORT
    assert services["zot-remote"]["loadBalancer"]["servers"] == [{"url": "http://10.0.0.21:5000"}]
    assert routers["grafana-remote"]["middlewares"] == ["authentik@file"]
    assert routers["grafana-remote-outpost"]["service"] == "authentik-outpost"
    assert services["grafana-remote"]["loadBalancer"]["servers"][0]["url"] == \
        "http://10.0.0.21:3000"
    # sonarr (media-box) publishes nothing, plex only on 127.0.0.1 there: no router, and
    # the placement view says why
    assert "sonarr-remote" not in routers and "plex-remote" not in routers
    # authentik runs with Traefik on this machine: container DNS as before
    assert dynamic["http"]["services"]["authentik-outpost"]["loadBalancer"]["servers"] == [
        {"url": "http://authentik-server:9000"}]


def test_rootless_host_needs_the_engine_owner_as_login() -> None:
    sock = "/run/user/1001/docker.sock"
    assert layout.rootless_login_problem("rl", "", "0", "") == ""  # not rootless: no check
    assert layout.rootless_login_problem("rl", sock, "1001", "1001 alice") == ""
    wrong = layout.rootless_login_problem("rl", sock, "0", "1001 alice")
    assert "belongs to alice (uid 1001)" in wrong and "login is uid 0" in wrong
    assert "set `user: alice` for rl in env/inventory.yaml" in wrong and "\n" not in wrong
    unknown = layout.rootless_login_problem("rl", sock, "0", "1001 UNKNOWN")
    assert "set `user: 1001`" in unknown
    unseen = layout.rootless_login_problem("rl", sock, "1002", "")
    assert "not visible to the SSH login (uid 1002)" in unseen and "host.rootless" in unseen


def test_login_probe_reads_the_socket_owner_through_a_real_shell(tmp_path: Path) -> None:
    import os

    from invoke import Context

    from infra.deploy.run import probe_login

    path = tmp_path / "engine dir" / "docker.sock"  # a space: the path must be quoted
    path.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        home, uid, owner = probe_login(Context(), str(path))
    assert home == os.environ["HOME"] and uid == str(os.getuid())
    assert owner.split()[0] == str(os.getuid())
    assert probe_login(Context(), str(tmp_path / "missing.sock"))[2] == ""
    assert probe_login(Context())[1:] == (str(os.getuid()), "")


def test_sockets_without_tcp_are_left_alone() -> None:
    """A ProxyCommand or gateway channel is no TCP socket: nothing to set, nothing raised."""
    import socket
    from types import SimpleNamespace

    from infra.deploy.connection import disable_nagle

    left, right = socket.socketpair()
    with left, right:
        disable_nagle(SimpleNamespace(sock=left))
    disable_nagle(SimpleNamespace(sock=object()))
    disable_nagle(None)


def test_a_jump_host_is_verified_like_the_host(tmp_path: Path) -> None:
    """fabric builds its own Connection for a ProxyJump hop, which would accept any key."""
    import fabric
    import paramiko

    from infra.deploy.connection import Connection, _RefuseUnknown

    known = tmp_path / "known_hosts"
    known.write_text("")
    config = fabric.Config(ssh_config=paramiko.SSHConfig.from_text(
        "Host target\n  ProxyJump hop1,jumper@hop2:2222\n"))
    conn = Connection("target", config=config, known_hosts=[str(known)])
    hops = []
    gateway = conn.gateway
    while isinstance(gateway, fabric.Connection):
        assert isinstance(gateway, Connection), gateway
        assert isinstance(gateway.client._policy, _RefuseUnknown)
        hops.append((gateway.host, gateway.port))
        gateway = gateway.gateway
    assert sorted(hops) == [("hop1", 22), ("hop2", 2222)]  # every hop, in fabric's order


def test_services_with_key_copies_are_recreated_when_a_key_changes(tmp_path: Path) -> None:
    from infra.bringup.plan import KEYS_STATE, services_mounting
    from tests.support.rendering import load

    traefik = load(tmp_path).catalogue["traefik"]
    assert services_mounting(traefik, [KEYS_STATE]) == ("traefik",)
    assert services_mounting(traefik, []) == ()


def test_the_deploy_view_has_a_section_per_host_with_what_each_stack_is_on() -> None:
    from rich.console import Console

    from infra.bringup import schedule
    from tasks.deploy import _HostsView

    view = _HostsView()
    progress = schedule.Progress()
    view.hosts["h1"] = progress
    view.note("h1", "uploaded 3 file(s)")
    view.note("h2", "rendered minio")
    progress.set("zot", schedule.STARTING)
    progress.service("zot", "zot", "waiting for health", "waiting for health")
    console = Console(record=True, width=120)
    console.print(view.table())
    text = console.export_text()
    assert "h1" in text and "uploaded 3 file(s)" in text and "h2" in text
    assert "zot: waiting for health (0s)" in text and "starting" in text
