"""Start-up cost: median wall time of `invoke --list` here vs. a bare one-task collection.

Target (issue 2): at most 0.30 s, and at most 1.5x the bare invoke.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 15
PROJECT = Path(__file__).resolve().parent.parent
INVOKE = [sys.executable, "-m", "invoke", "--list"]


def median_seconds(cwd: Path) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(INVOKE, cwd=cwd, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    with tempfile.TemporaryDirectory() as bare:
        Path(bare, "tasks.py").write_text(
            "from invoke import task\n\n@task\ndef hello(c):\n    'Say hello.'\n    print('hi')\n")
        # as `invoke setup` leaves it: invoke itself never writes bytecode (--write-pyc)
        subprocess.run([sys.executable, "-m", "compileall", "-q", "tasks", "infra"],
                       cwd=PROJECT, check=True)
        median_seconds(PROJECT)  # warm the file system caches once
        ours, baseline = median_seconds(PROJECT), median_seconds(Path(bare))
    ratio = ours / baseline
    print(f"invoke --list, median of {RUNS} runs")
    verdict = "ok" if ours <= 0.3 else "MISSED"
    print(f"  this project : {ours:.3f} s   (target <= 0.300 s: {verdict})")
    print(f"  bare invoke  : {baseline:.3f} s")
    print(f"  ratio        : {ratio:.2f}x  (target <= 1.50x: {'ok' if ratio <= 1.5 else 'MISSED'})")


if __name__ == "__main__":
    main()
