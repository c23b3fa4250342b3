"""`deploy` beside the same work done by hand, cold and no-op, in one run.

The lab of bench/deploy.py (namespace hosts with their own sshd and dockerd, the doubles
served by a registry on the bridge), the catalogue's zot stack on every host. Images are
pulled into every engine by a warm-up deploy first, so both sides measure getting files to
the hosts and bringing the stack up, not pulls.

- **deploy**: ``infra.deploy.run.deploy_all`` to every host at once, as ``invoke deploy``.
- **by hand**: the files that deploy uploaded (its stack folder, certificates and the data
  folder it prepared, taken from the warm-up) streamed to each host with ``tar | ssh``, then
  ``docker compose up -d --wait`` over ssh, all hosts in parallel threads.

Cold: every host clean (no containers, no files, no run state). No-op: the same run again at
once, nothing changed. Targets: cold deploy <= 1.2x by hand; a no-op deploy <= 1 s per host
plus one round trip (the hosts are deployed in parallel, so the no-op deploy's whole time is
held to 1 s + one measured ssh round trip).

Needs root. Usage: .venv/bin/python bench/deploy_by_hand.py [--hosts N] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.deploy import STACK, deploy, reset  # the same lab and deploy
from tests.support import e2e, hosts, images
from tests.support.rendering import env_dir_with_profile


def ssh_argv(lab: hosts.Lab, host: hosts.Host) -> list[str]:
    return ["ssh", "-i", str(lab.key_file), "-o", f"UserKnownHostsFile={lab.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", f"root@{host.address}"]


def snapshot(workdir: Path, index: int) -> bytes:
    """What deploy put on host ``index`` (its deploy root and data folder), as one tarball."""
    folder = workdir / f"h{index}"
    return subprocess.run(["tar", "-C", str(folder), "--numeric-owner", "-cf", "-",
                           "deploy", "data"], capture_output=True, check=True).stdout


def networks_of(workdir: Path) -> list[str]:
    """The external networks the stack's compose file joins (deploy creates them first)."""
    import yaml

    compose = workdir / "h1" / "deploy" / "stacks" / STACK / "compose.yaml"
    document = yaml.safe_load(compose.read_text())
    return [spec.get("name", key) for key, spec in (document.get("networks") or {}).items()
            if (spec or {}).get("external")]


def by_hand(lab: hosts.Lab, workdir: Path, count: int, tarballs: list[bytes],
            networks: list[str]) -> float:
    """Push the files to every host, create the networks and bring the stack up there, all
    hosts at once."""
    def one(index: int) -> None:
        host = lab.hosts[index - 1]
        folder = workdir / f"h{index}"
        stack_dir = folder / "deploy" / "stacks" / STACK
        ssh = ssh_argv(lab, host)
        subprocess.run([*ssh, f"mkdir -p {folder} && tar -C {folder} --numeric-owner -xf -"],
                       input=tarballs[index - 1], check=True, capture_output=True)
        engine = f"DOCKER_HOST=unix://{host.docker_socket}"
        create = "".join(f"{engine} docker network create {n} >/dev/null 2>&1; "
                         for n in networks)
        up = (f"{create}{engine} docker compose -p {STACK} "
              f"--project-directory {stack_dir} -f {stack_dir}/compose.yaml "
              "up -d --wait --wait-timeout 120")
        done = subprocess.run([*ssh, up], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"by hand on h{index}: {done.stderr.strip()[-800:]}")

    begin = time.perf_counter()
    with ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(one, range(1, count + 1)))
    return time.perf_counter() - begin


def round_trip(lab: hosts.Lab) -> float:
    """One ssh command's round trip (connection included), the median of five."""
    times = []
    for _ in range(5):
        begin = time.perf_counter()
        subprocess.run([*ssh_argv(lab, lab.hosts[0]), "true"], check=True)
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"deploy cold": [], "by hand cold": [],
                                       "deploy no-op": [], "by hand no-op": []}
    with tempfile.TemporaryDirectory(prefix="sy-bench-byhand-") as tmp:
        workdir = Path(tmp)
        mirror = f"{hosts.DEPLOY_SUBNET}.1:{hosts.DEPLOY_MIRROR_PORT}"
        env_dir = env_dir_with_profile(workdir, "bench",
                                       f"IMAGE_MIRROR={mirror}\nHEALTH_TIMEOUT=120\n")
        e2e.push_doubles(workdir)
        os.environ.update({"INFRA_ENV_DIR": str(env_dir), "BUILD_DIR": str(workdir / "build")})
        with hosts.network_hosts(args.hosts, workdir / "lab", prefix="sb",
                                 subnet=hosts.DEPLOY_SUBNET, dockerd=True,
                                 insecure_registries=[mirror],
                                 engine_cache=images.CACHE_DIR / "bench-engines") as lab, \
                hosts.bridge_registry(images.CACHE_DIR / "registry",
                                      f"{hosts.DEPLOY_SUBNET}.1", hosts.DEPLOY_MIRROR_PORT,
                                      workdir):
            warm = deploy(lab, workdir, args.hosts)
            print(f"warm-up (pulls into {args.hosts} engines): {warm:.1f}s")
            tarballs = [snapshot(workdir, i) for i in range(1, args.hosts + 1)]
            networks = networks_of(workdir)
            rtt = round_trip(lab)
            for _ in range(args.rounds):
                reset(lab, workdir)
                figures["deploy cold"].append(deploy(lab, workdir, args.hosts))
                figures["deploy no-op"].append(deploy(lab, workdir, args.hosts))
                reset(lab, workdir)
                for name in ("by hand cold", "by hand no-op"):
                    figures[name].append(by_hand(lab, workdir, args.hosts, tarballs, networks))
            reset(lab, workdir)
    median = {k: statistics.median(v) for k, v in figures.items()}
    print(f"{STACK} on {args.hosts} host(s) in parallel, {args.rounds} round(s); "
          f"ssh round trip {rtt * 1000:.0f} ms")
    for name, runs in figures.items():
        print(f"  {name:14} median {median[name]:6.2f}s  runs {[round(x, 2) for x in runs]}")
    cold = median["deploy cold"] / median["by hand cold"]
    print(f"  cold: deploy / by hand = {cold:.2f} (target <= 1.2): "
          f"{'OK' if cold <= 1.2 else 'MISSED'}")
    limit = 1.0 + rtt
    print(f"  no-op deploy {median['deploy no-op']:.2f}s, limit {limit:.2f}s (1 s + one round "
          f"trip; hosts in parallel): {'OK' if median['deploy no-op'] <= limit else 'MISSED'}")


if __name__ == "__main__":
    main()
