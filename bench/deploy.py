"""Deploy cost: the same stack to 1 host, then to 4 hosts in one parallel deploy.

Namespace hosts with their own sshd and dockerd (tests/support/hosts.py), the test doubles
served by a registry on the bridge address, the catalogue's zot stack (and its ownership fix
and HTTP health probe). Each measured deploy starts from clean hosts (no containers, no
uploaded files, no run state) after one warm-up deploy (images pulled into every engine), so
it measures render + upload + bring-up, not image pulls. Target: 4 hosts <= 1.5 x one host.

Two measurements. First, the hosts share this machine's processors, as the lab runs them:
four engines starting containers then compete for the same cores, which real hosts do not do
(the script prints that CPU floor). Second, each host is a machine of its own size
(``--host-cpus``, default: an equal share of this machine, cores / 4): a CPU cgroup with that
quota holds the host's sshd and dockerd and so everything they start (sessions, docker CLI,
compose, containerd, runc), but not the containers' own processes (cgroup v1 refuses their
own ``cpus`` limit under a smaller quota; the zot double's own work is about 2% of the CPU).
The size is the same for the 1-host and the 4-host deploy. Smaller hosts make the 1-host
deploy slower and the ratio lower, so the default is the largest equal share; the deploying
process then competes with the hosts for the machine.
The inventory places a stack on one host only, so this drives the core (infra.deploy.run)
with four targets that each hold zot, as `invoke deploy` does with its inventory.
Needs root. Usage: .venv/bin/python bench/deploy.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.deploy import run
from infra.deploy.targets import Target
from infra.inventory import Host
from infra.project import load_project
from tests.support import e2e, hosts, images
from tests.support.rendering import env_dir_with_profile

STACK = "zot"
# Each host a machine of its own size: the largest equal share of this one
HOST_CPUS = round((os.cpu_count() or 1) / 4, 2)


def targets(lab: hosts.Lab, workdir: Path, count: int) -> list[Target]:
    chosen = []
    for index, host in enumerate(lab.hosts[:count], start=1):
        settings = {"DEPLOY_ROOT": str(workdir / f"h{index}" / "deploy"),
                    "DATA_ROOT": str(workdir / f"h{index}" / "data")}
        chosen.append(Target(f"h{index}", Host(
            f"h{index}", host.address, "root", 22, str(lab.key_file), host.docker_socket,
            False, (STACK,), settings), known_hosts=str(lab.known_hosts)))
    return chosen


def reset(lab: hosts.Lab, workdir: Path) -> None:
    for index, host in enumerate(lab.hosts, start=1):
        hosts.clean_engine(host)
        shutil.rmtree(workdir / f"h{index}", ignore_errors=True)
    shutil.rmtree(workdir / "build", ignore_errors=True)


VERBOSE = os.environ.get("BENCH_VERBOSE") == "1"
START = time.perf_counter()


def say(host: str, message: str) -> None:
    if VERBOSE:
        print(f"{time.perf_counter() - START:7.2f} cpu {busy_seconds():9.2f} {host} {message}",
              flush=True)


def busy_seconds() -> float:
    """CPU time all processes (engines, sshd, this script) spent busy, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


CPU: dict[int, list[float]] = {1: [], 4: []}  # all processes
OWN: dict[int, list[float]] = {1: [], 4: []}  # this process (render, SSH client)


def deploy(lab: hosts.Lab, workdir: Path, count: int) -> float:
    chosen = targets(lab, workdir, count)
    project = load_project("bench")
    options = run.DeployOptions()
    begin, cpu, own = time.perf_counter(), busy_seconds(), time.process_time()
    say("all", f"deploy to {count} host(s)")
    results = run.deploy_all(chosen, {t.name: [STACK] for t in chosen}, project, options,
                             say)
    elapsed = time.perf_counter() - begin
    say("all", f"done in {elapsed:.2f}s")
    CPU.setdefault(count, []).append(busy_seconds() - cpu)
    OWN.setdefault(count, []).append(time.process_time() - own)
    bad = [r for r in results if not r.ok]
    if bad:
        raise SystemExit(f"deploy failed: {bad}")
    return elapsed


