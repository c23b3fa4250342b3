"""`invoke up` and the day-2 tasks against a real engine, with honest doubles of every image.

One lab per module (a private rootful engine in its own network namespace, the local registry
as IMAGE_MIRROR, the doubles pushed): all six stacks are brought up once, then the tests below
run in file order against it (idempotence, shared networks, data surviving down/up, refusal of
`down --volumes`, a double that never becomes healthy).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from infra.catalogue import internal_networks, networks, stack_layers
from infra.mirror import mirror_image
from tests.conftest import require, require_program
from tests.support import e2e, images, registry

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, docker_engine: str) -> Iterator[e2e.Lab]:
    require(os.geteuid() == 0, "root (network namespaces, a private engine)")
    for program in ("docker-registry", "nsenter", "ip", "dockerd", "busybox"):
        require_program(program)
    workdir = tmp_path_factory.mktemp("e2e")
    with e2e.lab(workdir) as the_lab:
        pulled = the_lab.invoke("pull")
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        begin = time.monotonic()
        the_lab.first_up = the_lab.invoke("up")  # type: ignore[attr-defined]
        the_lab.timings["first up"] = time.monotonic() - begin
        yield the_lab
        print("\ne2e timings (s):", {k: round(v, 1) for k, v in the_lab.timings.items()})


def _stack_names(lab: e2e.Lab) -> list[str]:
    catalogue = lab.project.catalogue
    return [n for layer in stack_layers(catalogue, catalogue.names()) for n in layer]


def test_every_image_is_pulled_through_the_mirror(lab: e2e.Lab) -> None:
    for compose_file in (lab.workdir / "build" / e2e.PROFILE / "stacks").glob("*/compose.yaml"):
        for name, service in yaml.safe_load(compose_file.read_text())["services"].items():
            assert service["image"].startswith(f"{lab.mirror}/"), (compose_file, name)
    engine_images = set(lab.docker("images", "--format", "{{.Repository}}:{{.Tag}}").split())
    for spec in images.double_specs(lab.project):
        assert spec.reference in engine_images
    # nothing else is reachable: an image the mirror lacks fails at once, clearly
    begin = time.monotonic()
    missing = subprocess.run([*lab.engine.cli, "pull", f"{lab.mirror}/docker/library/nope:1"],
                             capture_output=True, text=True, timeout=60)
    error = missing.stderr.lower()
    assert missing.returncode != 0 and ("manifest unknown" in error or "not found" in error)
    assert time.monotonic() - begin < 15


def test_all_six_stacks_come_up_healthy(lab: e2e.Lab) -> None:
    result = lab.first_up  # type: ignore[attr-defined]
    e2e.assert_all_healthy(lab, result)
    assert "Routed URLs" in result.stdout
    for stack in lab.project.catalogue.stacks.values():
        for service, _ in stack.routes:
            assert service.name in result.stdout


def test_stacks_started_after_their_dependencies(lab: e2e.Lab) -> None:
    started: dict[str, list[str]] = {}
    ids = lab.docker("ps", "-aq").split()
    for item in json.loads(lab.docker("inspect", *ids)):
        project = item["Config"]["Labels"].get("com.docker.compose.project", "")
        started.setdefault(project, []).append(item["Created"])
    for stack in lab.project.catalogue.stacks.values():
        for dep in stack.depends_on:
            assert min(started[stack.name]) > max(started[dep]), (stack.name, dep)


def test_ownership_was_fixed_inside_the_engine(lab: e2e.Lab) -> None:
    data = lab.workdir / "data"
    for stack in lab.project.catalogue.stacks.values():
        for service in stack.services:
            for volume in service.volumes:
                if volume.kind != "data" or not volume.owner:
                    continue
                path = data / volume.source
                assert (path.stat().st_uid, path.stat().st_gid) == volume.owner, path
    markers = list((data / "loki").glob(".double-*"))
    assert markers and markers[0].stat().st_uid == 10001  # written by the double as 10001


def test_status_shows_every_service(lab: e2e.Lab) -> None:
    result = lab.invoke("status")
    assert result.returncode == 0, result.stderr
    for stack in lab.project.catalogue.stacks.values():
        for service in stack.services:
            assert service.name in result.stdout
    assert "running" in result.stdout and "absent" not in result.stdout


def test_status_ps_and_check_as_json_for_scripts(lab: e2e.Lab) -> None:
    """One document each (infra/jsonout.py), versioned; the same facts the tables show."""
    expected = {(stack.name, s.name) for stack in lab.project.catalogue.stacks.values()
                for s in stack.services}
    for task in ("status", "ps"):
        result = lab.invoke(task, "--json")
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert (document["v"], document["kind"]) == (1, task)
        rows = {(r["stack"], r["service"]): r for r in document["services"]}
        assert set(rows) == expected
        assert all(r["state"] == "running" or r["state"].startswith("done (0")
                   for r in rows.values()), rows
    checked = lab.invoke("check", "--no-routes", "--json")
    document = json.loads(checked.stdout)
    assert checked.returncode == 0 and document["ok"] is True, checked.stdout[-3000:]
    assert {r["subject"] for r in document["results"]} == {s for _, s in expected}
    assert all(r["ok"] for r in document["results"])


def test_external_networks_exist_once_and_are_shared_as_the_catalogue_says(lab: e2e.Lab
                                                                           ) -> None:
    names = lab.docker("network", "ls", "--format", "{{.Name}}").split()
    for network, stacks in networks(lab.project.catalogue).items():
        assert names.count(network) == 1, network
        inspected = json.loads(lab.docker("network", "inspect", network))[0]
        # backends' networks have no route out of the engine, and the ingress is not on them
        assert inspected["Internal"] == (network in internal_networks(lab.project.catalogue))
        attached = inspected["Containers"]
        projects = set()
        for container in attached.values():
            projects.add(container["Name"].split("-")[0])
        assert projects == set(stacks), (network, projects, stacks)


@pytest.mark.parametrize("network, proxy", [("traefik_internal", "ingress-docker-api"),
                                            ("monitoring_internal", "docker-api")])
def test_the_docker_api_proxy_answers_reads_only(lab: e2e.Lab, network: str, proxy: str
                                                 ) -> None:
    """Real nginx (the NGINX_IMAGE double runs Debian's) in front of the real engine."""
    curl = mirror_image(lab.project.config["NGINX_IMAGE"], lab.mirror)
    requests = {
        ("HEAD", "/_ping"): 200, ("GET", "/v1.41/containers/json"): 200,
        ("GET", "/v1.41/containers/traefik-traefik-1/json"): 200,
        ("GET", "/v1.41/images/../containers/json"): 200,   # normalised, then allowed
        ("POST", "/v1.41/containers/create"): 403,
        ("POST", "/v1.41/containers/traefik-traefik-1/stop"): 403,
        ("DELETE", "/v1.41/containers/traefik-traefik-1"): 403,
        ("GET", "/v1.41/containers/traefik-traefik-1/export"): 403,
        ("GET", "/v1.41/containers/x/../../images/json"): 403,
        ("GET", "/v1.41/containers/x%2F..%2F..%2Fswarm"): 403,
        ("GET", "/v1.41/swarm"): 403, ("GET", "/v1.41/secrets"): 403,
        ("GET", "/v1.41/images/json"): 403,
    }
    script = "; ".join(
        f"printf '%s ' $(curl -s --path-as-is -o /dev/null -w '%{{http_code}}' "
        f"{'-I' if method == 'HEAD' else '-X ' + method} 'http://{proxy}:2375{path}')"
        for method, path in requests)
    answered = lab.docker("run", "--rm", "--network", network, "--entrypoint", "sh", curl,
                          "-c", script).split()
    assert dict(zip(requests, map(int, answered), strict=True)) == requests
    # and nobody else reaches it: not from a routed network
    outside = lab.docker("run", "--rm", "--network", "traefik_default", "--entrypoint", "sh",
                         curl, "-c", f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 3 "
                         f"http://{proxy}:2375/_ping; true")
    assert outside.strip() in ("000", ""), outside


def test_no_container_shows_a_secret_that_its_image_can_read_from_a_file(lab: e2e.Lab
                                                                         ) -> None:
    secrets = lab.project.config.secrets
    moved = {k: secrets[k] for k in ("GRAFANA_ADMIN_PASSWORD", "AUTHENTIK_SECRET_KEY",
                                     "AUTHENTIK_DB_PASSWORD", "MINIO_ROOT_PASSWORD")}
    for (stack, service), info in lab.containers().items():
        inspected = json.loads(lab.docker("inspect", info["id"]))[0]
        environment = "\n".join(inspected["Config"]["Env"] or [])
        allowed = {"MINIO_ROOT_PASSWORD"} if service == "minio" else set()
        shown = [k for k, v in moved.items() if v in environment and k not in allowed]
        assert not shown, (stack, service, shown)
    # PostgreSQL was initialised from the file: the password from it logs in over TCP
    check = lab.docker("exec", "-e", f"PGPASSWORD={secrets['AUTHENTIK_DB_PASSWORD']}",
                       "auth-postgresql-1", "psql", "-h", "127.0.0.1", "-U", "authentik",
                       "-d", "authentik", "-tAc", "SELECT 1")
    assert check.strip() == "1"


def test_second_up_recreates_nothing(lab: e2e.Lab) -> None:
    before = {k: v["id"] for k, v in lab.containers().items()}
    begin = time.monotonic()
    result = lab.invoke("up")
    lab.timings["no-op up"] = time.monotonic() - begin
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout
    assert {k: v["id"] for k, v in lab.containers().items()} == before


def test_a_changed_file_recreates_only_the_services_that_mount_it(lab: e2e.Lab) -> None:
    # MIMIR_PORT appears in the Mimir config file (mounted by mimir-1..3) and in mimir-lb's
    # published port: exactly those four containers must be recreated, nothing else.
    before = {k: v["id"] for k, v in lab.containers().items()}
    result = lab.invoke("up", env={"MIMIR_PORT": "9019"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    after = {k: v["id"] for k, v in lab.containers().items()}
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed == {("monitoring", f"mimir-{i}") for i in (1, 2, 3)} | {
        ("monitoring", "mimir-lb")}
    restore = lab.invoke("up")
    assert restore.returncode == 0, restore.stdout[-4000:]


def _mimir_ready(lab: e2e.Lab) -> subprocess.CompletedProcess[str]:
    helper = mirror_image(lab.project.config["HELPER_IMAGE"], lab.mirror)
    return subprocess.run([*lab.engine.cli, "run", "--rm", "--network", "monitoring_default",
                           "--entrypoint", "sh", helper, "-c",
                           "wget -q -O - http://mimir-lb:9009/ready"],
                          capture_output=True, text=True, timeout=60)


def _address(lab: e2e.Lab, container: str) -> str:
    return lab.docker("inspect", "--format",
                      '{{(index .NetworkSettings.Networks "monitoring_internal").IPAddress}}',
                      container).strip()


def test_mimir_balancer_follows_a_recreated_node(lab: e2e.Lab) -> None:
    """Docker's DNS answers the nodes' shared alias; the balancer asks it again, so a node
    recreated at a new address serves even when it is the only one left."""
    out = _mimir_ready(lab)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    conf = lab.docker("exec", "monitoring-mimir-lb-1", "cat", "/etc/nginx/nginx.conf")
    assert "set $mimir_nodes mimir:8080" in conf and "listen 9009" in conf
    before = _address(lab, "monitoring-mimir-1-1")
    lab.docker("rm", "-f", "monitoring-mimir-1-1")
    # a container started in between takes the next address (the engine hands addresses out
    # in turn), so the node comes back at another one
    helper = mirror_image(lab.project.config["HELPER_IMAGE"], lab.mirror)
    holder = lab.docker("run", "-d", "--network", "monitoring_internal",
                        "--entrypoint", "sleep", helper, "300").strip()
    try:
        up = lab.invoke("up", "--stack", "monitoring")
        assert up.returncode == 0, up.stdout[-4000:]
        after = _address(lab, "monitoring-mimir-1-1")
        assert after and after != before, (before, after)
        lab.docker("stop", "monitoring-mimir-2-1", "monitoring-mimir-3-1")
        time.sleep(6)  # the balancer keeps Docker's answer 5 s
        out = _mimir_ready(lab)
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    finally:
        lab.docker("rm", "-f", holder)
        restore = lab.invoke("up", "--stack", "monitoring")
        assert restore.returncode == 0, restore.stdout[-4000:]


def test_day_two_commands(lab: e2e.Lab) -> None:
    ps = lab.invoke("ps", "--stack", "auth")
    assert ps.returncode == 0 and "auth-postgresql-1" in ps.stdout, ps.stderr
    logs = lab.invoke("logs", "--service", "loki", "--tail", "3")
    assert logs.returncode == 0, logs.stderr
    assert "loki-1" in logs.stdout and "zot-1" not in logs.stdout
    assert len([line for line in logs.stdout.splitlines() if "loki-1" in line]) <= 3
    before = lab.containers()[("zot", "zot")]
    restart = lab.invoke("restart", "--stack", "zot")
    assert restart.returncode == 0, restart.stderr
    after = lab.containers()[("zot", "zot")]
    assert after["id"] == before["id"] and after["state"] == "running"
    assert "Up" in after["status"] and "second" in after["status"]


def _psql(lab: e2e.Lab, sql: str) -> str:
    return lab.docker("exec", "auth-postgresql-1", "psql", "-h", "/var/run/postgresql",
                      "-U", "authentik", "-d", "authentik", "-tAc", sql).strip()


def test_ctrl_c_during_up_stops_at_once_and_the_same_command_resumes(lab: e2e.Lab) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) once the monitoring
    stack is being brought up: out within 2 s, exit 130, the three lists and the resume
    command, an ``interrupted`` event with the same lists; the same command then converges."""
    down = lab.invoke("down", "--stack", "monitoring")
    assert down.returncode == 0, down.stdout + down.stderr
    events = lab.workdir / "ctrl-c.ndjson"
    run = lab.start("up", "--events", str(events))
    e2e.wait_for_event(events, lambda e: e.get("stack") == "monitoring"
                       and e.get("state") == "starting", run)
    begin = time.monotonic()
    os.killpg(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=30)
    took = time.monotonic() - begin
    lab.timings["Ctrl-C to exit (up)"] = took
    assert run.returncode == 130, out + err
    assert took < 2.0, took
    assert "Traceback" not in out + err
    assert "interrupted (SIGINT)" in out
    assert "cut off:       monitoring" in out, out
    assert "to resume, run the same command again: invoke up --events" in out
    assert "failed" not in out.split("interrupted (SIGINT)")[-1]
    last = json.loads(events.read_text().splitlines()[-1])
    assert last["event"] == "interrupted" and last["cut_off"] == ["monitoring"]
    assert "traefik" in last["finished"]
    again = lab.invoke("up")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert lab.containers()[("monitoring", "grafana")]["health"] == "healthy"
    # no terminal here: plain lines, no control codes, one per state change
    assert "\x1b[" not in again.stdout + again.stderr
    changes = [line for line in again.stdout.splitlines()
               if re.match(r"^(monitoring|monitoring/[\w-]+): ", line)]
    keys = [re.sub(r" \(\d+\.\ds\)$", "", line) for line in changes]
    assert "monitoring: healthy" in keys and any(k.startswith("monitoring/grafana: ")
                                                 for k in keys), changes
    last: dict[str, str] = {}
    for key in keys:  # a line only when something changed: never the same state twice running
        subject, state = key.split(": ", 1)
        assert last.get(subject) != state, changes
        last[subject] = state


def test_on_a_terminal_the_live_view_shows_the_waiting_service_and_its_time(lab: e2e.Lab
                                                                           ) -> None:
    """`up` in a real terminal (tmux), its pane captured while the monitoring stack waits on a
    service's health: that stack's row names the service, what it waits for and for how
    long; after the run, the events of a good up end with every stack healthy."""
    import shlex

    tmux = require_program("tmux")
    down = lab.invoke("down", "--stack", "monitoring")
    assert down.returncode == 0, down.stdout + down.stderr
    events = lab.workdir / "tmux.ndjson"
    command, cwd = lab._command(("up", "--events", str(events)), lab.environ)
    environ = " ".join(f"{k}={shlex.quote(v)}" for k, v in lab.environ.items()
                       if k.startswith(("INFRA_", "BUILD_DIR", "DATA_ROOT", "CERTS_DIR",
                                        "DOCKER_HOST", "PATH", "HOME")))
    session = f"sy{os.getpid()}"
    script = f"cd {shlex.quote(str(cwd))} && env {environ} TERM=xterm-256color " \
             f"{shlex.join(command)}; echo exit=$?; sleep 60"
    subprocess.run([tmux, "new-session", "-d", "-s", session, "-x", "160", "-y", "40",
                    script], check=True)
    try:
        e2e.wait_for_event(events, lambda e: e.get("event") == "service"
                           and e.get("stack") == "monitoring"
                           and e.get("state") == "waiting for health")
        wanted = re.compile(r"starting\s+\d+\.\ds\s+[\w-]+: waiting for health.*\(\d+s\)")
        pane, row = "", ""
        for _ in range(25):  # the view redraws four times a second
            time.sleep(0.2)
            pane = subprocess.run([tmux, "capture-pane", "-p", "-t", session],
                                  capture_output=True, text=True, check=True).stdout
            row = next((line for line in pane.splitlines() if line.lstrip().startswith(
                "monitoring") and "starting" in line), "")
            if wanted.search(row):
                break
        assert wanted.search(row), pane
        e2e.wait_for_event(events, lambda e: e.get("event") == "done", timeout=600)
        done = json.loads(events.read_text().splitlines()[-1])
        assert done["ok"] is True and set(done["stacks"].values()) <= {"healthy", "unchanged"}
        assert done["stacks"]["monitoring"] == "healthy"
    finally:
        subprocess.run([tmux, "kill-session", "-t", session], capture_output=True)


def test_ctrl_c_during_pull_stops_at_once_with_its_lists(lab: e2e.Lab) -> None:
    """A sequential task: stopped where it is (the stack being pulled is cut off), the
    stacks before it finished, the rest never started, exit 130."""
    import selectors

    run = lab.start("pull")
    assert run.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(run.stdout, selectors.EVENT_READ)
    seen = ""
    while "\nauth\n" not in "\n" + seen and selector.select(timeout=120):
        line = run.stdout.readline()
        if not line:
            break
        seen += line
    assert "auth" in seen.split(), seen
    begin = time.monotonic()
    os.killpg(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=30)
    took = time.monotonic() - begin
    lab.timings["Ctrl-C to exit (pull)"] = took
    assert run.returncode == 130, seen + out + err
    assert took < 2.0, took
    said = seen + out + err
    assert "interrupted (SIGINT)" in said and "Traceback" not in said, said
    assert "finished:      traefik" in said and "never started:" in said, said


@pytest.mark.parametrize("point", ["after secrets", "networks and ownership",
                                   "inside the bring-up"])
def test_sigkill_during_up_then_the_same_command_converges(lab: e2e.Lab, point: str) -> None:
    """Killed (SIGKILL: nothing of ours runs) at a point the run has reached (its events):
    right after it generated a missing secret, while it prepares the engine, inside the
    bring-up. The next run converges with the same secrets (the new one too), leaves no
    temporary file, and no lock is left to wait for."""
    secrets_file = lab.workdir / "env" / "secrets.env"
    lines = secrets_file.read_text().splitlines()
    # one secret missing: this run generates it, and the next must keep that value
    secrets_file.write_text("\n".join(line for line in lines
                                      if not line.startswith("GRAFANA_OIDC_SECRET=")) + "\n")
    down = lab.invoke("down", "--stack", "monitoring")
    assert down.returncode == 0, down.stdout + down.stderr
    events = lab.workdir / f"sigkill-{point.replace(' ', '-')}.ndjson"
    run = lab.start("up", "--events", str(events))
    wanted = {"after secrets": lambda e: e.get("step") == "certificates",
              "networks and ownership": lambda e: e.get("step") == "engine",
              "inside the bring-up": lambda e: e.get("stack") == "monitoring"
              and e.get("state") == "starting"}[point]
    e2e.wait_for_event(events, wanted, run)
    os.killpg(run.pid, signal.SIGKILL)
    run.communicate(timeout=30)
    written = secrets_file.read_text()
    assert "GRAFANA_OIDC_SECRET=" in written  # made before the kill, and saved whole
    begin = time.monotonic()
    again = lab.invoke("up")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert "waiting for" not in again.stderr  # the dead run's locks went with it
    assert secrets_file.read_text() == written
    leftovers = [p for p in lab.workdir.rglob("*.tmp") if "engine" not in p.parts]
    assert not leftovers, leftovers
    lab.timings[f"up after SIGKILL {point}"] = time.monotonic() - begin


def test_data_survives_down_then_up(lab: e2e.Lab) -> None:
    _psql(lab, "CREATE TABLE IF NOT EXISTS e2e_keep (v text); INSERT INTO e2e_keep VALUES ('kept')")
    lab.docker("exec", "monitoring-grafana-1", "sh", "-c", "echo kept > /var/lib/grafana/keep")
    down = lab.invoke("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert lab.containers() == {}
    up = lab.invoke("up")
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr
    assert _psql(lab, "SELECT v FROM e2e_keep") == "kept"
    assert lab.docker("exec", "monitoring-grafana-1", "cat", "/var/lib/grafana/keep").strip() \
        == "kept"


def _ids(lab: e2e.Lab) -> dict[tuple[str, str], str]:
    return {key: found["id"] for key, found in lab.containers().items()}


def test_down_volumes_refuses_without_yes_and_without_a_terminal(lab: e2e.Lab) -> None:
    before = _ids(lab)
    result = lab.invoke("down", "--volumes")
    assert result.returncode != 0
    assert "--yes" in result.stdout + result.stderr
    assert _ids(lab) == before
    assert (lab.workdir / "data" / "auth" / "postgres").is_dir()


def test_down_and_up_dry_touch_nothing(lab: e2e.Lab) -> None:
    before = _ids(lab)
    down = lab.invoke("down", "--dry", "--stack", "media")
    assert down.returncode == 0 and "would stop and remove media" in down.stdout
    changed = lab.invoke("up", "--dry", env={"MIMIR_PORT": "9029"})
    assert changed.returncode == 0 and "would update monitoring" in changed.stdout
    assert "would keep traefik" in changed.stdout
    assert _ids(lab) == before


def _load_broken_minio(lab: e2e.Lab) -> None:
    """The MinIO double that never becomes healthy, as stackyard-test/broken-minio:1, in the
    private engine only (docker load): tag it as the pin a test runs with."""
    spec = next(s for s in images.double_specs(lab.project)
                if s.upstream == lab.project.config["MINIO_IMAGE"])
    images.build_double(["docker"], spec, reference="stackyard-test/broken-minio:1",
                        broken=True)
    saved = subprocess.run(["docker", "save", "stackyard-test/broken-minio:1"],
                           capture_output=True, check=True).stdout
    subprocess.run([*lab.engine.cli, "load"], input=saved, capture_output=True, check=True)


def test_a_double_that_never_becomes_healthy_stops_the_bring_up(lab: e2e.Lab,
                                                                tmp_path: Path) -> None:
    _load_broken_minio(lab)
    # under a tag of its own (MINIO_IMAGE for this run only): nothing that pulls or tags the
    # mirror's MinIO meanwhile can swap the broken image back for the good one
    broken_pin = lab.project.config["MINIO_IMAGE"] + "-broken"
    lab.docker("tag", "stackyard-test/broken-minio:1", mirror_image(broken_pin, lab.mirror))
    try:
        down = lab.invoke("down", "--stack", "monitoring", "--stack", "minio")
        assert down.returncode == 0, down.stderr
        result = lab.invoke("up", "--timeout", "20", env={"MINIO_IMAGE": broken_pin})
        assert result.returncode != 0
        text = result.stdout + result.stderr
        # one block: the unhealthy service once, with its health output and log tail once,
        # what it stopped, and the fix last
        assert text.count("\nminio/minio: not healthy") == 1, text
        assert text.count("health output:") == 1, text
        assert text.count("last log lines:") == 1, text
        assert "never to become healthy" in text, text  # its last log lines
        assert "not started: monitoring (needs minio)" in text, text
        assert result.stderr.strip().splitlines()[-1].startswith("fix: "), result.stderr
        containers = lab.containers()
        assert not any(project == "monitoring" for project, _ in containers)
        assert containers[("traefik", "traefik")]["state"] == "running"  # stays up
    finally:
        lab.docker("rmi", mirror_image(broken_pin, lab.mirror), check=False)
    healed = lab.invoke("up")
    assert healed.returncode == 0, healed.stdout[-4000:]


def _image_of(lab: e2e.Lab, container: str) -> str:
    return lab.docker("inspect", "--format", "{{.Image}}", container).strip()


def _history(lab: e2e.Lab, stack: str) -> list[dict]:
    shown = lab.invoke("history", "--stack", stack, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)["revisions"]


def test_a_failed_change_rolls_back_and_rollback_brings_back_a_revision(lab: e2e.Lab) -> None:
    """minio runs v1; v3 never becomes healthy: `up` returns it to v1 by itself (its image ID
    again, exit 1, both in the history); v2 is good; `rollback` brings v1 back."""
    _load_broken_minio(lab)
    pin = lab.project.config["MINIO_IMAGE"]
    v2, v3 = pin + "-v2", pin + "-broken3"
    lab.docker("tag", "stackyard-test/broken-minio:1", mirror_image(v3, lab.mirror))
    lab.docker("tag", mirror_image(pin, lab.mirror), mirror_image(v2, lab.mirror))
    try:
        assert lab.invoke("up", "--stack", "minio", "--no-deps").returncode == 0
        v1_image = _image_of(lab, "minio-minio-1")
        before = _history(lab, "minio")
        failed = lab.invoke("up", "--stack", "minio", "--no-deps", "--timeout", "20",
                            env={"MINIO_IMAGE": v3})
        text = failed.stdout + failed.stderr
        assert failed.returncode == 1, text[-3000:]
        # the failure is minio's health, or its setup job that finds no MinIO answering
        assert re.search(r"minio/minio(-setup)?: not healthy", text), text
        assert "rolled back to revision" in text, text
        assert failed.stderr.strip().splitlines()[-1].startswith("fix: "), failed.stderr
        assert _image_of(lab, "minio-minio-1") == v1_image  # v1's image runs again
        assert lab.containers()[("minio", "minio")]["health"] == "healthy"
        after = _history(lab, "minio")[len(before):]
        assert [(r["action"], r["result"]) for r in after] == [
            ("up", "failed"), ("auto-rollback", "healthy")], after
        assert after[1]["restored"] == before[-1]["rev"]
        assert after[0]["images"][0]["reference"].endswith(v3.rsplit(":", 1)[1])
        ran = before[-1]["images"][0]  # what the good revision ran, as the engine says
        assert ran["image_id"] == v1_image and "@sha256:" in ran["repo_digest"], ran

        good = lab.invoke("up", "--stack", "minio", "--no-deps", env={"MINIO_IMAGE": v2})
        assert good.returncode == 0, good.stdout[-3000:]
        v2_revision = _history(lab, "minio")[-1]
        assert v2_revision["result"] == "healthy" and v2_revision["kept"]
        to = str(before[-1]["rev"])
        dry = lab.invoke("rollback", "--stack", "minio", "--to", to, "--dry")
        assert dry.returncode == 0 and "nothing changed" in dry.stdout, dry.stdout
        assert _history(lab, "minio")[-1]["rev"] == v2_revision["rev"]
        back = lab.invoke("rollback", "--stack", "minio", "--to", to)
        assert back.returncode == 0, back.stdout + back.stderr
        assert f"revision {to} is back and healthy" in back.stdout
        rolled = _history(lab, "minio")[-1]
        assert (rolled["action"], rolled["result"], rolled["restored"]) == (
            "rollback", "healthy", int(to))
        running = lab.docker("inspect", "--format", "{{.Config.Image}}", "minio-minio-1")
        assert running.strip() == mirror_image(pin, lab.mirror)

        for args, says in ((("--stack", "minio", "--to", "999"), "has no revision 999"),
                           (("--stack", "nosuch"), "unknown stack nosuch"),
                           (("--stack", "minio", "--host", "nobox"), "not in env/inventory")):
            refused = lab.invoke("rollback", *args)
            assert refused.returncode == 2, refused.stdout + refused.stderr
            assert says in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
        assert _history(lab, "minio")[-1]["rev"] == rolled["rev"]  # nothing recorded
    finally:
        for tag in (v2, v3):
            lab.docker("rmi", mirror_image(tag, lab.mirror), check=False)
    healed = lab.invoke("up")
    assert healed.returncode == 0, healed.stdout[-4000:]


def test_update_takes_a_newer_pin_and_one_that_fails_is_rolled_back(lab: e2e.Lab) -> None:
    """Tags v1, v2 (good) and v3 (never healthy) of a MinIO repository of this run's own in
    the mirror: `update` moves the pin to v2 and changes only minio's container; with v3 in
    the registry, `update` fails its gate, minio runs v2 again and the pin is put back."""
    import uuid

    _load_broken_minio(lab)
    repo = f"quay.io/sy{uuid.uuid4().hex[:8]}/minio"
    v1, v2, v3 = (f"{repo}:RELEASE.2025-{m}-01T00-00-00Z" for m in ("09", "10", "11"))
    good = mirror_image(lab.project.config["MINIO_IMAGE"], lab.mirror)
    for pin, source in ((v1, good), (v2, good), (v3, "stackyard-test/broken-minio:1")):
        lab.docker("tag", source, mirror_image(pin, lab.mirror))  # what compose runs
    mirrored = mirror_image(repo, lab.mirror).split("/", 1)[1]
    for pin in (v1, v2):  # what the registry lists
        registry.push_tag(lab.mirror, mirrored, pin.rsplit(":", 1)[1], pin)
    profile = lab.workdir / "env" / f"{e2e.PROFILE}.env"
    original = profile.read_text()
    try:
        profile.write_text(original + f"MINIO_IMAGE={v1}\n")
        assert lab.invoke("up", "--stack", "minio", "--no-deps").returncode == 0
        others = {k: v for k, v in _ids(lab).items() if k[0] != "minio"}
        minio_before = _ids(lab)[("minio", "minio")]

        dry = lab.invoke("update", "--stack", "minio", "--dry")
        assert dry.returncode == 0 and f"+MINIO_IMAGE={v2}" in dry.stdout, dry.stdout
        assert profile.read_text().endswith(f"MINIO_IMAGE={v1}\n")  # dry: nothing written
        updated = lab.invoke("update", "--stack", "minio")
        assert updated.returncode == 0, updated.stdout[-3000:] + updated.stderr
        assert f"MINIO_IMAGE={v2}" in profile.read_text()
        ids = _ids(lab)
        assert ids[("minio", "minio")] != minio_before
        assert {k: v for k, v in ids.items() if k[0] != "minio"} == others
        assert _history(lab, "minio")[-1]["action"] == "update"

        registry.push_tag(lab.mirror, mirrored, v3.rsplit(":", 1)[1], v3)
        listed = lab.invoke("outdated", "--stack", "minio", "--json")
        newer = json.loads(listed.stdout)["images"]
        assert [n["tag"] for i in newer if i["setting"] == "MINIO_IMAGE"
                for n in i["newer"]] == [v3.rsplit(":", 1)[1]]
        failed = lab.invoke("update", "--stack", "minio", "--timeout", "20")
        text = failed.stdout + failed.stderr
        assert failed.returncode == 1, text[-3000:]
        assert "rolled back to revision" in text and "pins are put back" in text, text
        running = lab.docker("inspect", "--format", "{{.Config.Image}}", "minio-minio-1")
        assert running.strip() == mirror_image(v2, lab.mirror)
        assert f"MINIO_IMAGE={v2}" in profile.read_text()
        assert [(r["action"], r["result"]) for r in _history(lab, "minio")[-2:]] == [
            ("update", "failed"), ("auto-rollback", "healthy")]
    finally:
        profile.write_text(original)
        for pin in (v1, v2, v3):
            lab.docker("rmi", mirror_image(pin, lab.mirror), check=False)
    healed = lab.invoke("up")
    assert healed.returncode == 0, healed.stdout[-4000:]


def _psql(lab: e2e.Lab, sql: str) -> str:
    return lab.docker("exec", "-u", "70", "auth-postgresql-1", "psql", "-q", "-t", "-A",
                      "-U", "authentik", "-d", "authentik", "-c", sql).strip()


def test_backup_and_restore_bring_back_rows_files_owners_and_modes(lab: e2e.Lab) -> None:
    """restic and the real PostgreSQL of the auth stack's double: rows and files written,
    backed up, destroyed, restored: every row, every file's content, owner and mode."""
    require_program("restic")
    _psql(lab, "DROP TABLE IF EXISTS kept; CREATE TABLE kept (x text); "
               "INSERT INTO kept VALUES ('row one'), ('row two');")
    probe = lab.workdir / "data" / "auth" / "data" / "media" / "probe.txt"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text("the file\n")
    os.chown(probe, 1000, 1000)
    probe.chmod(0o640)
    first = lab.invoke("backup", "--stack", "auth")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    assert "auth" in first.stdout and "size added" in first.stdout
    again = lab.invoke("backup", "--stack", "auth")  # nothing changed: deduplicated
    assert again.returncode == 0, again.stderr
    listed = json.loads(lab.invoke("backup.snapshots", "--stack", "auth", "--json").stdout)
    snapshots = listed["snapshots"]
    assert len(snapshots) == 1  # the retention keeps the day's last snapshot (KEEP_DAILY)
    assert snapshots[-1]["tags"]["stack"] == "auth" and snapshots[-1]["tags"]["rev"] != "0"

    _psql(lab, "DROP TABLE kept;")
    probe.unlink()
    later = probe.parent / "later.txt"
    later.write_text("written after the backup\n")
    refused = lab.invoke("restore", "--stack", "auth")
    assert refused.returncode == 2 and "newer than snapshot" in refused.stderr, refused.stderr
    assert _psql(lab, "SELECT to_regclass('kept') IS NULL;") == "t"  # untouched
    for args, says in ((("--snapshot", "deadbeef"), "no snapshot deadbeef"),
                       (("--snapshot", "x;rm"), "is not a snapshot ID")):
        bad = lab.invoke("restore", "--stack", "auth", "--yes", *args)
        assert bad.returncode == 2 and says in bad.stderr and "Traceback" not in bad.stderr
    wrong = lab.invoke("backup.snapshots", env={"BACKUP_PASSWORD": "x" * 48})
    assert wrong.returncode == 2 and "does not open with BACKUP_PASSWORD" in wrong.stderr

    restored = lab.invoke("restore", "--stack", "auth", "--yes")
    assert restored.returncode == 0, restored.stdout[-4000:] + restored.stderr
    assert _psql(lab, "SELECT x FROM kept ORDER BY x;").splitlines() == ["row one", "row two"]
    assert probe.read_text() == "the file\n" and not later.exists()
    info = probe.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (1000, 1000, 0o640)
    assert not list((lab.workdir / "data" / "auth").glob("*.pre-restore-*"))  # cleaned up
    containers = lab.containers()
    assert all(c["health"] in ("healthy", "") and c["state"] == "running"
               for (project, _), c in containers.items() if project == "auth"), containers

    # the staging folder on a full disk (a small tmpfs): the restore fails, live data stays
    big = probe.parent / "big.bin"
    big.write_bytes(os.urandom(400_000))
    assert lab.invoke("backup", "--stack", "auth").returncode == 0
    staging = lab.workdir / "build" / e2e.PROFILE / "backup" / "auth"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(staging)],
                   check=True)
    try:
        full = lab.invoke("restore", "--stack", "auth", "--yes")
    finally:
        subprocess.run(["umount", str(staging)], check=True)
    assert full.returncode != 0, full.stdout[-2000:]
    assert "live data is untouched" in full.stderr and "Traceback" not in full.stderr, \
        full.stderr
    assert big.stat().st_size == 400_000 and probe.read_text() == "the file\n"
    assert _psql(lab, "SELECT count(*) FROM kept;") == "2"


