"""`deploy` over real SSH to a ROOTLESS host: a namespace host whose engine is a throwaway
user's dockerd-rootless.sh, at that user's socket (/run/user/<uid>/docker.sock).

The inventory entry is what a user would write for such a host: ``user:`` the rootless user
(its files, its engine), ``docker_socket:`` its socket, ``rootless: true``; no DEPLOY_ROOT, so
the default for a non-root login (~/.stackyard) is used. The engine is started the way a
user would start it, with the project's own task over SSH: ``fab -H rl host.rootless``. It
pulls the doubles from a registry on the bridge address, trusted in the user's daemon.json.
Tests run in file order: engine, first deploy (zot + minio), a no-op second deploy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import program_of_this_python, require, require_program
from tests.support import e2e, hosts, images
from tests.support.rendering import env_dir_with_profile

pytestmark = pytest.mark.ssh
SUBNET = "10.79.0"
MIRROR_PORT = 45126
STACKS = ["zot", "minio"]
PROJECT_ROOT = Path(__file__).resolve().parent.parent
FAB = program_of_this_python("fab")
CONTRIB = "/usr/share/docker.io/contrib"


@dataclass
class RootlessHost:
    host: hosts.Host
    user: hosts.RootlessUser
    environ: dict[str, str]

    def run(self, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), cwd=PROJECT_ROOT, capture_output=True, text=True,
                              env=self.environ, stdin=subprocess.DEVNULL, timeout=timeout)

    def docker(self, *args: str) -> str:
        result = subprocess.run([*self.user.cli, *args], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def containers(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(project, service) -> (id, status) on the rootless engine."""
        return e2e.parse_compose_ps(self.docker("ps", "-a", "--no-trunc", "--format",
                                                e2e.COMPOSE_PS_FORMAT))

    @property
    def deploy_root(self) -> Path:
        return self.user.home / ".stackyard"


def _inventory(host: hosts.Host, user: hosts.RootlessUser, key: Path, known_hosts: Path
               ) -> str:
    entry = {"address": host.address, "user": user.name, "key": str(key),
             "docker_socket": user.socket, "rootless": True, "stacks": STACKS,
             # published on the host's own address: reached below through rootlesskit's ports
             "settings": {"BIND_ADDRESS": host.address}}
    return yaml.safe_dump({"hosts": {"rl": entry}, "known_hosts": str(known_hosts)})


@pytest.fixture(scope="module")
def rootless_host(tmp_path_factory: pytest.TempPathFactory, docker_engine: str
                  ) -> Iterator[RootlessHost]:
    require(os.geteuid() == 0, "root (network namespaces, a throwaway user)")
    for program in ("docker-registry", "nsenter", "ip", "busybox", "useradd", "rootlesskit",
                    "slirp4netns", "newuidmap", "dockerd"):
        require_program(program)
    require(not hosts.available(), f"hosts harness ({hosts.available()})")
    require(Path("/dev/net/tun").exists(), "/dev/net/tun")
    require(shutil.which("dockerd-rootless.sh") is not None
            or Path(CONTRIB, "dockerd-rootless.sh").exists(), "dockerd-rootless.sh")
    workdir = tmp_path_factory.mktemp("deploy-rootless")
    mirror = f"{SUBNET}.1:{MIRROR_PORT}"
    env_dir = env_dir_with_profile(workdir, "e2e",
                                   f"IMAGE_MIRROR={mirror}\nHEALTH_TIMEOUT=180\n")
    e2e.push_doubles(workdir)  # loads the project from env/: after it exists
    with hosts.network_hosts(1, workdir / "lab", prefix="sr", subnet=SUBNET) as lab, \
            hosts.bridge_registry(images.CACHE_DIR / "registry", f"{SUBNET}.1", MIRROR_PORT,
                                  workdir), \
            hosts.rootless_user("sr", [mirror], (workdir / "lab" / "id_ed25519.pub").read_text()
                                ) as user:
        host = lab.hosts[0]
        (env_dir / "inventory.yaml").write_text(_inventory(host, user, lab.key_file,
                                                           lab.known_hosts))
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("INFRA_", "DOCKER_"))}
        environ.update({"INFRA_ENV_DIR": str(env_dir), "INFRA_PROFILE": "e2e",
                        "BUILD_DIR": str(workdir / "build"), "CERTS_DIR": str(workdir / "certs"),
                        "COLUMNS": "200"})
        the_host = RootlessHost(host, user, environ)
        # the user's own step, over SSH as that user: setup tool, profile, daemon in the host
        started = the_host.run(FAB, "-H", "rl", "host.rootless")
        assert started.returncode == 0, started.stdout[-4000:] + started.stderr[-4000:]
        yield the_host


def _in_namespace(pid: int, netns_path: str) -> bool:
    return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(netns_path).st_ino