def measure(workdir: Path, mirror: str, rounds: int, cpus: float) -> dict[int, list[float]]:
    """Median-ready deploy times to 1 and 4 hosts on a fresh lab of 4 hosts."""
    CPU.update({1: [], 4: []})
    OWN.update({1: [], 4: []})
    with hosts.network_hosts(4, workdir / f"lab-{cpus:g}", prefix="sb",
                             subnet=hosts.DEPLOY_SUBNET, dockerd=True,
                             insecure_registries=[mirror], cpus=cpus,
                             engine_cache=images.CACHE_DIR / "bench-engines") as lab, \
            hosts.bridge_registry(images.CACHE_DIR / "registry", f"{hosts.DEPLOY_SUBNET}.1",
                                  hosts.DEPLOY_MIRROR_PORT, workdir):
        warm = deploy(lab, workdir, 4)
        print(f"warm-up (pulls into 4 engines): {warm:.1f}s")
        CPU.update({1: [], 4: []})
        OWN.update({1: [], 4: []})
        figures: dict[int, list[float]] = {1: [], 4: []}
        for _ in range(rounds):
            for count in (1, 4):
                reset(lab, workdir)
                figures[count].append(deploy(lab, workdir, count))
        reset(lab, workdir)
    return figures


def report(title: str, figures: dict[int, list[float]], cpus: float) -> float:
    one, four = statistics.median(figures[1]), statistics.median(figures[4])
    print(title)
    for count, median in ((1, one), (4, four)):
        runs = [round(x, 2) for x in figures[count]]
        print(f"  deploy {STACK} to {count} host(s): median {median:.2f}s  runs {runs}  "
              f"CPU: all processes {statistics.median(CPU[count]):.2f}s, "
              f"of which this one {statistics.median(OWN[count]):.2f}s")
    if not cpus:
        cores = os.cpu_count() or 1
        floor = statistics.median(CPU[4]) / cores
        print(f"  the 4-host deploy's CPU on {cores} cores takes at least {floor:.2f}s: "
              f"{floor / one:.2f}x the 1-host time before any waiting")
    ratio = four / one
    print(f"  ratio 4/1: {ratio:.2f} (target <= 1.5): {'OK' if ratio <= 1.5 else 'MISSED'}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--host-cpus", type=float, default=HOST_CPUS,
                        help=f"processors of each host in the second measurement (default "
                             f"{HOST_CPUS}); 0: measure only with shared processors")
    args = parser.parse_args()
    modes = [0.0] + ([args.host_cpus] if args.host_cpus else [])
    results = []
    with tempfile.TemporaryDirectory(prefix="sy-bench-deploy-") as tmp:
        workdir = Path(tmp)
        mirror = f"{hosts.DEPLOY_SUBNET}.1:{hosts.DEPLOY_MIRROR_PORT}"
        env_dir = env_dir_with_profile(workdir, "bench",
                                       f"IMAGE_MIRROR={mirror}\nHEALTH_TIMEOUT=120\n")
        e2e.push_doubles(workdir)  # loads the project from env/: after it exists
        os.environ.update({"INFRA_ENV_DIR": str(env_dir), "BUILD_DIR": str(workdir / "build")})
        for cpus in modes:
            figures = measure(workdir, mirror, args.rounds, cpus)
            title = (f"hosts of {cpus:g} processor(s) each (a CPU cgroup per host, containers "
                     "excepted)" if cpus
                     else f"hosts sharing this machine's {os.cpu_count()} processors")
            results.append((title, figures, dict(CPU), dict(OWN), cpus))
    for title, figures, cpu, own, cpus in results:
        CPU.update(cpu)
        OWN.update(own)
        report(title, figures, cpus)


if __name__ == "__main__":
    main()
