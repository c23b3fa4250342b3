"""`deploy` over real SSH to network-namespace hosts, each with its own sshd and dockerd.

One fleet per module (tests/support/hosts.py): two hosts on a bridge, a registry on the bridge
address serving the test doubles (each engine trusts it as insecure), an inventory placing the
real catalogue's zot stack on h1 and minio on h2, each host with its own DEPLOY_ROOT and
DATA_ROOT (the filesystem is shared: private paths keep "uploads nothing" honest). Tests run
in file order: parallel deploy through fab, a no-op second deploy, one host's sshd stopped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from infra.mirror import mirror_image
from infra.project import load_project
from tests.conftest import program_of_this_python, require, require_program
from tests.support import e2e, hosts, images
from tests.support.rendering import env_dir_with_profile

pytestmark = pytest.mark.ssh
SUBNET = hosts.DEPLOY_SUBNET
MIRROR_PORT = hosts.DEPLOY_MIRROR_PORT
PLACEMENT = {"h1": ["zot"], "h2": ["minio"]}
PROJECT_ROOT = Path(__file__).resolve().parent.parent
FAB = program_of_this_python("fab")


@dataclass
class Fleet:
    lab: hosts.Lab
    workdir: Path
    environ: dict[str, str]

    def run(self, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), cwd=PROJECT_ROOT, capture_output=True, text=True,
                              env=self.environ, stdin=subprocess.DEVNULL, timeout=timeout)

    def invoke(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(e2e.INVOKE, *args)

    def host(self, name: str) -> hosts.Host:
        return self.lab.hosts[int(name[1:]) - 1]

    def docker(self, name: str, *args: str) -> str:
        result = subprocess.run(["docker", "-H", f"unix://{self.host(name).docker_socket}",
                                 *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def containers(self, name: str) -> dict[tuple[str, str], tuple[str, str]]:
        """(project, service) -> (id, status) on one host's engine."""
        return e2e.parse_compose_ps(self.docker(name, "ps", "-a", "--no-trunc", "--format",
                                                e2e.COMPOSE_PS_FORMAT))

    def deploy_root(self, name: str) -> Path:
        return self.workdir / name / "deploy"


def _inventory(lab: hosts.Lab, workdir: Path) -> str:
    doc: dict = {"hosts": {}, "known_hosts": str(lab.known_hosts)}
    for index, host in enumerate(lab.hosts, start=1):
        name = f"h{index}"
        doc["hosts"][name] = {
            "address": host.address, "user": "root", "key": str(lab.key_file),
            "docker_socket": host.docker_socket, "stacks": PLACEMENT[name],
            "settings": {"DEPLOY_ROOT": str(workdir / name / "deploy"),
                         "DATA_ROOT": str(workdir / name / "data")}}
    return yaml.safe_dump(doc)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, docker_engine: str) -> Iterator[Fleet]:
    require(os.geteuid() == 0, "root (network namespaces, host engines)")
    for program in ("docker-registry", "nsenter", "ip", "dockerd", "busybox", "sshd"):
        require_program(program if program != "sshd" else hosts.SSHD)
    require(not hosts.available(), f"hosts harness ({hosts.available()})")
    workdir = tmp_path_factory.mktemp("deploy")
    mirror = f"{SUBNET}.1:{MIRROR_PORT}"
    env_dir = env_dir_with_profile(workdir, "e2e",
                                   f"IMAGE_MIRROR={mirror}\nHEALTH_TIMEOUT=120\n")
    e2e.push_doubles(workdir)  # loads the project from env/: after it exists
    with hosts.network_hosts(2, workdir / "lab", prefix="sd", subnet=SUBNET, dockerd=True,
                             insecure_registries=[mirror],
                             engine_cache=images.CACHE_DIR / "deploy-engines") as lab, \
            hosts.bridge_registry(images.CACHE_DIR / "registry", f"{SUBNET}.1", MIRROR_PORT,
                                  workdir):
        (env_dir / "inventory.yaml").write_text(_inventory(lab, workdir))
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("INFRA_", "DOCKER_"))}
        environ.update({"INFRA_ENV_DIR": str(env_dir), "INFRA_PROFILE": "e2e",
                        "BUILD_DIR": str(workdir / "build"), "CERTS_DIR": str(workdir / "certs"),
                        "COLUMNS": "200"})
        yield Fleet(lab, workdir, environ)


