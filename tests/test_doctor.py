"""doctor: checks as data, then against this machine (engine 20.10 is a warning, not a crash)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from invoke import Context, Exit

from infra.host import doctor as dr
from infra.host import facts as f

GOOD = dr.DoctorFacts(
    kernel="Linux", memory_bytes=16 * 10**9, disk=f.DiskSpace("/", 200 * 10**9),
    data_root="/mnt/data", versions=f.DockerVersions("27.3.1", "27.3.1", "1.47"),
    compose="2.40.3", listening=frozenset({22, 5000}), container_ports=frozenset({5000}))


def by_name(checks: list[dr.Check]) -> dict[str, dr.Check]:
    return {c.name: c for c in checks}


@pytest.mark.unit
def test_healthy_host_passes() -> None:
    checks = dr.evaluate(GOOD, {80: "traefik.traefik", 5000: "zot.zot"})
    named = by_name(checks)
    assert not dr.hard_failures(checks)
    assert named["port 80"].status == dr.OK
    assert named["port 5000"].status == dr.WARN  # published by a container: already up


@pytest.mark.unit
def test_old_engine_is_a_warning_with_the_fix() -> None:
    old = dr.DoctorFacts(**{**GOOD.__dict__, "versions": f.DockerVersions("28.2.2",
                                                                         "20.10.24+dfsg1", "1.41")})
    check = by_name(dr.evaluate(old, {}))["docker engine"]
    assert check.status == dr.WARN and "older than 24.0" in check.detail
    assert "host.install-docker" in check.fix


@pytest.mark.unit
def test_hard_failures() -> None:
    bad = dr.DoctorFacts(kernel="Darwin", memory_bytes=4 * 10**9, disk=f.DiskSpace("/", 10**9),
                         versions=f.DockerVersions("28.0.0", error="Cannot connect"),
                         compose="1.29.2", listening=frozenset({80}))
    checks = by_name(dr.evaluate(bad, {80: "traefik.traefik"}))
    failed = {c.name for c in checks.values() if c.status == dr.FAIL}
    assert failed == {"operating system", "docker engine", "docker compose", "port 80"}
    assert checks["memory"].status == checks["disk space"].status == dr.WARN


@pytest.mark.unit
def test_rootless_checks() -> None:
    info = f.DockerInfo(True, "systemd", "2", "/x", "json-file", (), (),
                        ("WARNING: No cpuset support",))
    facts = dr.DoctorFacts(**{**GOOD.__dict__, "rootless_expected": True, "info": info,
                              "socket": "/run/user/1000/docker.sock", "socket_exists": True,
                              "xdg_runtime_dir": "/run/user/1000",
                              "xdg_runtime_dir_exists": True})
    named = by_name(dr.evaluate(facts, {}))
    assert named["rootless daemon"].status == dr.OK
    assert named["resource controls"].fix == "invoke host.cgroup-delegation"
    rootful = dr.DoctorFacts(**{**facts.__dict__, "info": f.DockerInfo(
        False, "cgroupfs", "1", "/x", "json-file", (), (), ())})
    assert by_name(dr.evaluate(rootful, {}))["rootless daemon"].status == dr.FAIL


@pytest.mark.unit
def test_parsers() -> None:
    assert dr.parse_container_ports("0.0.0.0:80->80/tcp, :::80->80/tcp\n127.0.0.1:5000->5000/tcp"
                                    ", 9000/tcp") == {80, 5000}
    tcp = ("  sl  local_address rem_address   st\n"
           "   0: 0100007F:1388 00000000:0000 0A 00000000:00000000\n"
           "   1: 0100007F:0050 0100007F:D431 01 00000000:00000000\n")
    assert f.parse_listening_ports(tcp) == {5000}
    assert f.parse_df("Filesystem 1024-blocks Used Available Capacity Mounted on\n"
                      "/dev/vda 100 50 50 50% /\n") == f.DiskSpace("/", 50 * 1024)
    assert f.major_version("v2.40.3") == 2 and f.major_version("20.10.24+dfsg1") == 20


@pytest.mark.unit
def test_ports_come_from_the_catalogue_or_config() -> None:
    from infra.catalogue import Catalogue

    assert dr.required_ports(Catalogue({}), {"ZOT_PORT": "5000", "TZ": "UTC"}) == {5000: "ZOT_PORT"}


@pytest.mark.engine
def test_doctor_on_this_machine(docker_engine: str, tmp_path: Path, env_dir: Path,
                                monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken, socket.socket() as probe:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        probe.bind(("127.0.0.1", 0))  # bound, not listening: its port is free for the check
        busy, free = taken.getsockname()[1], probe.getsockname()[1]
        facts = dr.gather(Context(), str(tmp_path / "not" / "yet"), "/var/run/docker.sock", False)
        checks = by_name(dr.evaluate(facts, {busy: "test.busy", free: "test.free"}))
    assert checks[f"port {busy}"].status == dr.FAIL
    assert checks[f"port {free}"].status == dr.OK
    assert checks["disk space"].detail.endswith("minimum 50.0 GB)")  # measured on a parent
    assert checks["docker compose"].status == dr.OK
    engine = checks["docker engine"]
    assert docker_engine in engine.detail
    if f.major_version(docker_engine) < dr.MIN_DOCKER_MAJOR:
        assert engine.status == dr.WARN and "host.install-docker" in engine.fix

    from tasks.doctor import doctor

    monkeypatch.setenv("INFRA_ENV_DIR", str(env_dir))
    try:
        doctor(Context())
    except Exit as exc:  # other tests may hold a stack port right now: only those may fail
        assert "port" in str(exc.message) and "docker" not in str(exc.message)
    table = capsys.readouterr().out
    assert "docker engine" in table and "docker compose" in table
