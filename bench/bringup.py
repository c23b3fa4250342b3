"""Bring-up cost on the test doubles: `invoke up` against raw `docker compose up -d --wait`.

One run, same lab (private engine, local registry as IMAGE_MIRROR, doubles pushed), same
stacks, networks and data folders already prepared by a warm-up `up`:
  raw      `docker compose up -d --wait` per stack, one after the other in dependency order
           (one-shot jobs: `up -d` then `docker wait`, since `--wait` rejects a job that exits)
  seq      `invoke up --jobs 1` (one stack at a time)       target: <= 1.05 x raw
  par      `invoke up` (independent stacks in parallel)     target: <  0.80 x raw
  no-op    a second `invoke up` with nothing changed        target: <= 1.0 s
Needs root and the e2e tools (docker-registry, nsenter, dockerd). Usage:
  .venv/bin/python bench/bringup.py [--stack NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.catalogue import stack_layers, with_dependencies
from tests.support import e2e


def timed(action) -> float:  # type: ignore[no-untyped-def]
    begin = time.perf_counter()
    action()
    return time.perf_counter() - begin


def check(result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        raise SystemExit(f"failed: {result.args}\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stack", action="append", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sy-bench-") as tmp, \
            e2e.lab(Path(tmp), name="bench") as lab:
        catalogue = lab.project.catalogue
        names = with_dependencies(catalogue, args.stack or catalogue.names())
        order = [n for layer in stack_layers(catalogue, names) for n in layer]
        selection = [part for n in args.stack for part in ("--stack", n)]
        check(lab.invoke("pull", *selection))
        check(lab.invoke("up", *selection))  # warm-up: networks, data folders, certificates

        def down() -> None:
            check(lab.invoke("down", *selection))

        def raw() -> None:
            for name in order:
                stack = catalogue[name]
                base = ["docker", "compose", "-p", name, "-f",
                        str(lab.workdir / "build" / e2e.PROFILE / "stacks" / name /
                            "compose.yaml")]
                daemons = [s.name for s in stack.services if not s.oneshot]
                run = subprocess.run([*base, "up", "-d", "--wait", *daemons],
                                     capture_output=True, text=True, env=lab.environ)
                check(run)
                for job in (s.name for s in stack.services if s.oneshot):
                    check(subprocess.run([*base, "up", "-d", "--no-deps", job],
                                         capture_output=True, text=True, env=lab.environ))
                    cid = subprocess.run([*base, "ps", "-aq", job], capture_output=True,
                                         text=True, env=lab.environ).stdout.strip()
                    check(subprocess.run(["docker", "wait", cid], capture_output=True,
                                         text=True, env=lab.environ))

        down()
        figures = {"raw": timed(raw)}
        down()
        figures["seq"] = timed(lambda: check(lab.invoke("up", "--jobs", "1", *selection)))
        down()
        figures["par"] = timed(lambda: check(lab.invoke("up", *selection)))
        figures["no-op"] = min(timed(lambda: check(lab.invoke("up", *selection)))
                               for _ in range(3))
        down()
    print(f"stacks: {', '.join(order)}")
    print(f"raw docker compose up -d --wait, in order : {figures['raw']:6.1f} s")
    print(f"invoke up --jobs 1                         : {figures['seq']:6.1f} s  "
          f"({figures['seq'] / figures['raw']:.2f}x raw, target <= 1.05x)")
    print(f"invoke up (parallel layers)                : {figures['par']:6.1f} s  "
          f"({figures['par'] / figures['raw']:.2f}x raw, target < 0.80x)")
    print(f"no-op second invoke up (best of 3)         : {figures['no-op']:6.2f} s  "
          "(target <= 1.0 s)")


if __name__ == "__main__":
    main()
