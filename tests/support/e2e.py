"""The end-to-end lab: a private engine, the local registry as IMAGE_MIRROR, the doubles pushed.

Used by tests/test_e2e*.py and bench/bringup.py. ``invoke`` runs as a subprocess with the
lab's environment (INFRA_ENV_DIR, BUILD_DIR, DATA_ROOT, CERTS_DIR, DOCKER_HOST), exactly as a
user would run it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.project import Project, load_project
from tests.support import engines, images, registry, users

PROJECT_ROOT = Path(__file__).resolve().parents[2]
INVOKE = str(Path(sys.executable).parent / "invoke")  # beside the running interpreter
REGISTRY_PORT = 45123  # fixed so cached doubles keep their tags across runs (not 5000: Zot)
PROFILE = "e2e"


@dataclass
class Lab:
    engine: engines.Engine
    mirror: str
    workdir: Path
    environ: dict[str, str]
    project: Project
    timings: dict[str, float] = field(default_factory=dict)
    login: users.Login | None = None  # the rootless lab: tasks run as the engine's user

    def _command(self, args: tuple[str, ...], env: dict[str, str]) -> tuple[list[str], Path]:
        if self.login is not None:
            return self.login.command(env, *args), self.login.checkout
        return [INVOKE, *args], PROJECT_ROOT

    def invoke(self, *args: str, env: dict[str, str] | None = None, timeout: float = 900
               ) -> subprocess.CompletedProcess[str]:
        environ = {**self.environ, **(env or {})}
        command, cwd = self._command(args, environ)
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=environ,
                              stdin=subprocess.DEVNULL, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """``invoke`` in its own process group, as a terminal runs a command: a signal to the
        group reaches it and its children, as Ctrl-C does."""
        environ = {**self.environ, "PYTHONUNBUFFERED": "1"}  # its lines as they come
        command, cwd = self._command(args, environ)
        return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=environ,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    def docker(self, *args: str, check: bool = True) -> str:
        result = subprocess.run([*self.engine.cli, *args], capture_output=True, text=True,
                                timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {result.stderr}")
        return result.stdout

    def containers(self) -> dict[tuple[str, str], dict[str, str]]:
        """(project, service) -> id, state, health, exit code."""
        out = self.docker("ps", "-a", "--no-trunc", "--format",
                          '{{.Label "com.docker.compose.project"}}\t'
                          '{{.Label "com.docker.compose.service"}}\t{{.ID}}\t{{.State}}\t'
                          "{{.Status}}")
        found = {}
        for line in out.splitlines():
            project, service, cid, state, status = line.split("\t")
            health = ("healthy" if "(healthy)" in status else "unhealthy"
                      if "(unhealthy)" in status else "starting" if "starting)" in status else "")
            found[(project, service)] = {"id": cid, "state": state, "health": health,
                                         "status": status}
        return found


COMPOSE_PS_FORMAT = ('{{.Label "com.docker.compose.project"}}\t'
                     '{{.Label "com.docker.compose.service"}}\t{{.ID}}\t{{.Status}}')


def parse_compose_ps(out: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(project, service) -> (container id, status) from `docker ps --format COMPOSE_PS_FORMAT`."""
    found = {}
    for line in out.splitlines():
        project, service, cid, status = line.split("\t")
        found[(project, service)] = (cid, status)
    return found


def profile_text(mirror: str, engine: engines.Engine, extra: str = "") -> str:
    socket_path = engine.host.removeprefix("unix://")
    # This sandbox's engine refuses privileged containers ("unable to apply caps"), so the
    # cAdvisor double runs unprivileged (the setting real hosts keep at true).
    return (f"IMAGE_MIRROR={mirror}\nHEALTH_TIMEOUT=120\nDOCKER_SOCKET={socket_path}\n"
            f"CADVISOR_PRIVILEGED_ENABLED=false\n{extra}")


def rootless_profile() -> str:
    """A rootless engine publishes ports on the host itself: every port gets a free one."""
    keys = [line.split("=", 1)[0] for line in
            (PROJECT_ROOT / "env" / "defaults.env").read_text().splitlines()
            if line.split("=", 1)[0].endswith("_PORT")]
    return "ROOTLESS=true\n" + "".join(f"{key}={registry.free_port()}\n" for key in keys)


def move_images(source: list[str], target: list[str], references: list[str]) -> None:
    """docker save | docker load: a rootless engine has its own image store."""
    save = subprocess.Popen([*source, "save", *references], stdout=subprocess.PIPE)
    load = subprocess.run([*target, "load", "-q"], stdin=save.stdout, capture_output=True,
                          timeout=900)
    save.wait()
    if save.returncode or load.returncode:
        raise RuntimeError(f"moving images failed: {load.stderr.decode(errors='replace')}")