def test_host_rootless_over_ssh_started_a_rootless_engine_on_the_host(
        rootless_host: RootlessHost) -> None:
    options = rootless_host.docker("info", "--format", "{{json .SecurityOptions}}")
    assert "name=rootless" in options
    assert rootless_host.user.socket.startswith(f"/run/user/{rootless_host.user.uid}/")
    # the daemon's parent (rootlesskit) runs as the user, in the namespace host's network
    out = subprocess.run(["ps", "-u", str(rootless_host.user.uid), "-o", "pid=,comm="],
                         capture_output=True, text=True).stdout
    kits = [int(line.split()[0]) for line in out.splitlines() if "rootlesskit" in line]
    assert kits, out
    assert any(_in_namespace(pid, rootless_host.host.netns_path) for pid in kits)


def test_fab_deploys_zot_and_minio_to_the_rootless_engine(rootless_host: RootlessHost) -> None:
    result = rootless_host.run(FAB, "-H", "rl", "deploy")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    found = rootless_host.containers()
    assert {project for project, _ in found} == set(STACKS), found
    for (project, service), (_, status) in found.items():
        if service == "minio-setup":
            assert "Exited (0)" in status, (project, service, status)
        else:
            assert "(healthy)" in status or (service == "zot" and "Up" in status), \
                (project, service, status)
    # rendered for this host: DEPLOY_ROOT defaults to ~/.stackyard for a non-root login, and
    # the files belong to the user (its engine's root)
    compose = rootless_host.deploy_root / "stacks" / "minio" / "compose.yaml"
    assert compose.stat().st_uid == rootless_host.user.uid
    document = yaml.safe_load(compose.read_text())
    data = rootless_host.deploy_root / "data"
    assert document["services"]["minio"]["volumes"][0].startswith(f"{data}/minio:")
    # DATA_ROOT was made over SSH by the user, mode 755: the helper container could create
    # zot/ and minio/ in it only because its root is the user (root in the engine = its uid)
    assert data.stat().st_uid == rootless_host.user.uid
    assert oct(data.stat().st_mode & 0o777) == "0o755"
    # ownership fixed inside the engine: container UID N is host UID subuid_start + N - 1
    start = rootless_host.user.subuid_start
    assert (data / "zot").stat().st_uid == start + 65532 - 1
    assert (data / "minio").stat().st_uid == start + 1000 - 1
    # minio (user 1000 in its container) wrote its data: on the host that is the mapped subuid
    markers = list((data / "minio").glob(".double-*"))
    assert markers and all(m.stat().st_uid == start + 1000 - 1 for m in markers)
    # published through rootlesskit on the host's address: zot answers from the root namespace
    answer = subprocess.run(["curl", "-fsS", "-o", "/dev/null", "-w", "%{http_code}",
                             f"http://{rootless_host.host.address}:5000/v2/"],
                            capture_output=True, text=True, timeout=30)
    assert answer.stdout == "200", answer.stderr


def test_second_deploy_uploads_nothing_and_recreates_nothing(
        rootless_host: RootlessHost) -> None:
    before = {key: value[0] for key, value in rootless_host.containers().items()}
    files = {path: path.stat().st_mtime_ns
             for path in (rootless_host.deploy_root / "stacks").rglob("*") if path.is_file()}
    assert files
    result = rootless_host.run(e2e.INVOKE, "deploy", "--host", "rl")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert not re.search(r"uploaded \d+ file", result.stdout)
    rows = [[cell.strip() for cell in line.strip().strip("│").split("│")]
            for line in result.stdout.splitlines() if line.strip().startswith("│")]
    row = next(cells for cells in rows if cells[0] == "rl")  # host, stacks, result, uploaded
    assert row[2:4] == ["unchanged", "0"], result.stdout
    assert {path: path.stat().st_mtime_ns for path in files} == files
    assert {key: value[0] for key, value in rootless_host.containers().items()} == before



def test_root_login_to_the_rootless_engine_is_refused_before_any_upload(
        rootless_host: RootlessHost) -> None:
    """Seen without the check: 6 files uploaded as root, then the ownership fix failed with
    "mkdir: cannot create directory 'zot': Permission denied" (the engine's root is the user,
    DATA_ROOT belonged to root) and root's 0600 secrets were unreadable to the engine."""
    inventory = Path(rootless_host.environ["INFRA_ENV_DIR"]) / "inventory.yaml"
    original = inventory.read_text()
    document = yaml.safe_load(original)
    root_dir = rootless_host.deploy_root.parent / "as-root"  # goes with the user's home
    document["hosts"]["rl"]["user"] = "root"
    document["hosts"]["rl"]["settings"]["DEPLOY_ROOT"] = str(root_dir)
    inventory.write_text(yaml.safe_dump(document))
    try:
        result = rootless_host.run(FAB, "-H", "rl", "deploy")
    finally:
        inventory.write_text(original)
    assert result.returncode != 0
    name = rootless_host.user.name
    assert (f"belongs to {name} (uid {rootless_host.user.uid}) but the SSH login is uid 0"
            in result.stderr), result.stdout[-3000:] + result.stderr
    assert f"set `user: {name}` for rl" in result.stdout + result.stderr
    assert not root_dir.exists()  # nothing uploaded, no DATA_ROOT made