def test_fab_deploys_different_stacks_to_two_hosts_in_parallel(fleet: Fleet) -> None:
    result = fleet.run(FAB, "-H", "h1,h2", "deploy")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for name, stacks in PLACEMENT.items():
        found = fleet.containers(name)
        assert {project for project, _ in found} == set(stacks), (name, found)
        for (_, service), (_, status) in found.items():
            assert "(healthy)" in status or "Exited (0)" in status or "Up" in status, \
                (name, service, status)
        # what was uploaded is where the inventory says, rendered for this host
        compose = yaml.safe_load((fleet.deploy_root(name) / "stacks" / stacks[0]
                                  / "compose.yaml").read_text())
        for service in compose["services"].values():
            assert service["image"].startswith(f"{SUBNET}.1:{MIRROR_PORT}/")
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                assert not source.startswith("/") or source.startswith(
                    (str(fleet.workdir / name), "/var/run/docker.sock")), volume
    minio_secrets = fleet.deploy_root("h2") / "stacks" / "minio" / "secrets"
    assert oct(minio_secrets.stat().st_mode & 0o777) == "0o700"
    for secret in (p for p in minio_secrets.rglob("*") if p.is_file()):
        # env files 0600; a secret the container reads as a file, readable by its uid, inside
        # the 0700 folder no other user of the host enters
        want = "0o444" if "files" in secret.relative_to(minio_secrets).parts else "0o600"
        assert oct(secret.stat().st_mode & 0o777) == want, secret
    # the summary: one row per host, both deployed; both hosts' work overlapped in time
    assert "Deploy" in result.stdout and result.stdout.count("deployed") >= 2