@contextlib.contextmanager
def lab(workdir: Path, name: str = "e2e", rootless: bool = False) -> Iterator[Lab]:
    """Registry + engine + doubles; everything started here is stopped on exit.

    Rootful: a private engine in its own network namespace pulls every image through the
    registry (IMAGE_MIRROR). Rootless: a throwaway user's engine; it cannot reach the host's
    loopback, so the doubles are moved in with docker save | docker load under the very
    references the rendered files use (IMAGE_MIRROR set the same way), and ``workdir`` must
    be reachable by that user (mode 755 parents).
    """
    cache = images.CACHE_DIR
    port = REGISTRY_PORT if port_free(REGISTRY_PORT) else registry.free_port()
    env_dir = workdir / "env"
    env_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_ROOT / "env" / "defaults.env", env_dir / "defaults.env")
    with contextlib.ExitStack() as stack:
        reg = stack.enter_context(registry.local_registry(cache / "registry", port,
                                                          config_dir=workdir))
        eng = stack.enter_context(
            engines.rootless_engine(name, env_dir) if rootless
            else engines.private_engine(name, cache / f"engine-{name}", workdir / "engine"))
        (env_dir / f"{PROFILE}.env").write_text(
            profile_text(reg.address, eng, rootless_profile() if rootless else ""))
        environ = {key: value for key, value in os.environ.items()
                   if not key.startswith(("INFRA_", "DOCKER_"))}
        environ.update({"INFRA_ENV_DIR": str(env_dir), "INFRA_PROFILE": PROFILE,
                        "BUILD_DIR": str(workdir / "build"), "DATA_ROOT": str(workdir / "data"),
                        "CERTS_DIR": str(workdir / "certs"), "DOCKER_HOST": eng.host,
                        # the lab's own restic repository, never the checkout's
                        "BACKUP_REPOSITORY": str(workdir / "backups"),
                        "COLUMNS": "200"})
        project = load_project(PROFILE, environ=environ)
        begin = time.monotonic()
        references = images.ensure_doubles(project)
        if port != REGISTRY_PORT:
            stack.callback(images.forget_doubles, references)
        timings = {"doubles": time.monotonic() - begin}
        if rootless:
            begin = time.monotonic()
            move_images(["docker"], eng.cli, references)
            timings["docker save | load"] = time.monotonic() - begin
            # A rootless engine is its user's: that user runs the tasks (as on a real machine),
            # so what they write (secrets, rendered files, keys) is theirs, and the engine,
            # which runs as them, can mount it
            login = users.prepare_login(eng.user, workdir / "login", PROJECT_ROOT, owned=[
                workdir / d for d in ("env", "data", "build", "certs", "backups")])
            certs = subprocess.run(login.command(environ, "certs"), cwd=login.checkout,
                                   capture_output=True, text=True, env=environ,
                                   stdin=subprocess.DEVNULL, timeout=600)
            if certs.returncode != 0:
                raise RuntimeError(f"invoke certs failed: {certs.stdout}{certs.stderr}")
        else:
            stack.enter_context(registry.local_registry(
                cache / "registry", port, netns_path=eng.netns_path,
                config_dir=workdir / "engine"))
        yield Lab(eng, reg.address, workdir, environ, project, timings,
                  login if rootless else None)


def port_free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def assert_all_healthy(lab: Lab, result: subprocess.CompletedProcess[str]) -> None:
    """`up` succeeded and every service of every stack runs (healthy where it has a check)."""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    containers = lab.containers()
    for stack in lab.project.catalogue.stacks.values():
        for service in stack.services:
            found = containers.get((stack.name, service.name))
            assert found, f"{stack.name}/{service.name} has no container"
            if service.oneshot:
                assert found["state"] == "exited" and "Exited (0)" in found["status"], found
            else:
                assert found["state"] == "running", (service.name, found)
                if service.health and service.health.command:
                    assert found["health"] == "healthy", (service.name, found)


def wait_for_event(path: Path, wanted: Callable[[dict[str, Any]], bool],
                   process: subprocess.Popen[str] | None = None, timeout: float = 300
                   ) -> dict[str, Any]:
    """The first event of ``path`` (an ``--events`` file) that ``wanted`` accepts: a test
    acts on what the run has reached, never on a sleep."""
    import json

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            for line in path.read_text().splitlines():
                event = json.loads(line)
                if wanted(event):
                    return event  # type: ignore[no-any-return]
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the run ended first: {process.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"no such event in {path} within {timeout}s")


def push_doubles(workdir: Path) -> None:
    """Every image double into the shared registry root (cached: usually a no-op), for hosts
    that pull from it (the deploy labs). ``workdir``: a project whose env/ exists already."""
    port = REGISTRY_PORT if port_free(REGISTRY_PORT) else registry.free_port()
    with registry.local_registry(images.CACHE_DIR / "registry", port, config_dir=workdir):
        environ = {"INFRA_ENV_DIR": str(workdir / "env"), "IMAGE_MIRROR": f"127.0.0.1:{port}",
                   "BUILD_DIR": str(workdir / "build")}
        references = images.ensure_doubles(load_project(None, environ=environ))
    if port != REGISTRY_PORT:  # the hosts pull from the registry root, not these tags
        images.forget_doubles(references)