def test_a_restore_drill_proves_the_backup_while_the_live_stack_serves(lab: e2e.Lab) -> None:
    """The drill restores auth's latest snapshot into a scratch project, brings it up with
    its health checks (the dump loaded into its own PostgreSQL), and removes all of it; the
    live stack's containers are the same throughout."""
    require_program("restic")
    assert lab.invoke("backup", "--stack", "auth").returncode == 0
    live = {k: v for k, v in _ids(lab).items() if k[0] == "auth"}
    networks = set(lab.docker("network", "ls", "--format", "{{.Name}}").split())
    drill = lab.invoke("backup.drill", "--stack", "auth")
    assert drill.returncode == 0, drill.stdout[-4000:] + drill.stderr
    assert "restored, healthy" in drill.stdout
    assert {k: v for k, v in _ids(lab).items() if k[0] == "auth"} == live
    assert not any(project.startswith("drill-") for project, _ in lab.containers())
    assert set(lab.docker("network", "ls", "--format", "{{.Name}}").split()) == networks
    prom = (lab.workdir / "data" / "drills" / "drills.prom").read_text()  # what Alloy reads
    assert 'stackyard_backup_drill_ok{stack="auth"} 1' in prom
    assert not (lab.workdir / "build" / e2e.PROFILE / "backup" / "drills" / "auth").exists()