def summary_rows(stdout: str) -> dict[str, list[str]]:
    """host -> [stacks, result, uploaded, time, reason] from the summary table."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == 6 and cells[0] in PLACEMENT:
            rows[cells[0]] = cells[1:]
    return rows


def _remote_files(fleet: Fleet) -> dict[Path, tuple[int, str]]:
    files = {}
    for name in PLACEMENT:
        for path in sorted((fleet.deploy_root(name)).rglob("*")):
            if path.is_file():
                files[path] = (path.stat().st_mtime_ns, oct(path.stat().st_mode))
    return files


def test_second_deploy_uploads_nothing_and_recreates_nothing(fleet: Fleet) -> None:
    def ids() -> dict[str, dict[tuple[str, str], str]]:
        return {n: {k: v[0] for k, v in fleet.containers(n).items()} for n in PLACEMENT}

    before = ids()
    files = _remote_files(fleet)
    assert files
    result = fleet.invoke("deploy", "--host", "h1", "--host", "h2")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert not re.search(r"uploaded \d+ file", result.stdout)  # no transfer for either host
    rows = summary_rows(result.stdout)
    assert rows["h1"][1:3] == ["unchanged", "0"] and rows["h2"][1:3] == ["unchanged", "0"], rows
    assert _remote_files(fleet) == files
    assert ids() == before


def test_an_unverified_host_gets_nothing(fleet: Fleet, tmp_path: Path) -> None:
    """The inventory's known_hosts does not know h1 (and ~/.ssh/known_hosts is not this
    machine's): the deploy is refused before anything is sent, with the fingerprint and how to
    accept it; a fab task too."""
    env = Path(fleet.environ["INFRA_ENV_DIR"])
    other = tmp_path / "env"
    shutil.copytree(env, other)
    doc = yaml.safe_load((other / "inventory.yaml").read_text())
    (other / "known_hosts").write_text("")
    doc["known_hosts"] = "known_hosts"  # relative: beside the inventory
    (other / "inventory.yaml").write_text(yaml.safe_dump(doc))
    environ = {**fleet.environ, "INFRA_ENV_DIR": str(other), "HOME": str(tmp_path)}
    begin = {p: p.stat().st_mtime for p in fleet.deploy_root("h1").rglob("*") if p.is_file()}
    assert begin  # deployed before: a refused deploy must leave it exactly so
    deployed = subprocess.run([e2e.INVOKE, "deploy", "--host", "h1"], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, env=environ,
                              stdin=subprocess.DEVNULL, timeout=300)
    out = deployed.stdout + deployed.stderr
    assert deployed.returncode != 0 and "not in a known_hosts file" in out, out
    assert f"ssh-keyscan -p 22 -t ssh-ed25519 {fleet.host('h1').address} >> " in out, out
    after = {p: p.stat().st_mtime for p in fleet.deploy_root("h1").rglob("*") if p.is_file()}
    assert after == begin  # nothing uploaded
    status = subprocess.run([FAB, "-H", "h1", "status"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, env=environ, stdin=subprocess.DEVNULL, timeout=300)
    assert status.returncode == 2, status.stdout + status.stderr
    assert "not in a known_hosts file" in status.stderr and "Traceback" not in status.stderr


def test_dry_deploy_shows_what_would_be_uploaded(fleet: Fleet) -> None:
    target = fleet.deploy_root("h1") / "stacks" / "zot" / "config.json"
    original = target.read_text()
    target.write_text(original + " ")
    try:
        result = fleet.invoke("deploy", "--host", "h1", "--dry")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"would upload {target}" in result.stdout
        assert target.read_text() == original + " "  # nothing touched
    finally:
        target.write_text(original)


def _start_deploy(fleet: Fleet, *args: str) -> subprocess.Popen[str]:
    """A deploy in its own process group (as a terminal runs it), stdout line-buffered."""
    return subprocess.Popen([e2e.INVOKE, "deploy", "--host", "h1", "--host", "h2", *args],
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**fleet.environ, "PYTHONUNBUFFERED": "1"},
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _read_until(run: subprocess.Popen[str], pattern: str, timeout: float = 300) -> list[str]:
    """The deploy's output up to the first line matching ``pattern``: the point the test acts
    at is what the run has reached, never a sleep."""
    import selectors

    seen: list[str] = []
    assert run.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(run.stdout, selectors.EVENT_READ)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if selector.select(timeout=1):
            line = run.stdout.readline()
            if not line:
                break
            seen.append(line)
            if re.search(pattern, line):
                return seen
    raise AssertionError(f"never reached {pattern!r}: {''.join(seen)[-3000:]}")


def _force_work(fleet: Fleet) -> None:
    """Both hosts have something to bring up again: their containers are gone."""
    for name, (stack, service) in (("h1", ("zot", "zot")), ("h2", ("minio", "minio"))):
        found = fleet.containers(name).get((stack, service))
        if found:
            fleet.docker(name, "rm", "-f", found[0])


def test_ctrl_c_during_a_two_host_deploy_stops_at_once_and_resumes(fleet: Fleet) -> None:
    _force_work(fleet)
    run = _start_deploy(fleet)
    _read_until(run, r"^h[12] (zot|minio): ")  # a host's bring-up has begun
    begin = time.monotonic()
    os.killpg(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=60)
    took = time.monotonic() - begin
    assert run.returncode == 130, out + err
    assert took < 2.0, took
    assert "Traceback" not in out + err
    assert "interrupted (SIGINT)" in out and "cut off:" in out, out
    assert "interrupted while" in out  # the step each cut-off host was in
    assert "to resume, run the same command again: invoke deploy --host h1 --host h2" in out
    print(f"Ctrl-C to exit (deploy, two hosts): {took:.2f}s")
    again = fleet.invoke("deploy", "--host", "h1", "--host", "h2")
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr
    for name, (stack, service) in (("h1", ("zot", "zot")), ("h2", ("minio", "minio"))):
        assert "Up" in fleet.containers(name)[(stack, service)][1]


@pytest.mark.parametrize("point", [r"^h2 rendered ", r"^h2 uploaded ", r"^h[12] (zot|minio): "])
def test_sigkill_during_a_two_host_deploy_then_the_same_command_converges(fleet: Fleet,
                                                                        point: str) -> None:
    """Killed at a point the deploy has reached (after rendering and its secrets, right after
    an upload, inside a bring-up): the same deploy then converges on both hosts, with the same
    secrets, and no temporary upload file is left on either."""
    _force_work(fleet)
    config = fleet.deploy_root("h2") / "stacks" / "minio" / "minio-setup.sh"
    config.write_text(config.read_text() + "\n")  # so h2 has a file to upload
    secrets = (Path(fleet.environ["INFRA_ENV_DIR"]) / "secrets.env").read_text()
    run = _start_deploy(fleet)
    _read_until(run, point)
    os.killpg(run.pid, signal.SIGKILL)
    run.communicate(timeout=30)
    again = fleet.invoke("deploy", "--host", "h1", "--host", "h2")
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr
    assert (Path(fleet.environ["INFRA_ENV_DIR"]) / "secrets.env").read_text() == secrets
    for name in PLACEMENT:
        left = list(fleet.deploy_root(name).rglob("*.stackyard-upload"))
        assert not left, left
    assert "Up" in fleet.containers("h2")[("minio", "minio")][1]
    assert "Up" in fleet.containers("h1")[("zot", "zot")][1]


@pytest.mark.parametrize("point, step", [
    (r"^h2 rendered ", "while (comparing files|uploading)"),
    (r"^h2 minio: ", "while bringing up"),
])
def test_a_host_lost_mid_deploy_is_named_and_the_other_finishes(fleet: Fleet, point: str,
                                                              step: str) -> None:
    """h2's link is cut once its deploy reaches ``point`` (before its upload, or inside its
    bring-up): h2 is reported with the step and the cause within ~20 s (SSH keepalives and
    TCP_USER_TIMEOUT), h1 finishes, the exit code says so; with the link back, the same
    command converges."""
    _force_work(fleet)
    config = fleet.deploy_root("h2") / "stacks" / "minio" / "minio-setup.sh"
    config.write_text(config.read_text() + "\n")  # so h2 has a file to upload
    veth = "sdv2"  # h2's end on the bridge (tests/support/hosts.py)
    run = _start_deploy(fleet)
    try:
        _read_until(run, point)
        subprocess.run(["ip", "link", "set", veth, "down"], check=True)
        begin = time.monotonic()
        out, err = run.communicate(timeout=180)
        noticed = time.monotonic() - begin
    finally:
        subprocess.run(["ip", "link", "set", veth, "up"], check=True)
    assert run.returncode == 1, out + err
    rows = summary_rows(out)
    assert rows["h1"][1] == "deployed", out[-3000:]
    assert rows["h2"][1] == "failed" and re.search(step, rows["h2"][-1]), rows
    assert "h2" in err and "Traceback" not in out + err
    print(f"lost host noticed after {noticed:.1f}s ({point})")
    assert noticed < 60, noticed
    again = fleet.invoke("deploy", "--host", "h1", "--host", "h2")
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr
    assert "Up" in fleet.containers("h2")[("minio", "minio")][1]


def test_a_failed_change_on_a_host_rolls_back_and_fab_rollback_goes_back(fleet: Fleet) -> None:
    """On h2 (minio): a deploy of a pin that never becomes healthy returns minio to its last
    healthy revision there (the history of h2 says both); a good v2 is deployed; `fab -H h2
    rollback` brings the first revision back over SSH."""
    project = load_project("e2e", environ=fleet.environ)
    pin = project.config["MINIO_IMAGE"]
    mirror = f"{SUBNET}.1:{MIRROR_PORT}"
    spec = next(s for s in images.double_specs(project) if s.upstream == pin)
    broken = images.build_double(["docker"], spec, reference="stackyard-test/broken-minio:1",
                                 broken=True)
    h2 = ["docker", "-H", f"unix://{fleet.host('h2').docker_socket}"]
    saved = subprocess.run(["docker", "save", broken], capture_output=True, check=True).stdout
    subprocess.run([*h2, "load"], input=saved, capture_output=True, check=True)

    good = mirror_image(pin, mirror)
    fleet.docker("h2", "tag", broken, mirror_image(pin + "-broken", mirror))
    fleet.docker("h2", "tag", good, mirror_image(pin + "-v2", mirror))

    def history() -> list[dict]:
        shown = fleet.invoke("history", "--host", "h2", "--stack", "minio", "--json")
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)["revisions"]

    assert fleet.run(FAB, "-H", "h2", "deploy").returncode == 0
    before = history()
    environ = dict(fleet.environ)
    try:
        fleet.environ = {**environ, "MINIO_IMAGE": pin + "-broken"}
        failed = fleet.invoke("deploy", "--host", "h2", "--timeout", "20")
        assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr
        assert "rolled back to revision" in failed.stdout + failed.stderr, (before, history())
        running = fleet.docker("h2", "inspect", "--format", "{{.Config.Image}}",
                               "minio-minio-1").strip()
        assert running == good
        after = history()[len(before):]
        assert [(r["action"], r["result"], r["host"]) for r in after] == [
            ("deploy", "failed", "h2"), ("auto-rollback", "healthy", "h2")], after
        fleet.environ = {**environ, "MINIO_IMAGE": pin + "-v2"}
        assert fleet.invoke("deploy", "--host", "h2").returncode == 0
    finally:
        fleet.environ = environ
    back = fleet.run(FAB, "-H", "h2", "rollback", "--stack", "minio",
                     "--to", str(before[-1]["rev"]))
    assert back.returncode == 0, back.stdout[-3000:] + back.stderr
    assert fleet.docker("h2", "inspect", "--format", "{{.Config.Image}}",
                        "minio-minio-1").strip() == good
    assert history()[-1]["action"] == "rollback"
    again = fleet.run(FAB, "-H", "h2", "deploy")  # the settings' revision again
    assert again.returncode == 0, again.stdout[-3000:]


def test_a_backup_repository_on_an_inventory_host_over_sftp(fleet: Fleet) -> None:
    """BACKUP_REPOSITORY=sftp:h1:/path reaches h1 with its inventory user, key and verified
    host key; a host whose key nobody recorded is refused, not trusted."""
    require_program("restic")
    repository = fleet.workdir / "h1" / "restic"
    environ = dict(fleet.environ)
    try:
        fleet.environ = {**environ, "BACKUP_REPOSITORY": f"sftp:h1:{repository}"}
        listed = fleet.invoke("backup.snapshots", "--json")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert json.loads(listed.stdout)["snapshots"] == []
        assert (repository / "config").is_file()  # made over SFTP on first use
        address = fleet.host("h2").address
        # not an inventory name: plain ssh, and nobody recorded this lab host's fresh key
        fleet.environ = {**environ, "BACKUP_REPOSITORY": f"sftp:root@{address}:/tmp/restic"}
        unknown = fleet.invoke("backup.snapshots")
        text = unknown.stdout + unknown.stderr
        assert unknown.returncode != 0 and "Host key verification failed" in text, text
        assert "Traceback" not in text
    finally:
        fleet.environ = environ


# h2's sshd stops here: the tests above need it
def test_a_dead_host_is_named_and_the_other_still_deploys(fleet: Fleet) -> None:
    removed = fleet.containers("h1")[("zot", "zot")][0]
    fleet.docker("h1", "rm", "-f", removed)
    hosts.stop_sshd(fleet.host("h2"))
    result = fleet.invoke("deploy", "--all")
    assert result.returncode != 0
    assert "connection refused" in result.stdout + result.stderr
    assert "h2" in result.stderr  # the exit message names the dead host
    recreated = fleet.containers("h1")[("zot", "zot")]
    assert recreated[0] != removed and "Up" in recreated[1]
    rows = summary_rows(result.stdout)
    assert rows["h1"][1] == "deployed", result.stdout
    assert rows["h2"][1] == "failed" and "connection refused" in rows["h2"][-1], rows


def test_fab_status_over_ssh_names_the_hosts_stacks(fleet: Fleet) -> None:
    result = fleet.run(FAB, "-H", "h1", "status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "zot" in result.stdout and "running" in result.stdout
    assert "minio" not in result.stdout  # only the stacks placed on h1


def test_fab_day_two_tasks_act_on_the_hosts_engine(fleet: Fleet) -> None:
    """ps, logs, certs.trust and host.prepare --dry through fab on h1, each with h1's
    settings from the inventory; then down (last: it stops h1's stacks)."""
    shown = fleet.run(FAB, "-H", "h1", "ps")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "zot" in shown.stdout and "Up" in shown.stdout and "minio" not in shown.stdout

    logs = fleet.run(FAB, "-H", "h1", "logs", "--tail", "20")
    assert logs.returncode == 0, logs.stdout + logs.stderr
    zot_id = fleet.containers("h1")[("zot", "zot")][0]
    engine_logs = subprocess.run(["docker", "-H", f"unix://{fleet.host('h1').docker_socket}",
                                  "logs", "--tail", "20", zot_id], capture_output=True,
                                 text=True, timeout=60)
    last = (engine_logs.stdout + engine_logs.stderr).strip().splitlines()
    require(bool(last), "the zot double logs something")
    assert last[-1].strip() in logs.stdout  # the host engine's log, through compose over SSH

    certs = fleet.invoke("certs")
    assert certs.returncode == 0, certs.stdout + certs.stderr
    certs_d = fleet.workdir / "h1" / "certs.d"
    trusted = fleet.run(FAB, "-H", "h1", "certs.trust", "--registry", "registry.test:5000",
                        "--certs-d", str(certs_d))
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    root = (fleet.workdir / "certs" / "ca.pem").read_text()
    assert (certs_d / "registry.test:5000" / "ca.crt").read_text() == root
    again = fleet.run(FAB, "-H", "h1", "certs.trust", "--registry", "registry.test:5000",
                      "--certs-d", str(certs_d))
    assert "unchanged" in again.stdout, again.stdout

    # the host's settings: its inventory DATA_ROOT, not this checkout's
    prepared = fleet.run(FAB, "-H", "h1", "host.prepare", "--dry")
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    host_data = fleet.workdir / "h1" / "data"
    assert f"data directories under {host_data}" in prepared.stdout, prepared.stdout
    assert f"{host_data}/loki" in prepared.stdout.replace("\n", " ")
    assert str(PROJECT_ROOT / "data") not in prepared.stdout

    data = fleet.workdir / "h1" / "data" / "zot"
    assert data.is_dir()
    stopped = fleet.run(FAB, "-H", "h1", "down")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert fleet.containers("h1") == {}
    assert data.is_dir()  # down keeps the data
