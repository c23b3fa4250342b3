"""The same bring-up under a rootless engine (a throwaway user's dockerd-rootless.sh).

What differs there: container UID N is host UID subuid_start + N - 1, so the ownership fixes
must happen inside the engine; a host `chown 10001` would leave every service failing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require, require_program
from tests.support import e2e, engines

pytestmark = pytest.mark.engine
CONTRIB = "/usr/share/docker.io/contrib"


@pytest.fixture(scope="module")
def lab(docker_engine: str) -> Iterator[e2e.Lab]:
    require(os.geteuid() == 0, "root (to create a throwaway user)")
    for program in ("useradd", "rootlesskit", "slirp4netns", "newuidmap", "dockerd",
                    "docker-registry"):
        require_program(program)
    require(Path("/dev/net/tun").exists(), "/dev/net/tun")
    require(shutil.which("dockerd-rootless.sh") is not None
            or Path(CONTRIB, "dockerd-rootless.sh").exists(), "dockerd-rootless.sh")
    # the engine's user must reach the rendered files and DATA_ROOT: no 0700 pytest folders
    workdir = Path(tempfile.mkdtemp(prefix="sy-rootless-", dir="/var/tmp"))
    workdir.chmod(0o755)
    try:
        with e2e.lab(workdir, name="rootless", rootless=True) as the_lab:
            begin = time.monotonic()
            the_lab.first_up = the_lab.invoke("up")  # type: ignore[attr-defined]
            the_lab.timings["first up"] = time.monotonic() - begin
            yield the_lab
            print("\nrootless e2e timings (s):",
                  {k: round(v, 1) for k, v in the_lab.timings.items()})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_engine_is_rootless(lab: e2e.Lab) -> None:
    assert "rootless" in lab.docker("info", "--format", "{{json .SecurityOptions}}")


def test_all_six_stacks_come_up_healthy(lab: e2e.Lab) -> None:
    e2e.assert_all_healthy(lab, lab.first_up)  # type: ignore[attr-defined]


def test_ownership_is_mapped_to_subordinate_uids(lab: e2e.Lab) -> None:
    start = engines.subordinate_start(lab.engine.user)
    checked = 0
    for stack in lab.project.catalogue.stacks.values():
        for service in stack.services:
            for volume in service.volumes:
                if volume.kind != "data" or not volume.owner or volume.owner[0] == 0:
                    continue
                path = lab.workdir / "data" / volume.source
                assert path.stat().st_uid == start + volume.owner[0] - 1, path
                checked += 1
    assert checked
    marker = next((lab.workdir / "data" / "loki").glob(".double-*"))
    assert marker.stat().st_uid == start + 10001 - 1  # written by Loki's double as 10001


def test_status_and_a_second_up_change_nothing(lab: e2e.Lab) -> None:
    status = lab.invoke("status")
    assert status.returncode == 0 and "absent" not in status.stdout
    before = {k: v["id"] for k, v in lab.containers().items()}
    again = lab.invoke("up")
    assert again.returncode == 0 and "up to date" in again.stdout
    assert {k: v["id"] for k, v in lab.containers().items()} == before


def test_backup_and_restore_inside_the_engines_user_namespace(lab: e2e.Lab) -> None:
    """MinIO's files belong to a subordinate UID: the engine's user backs them up and
    restores them through the engine's user namespace, owners and modes kept."""
    require_program("restic")
    start = engines.subordinate_start(lab.engine.user)
    probe = lab.workdir / "data" / "minio" / "probe.bin"
    probe.write_bytes(b"kept\n")
    os.chown(probe, start + 1000 - 1, start + 1000 - 1)  # MinIO's uid 1000 in the container
    probe.chmod(0o640)
    backup = lab.invoke("backup", "--stack", "minio")
    assert backup.returncode == 0, backup.stdout[-3000:] + backup.stderr
    probe.unlink()
    restored = lab.invoke("restore", "--stack", "minio", "--yes")
    assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr
    info = probe.stat()
    assert probe.read_bytes() == b"kept\n"
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (
        start + 1000 - 1, start + 1000 - 1, 0o640)
    assert lab.containers()[("minio", "minio")]["health"] == "healthy"
