"""Latency of one command over SSH: fabric's Connection as it comes, and the project's
(infra.deploy.connection, Nagle's algorithm off), against sshd on a namespace host.

A deploy runs about a dozen commands per host, so this is paid a dozen times per deploy.
Needs root. Usage: .venv/bin/python bench/ssh_run.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import hosts

RUNS = 30


def median_run_seconds(conn: Any) -> float:
    conn.run("true", hide=True, in_stream=False)  # connect outside the measurement
    samples = []
    for _ in range(RUNS):
        begin = time.perf_counter()
        conn.run("true", hide=True, in_stream=False)
        samples.append(time.perf_counter() - begin)
    conn.close()
    return statistics.median(samples)


def main() -> None:
    import fabric

    from infra.deploy.connection import Connection

    with tempfile.TemporaryDirectory(prefix="sy-bench-ssh-") as tmp, \
            hosts.network_hosts(1, Path(tmp), prefix="bs", subnet="10.79.2") as lab:
        host = lab.hosts[0]
        kwargs = {"user": "root", "connect_kwargs": {"key_filename": str(lab.key_file),
                                                     "look_for_keys": False,
                                                     "allow_agent": False}}
        stock = median_run_seconds(fabric.Connection(host.address, **kwargs))
        ours = median_run_seconds(Connection(host.address, known_hosts=[str(lab.known_hosts)],
                                             **kwargs))
    print(f"`run('true')` over SSH to a namespace host, median of {RUNS}")
    print(f"  fabric.Connection (Nagle on)   : {stock * 1000:.1f} ms")
    print(f"  project Connection (TCP_NODELAY): {ours * 1000:.1f} ms")


if __name__ == "__main__":
    main()