def test_a_backup_stops_what_must_stop_and_starts_it_healthy(lab: e2e.Lab) -> None:
    """monitoring: Grafana (SQLite) stops for the snapshot and comes back healthy; the rest
    is read live."""
    require_program("restic")
    started = lab.docker("inspect", "--format", "{{.State.StartedAt}}",
                         "monitoring-grafana-1").strip()
    loki = lab.docker("inspect", "--format", "{{.State.StartedAt}}",
                      "monitoring-loki-1").strip()
    result = lab.invoke("backup", "--stack", "monitoring")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert lab.docker("inspect", "--format", "{{.State.StartedAt}}",
                      "monitoring-grafana-1").strip() != started
    assert lab.docker("inspect", "--format", "{{.State.StartedAt}}",
                      "monitoring-loki-1").strip() == loki  # live: never stopped
    assert lab.containers()[("monitoring", "grafana")]["health"] == "healthy"
    snapshot = json.loads(lab.invoke("backup.snapshots", "--stack", "monitoring",
                                     "--json").stdout)["snapshots"][-1]
    wrong = lab.invoke("restore", "--stack", "auth", "--yes", "--snapshot", snapshot["id"][:8])
    assert wrong.returncode == 2 and "is of stack monitoring" in wrong.stderr, wrong.stderr


def test_a_double_is_its_image_s_contract(lab: e2e.Lab, tmp_path: Path) -> None:
    """The Mimir double writes what the real image writes at start-up (its activity tracker,
    relative to its working directory "/") and has only the programs the image has: on a
    read-only root without our config's tracker path it exits as the real one does."""
    reference = mirror_image(lab.project.config["MIMIR_IMAGE"], lab.mirror)
    rendered = lab.workdir / "build" / e2e.PROFILE / "stacks" / "monitoring" / "mimir"
    ours = (rendered / "config.yaml").read_text()
    without = yaml.safe_load(ours)
    del without["activity_tracker"]
    (tmp_path / "without.yaml").write_text(yaml.safe_dump(without))
    data = tmp_path / "data"
    data.mkdir()

    def run(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*lab.engine.cli, "run", "--read-only", "-v", f"{data}:/data",
                               "-v", f"{config}:/etc/mimir/config.yaml:ro", *extra, reference,
                               "-config.file=/etc/mimir/config.yaml"],
                              capture_output=True, text=True, timeout=120)

    broken = run(tmp_path / "without.yaml", "--rm")
    assert broken.returncode != 0 and "/metrics-activity.log" in broken.stderr, broken.stderr
    started = run(rendered / "config.yaml", "-d")
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        for _ in range(50):
            logs = lab.docker("logs", container) + lab.docker("inspect", "--format",
                                                              "{{.State.Status}}", container)
            if "serving on ports" in logs:
                break
            time.sleep(0.1)
        assert "start-up write /data/metrics-activity.log" in logs and "running" in logs, logs
        assert (data / "metrics-activity.log").is_file()
        # distroless: no wget, no shell (a health command using one would fail the same way)
        for program in ("wget", "sh"):
            missing = subprocess.run([*lab.engine.cli, "exec", container, program],
                                     capture_output=True, text=True, timeout=60)
            assert missing.returncode != 0, program
    finally:
        lab.docker("rm", "-f", container, check=False)
