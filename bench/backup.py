"""Backup and restore cost on the auth stack (the real PostgreSQL of its double, restic).

The e2e lab (private engine, local registry, doubles), the auth stack up with some rows and
files written; then: a first backup, a second one with nothing changed (deduplication: the
size it adds should be near zero), and a restore of the latest snapshot (staging, swap, the
dump loaded into a fresh cluster, the stack brought up health-gated). Prints each one's wall
time and, for the backups, restic's files and size added.

Needs root, restic and the e2e tools. Usage: .venv/bin/python bench/backup.py
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import e2e


def timed(lab: e2e.Lab, *args: str) -> tuple[float, str]:
    begin = time.perf_counter()
    result = lab.invoke(*args)
    if result.returncode != 0:
        raise SystemExit(f"failed: invoke {' '.join(args)}\n{result.stdout}{result.stderr}")
    return time.perf_counter() - begin, result.stdout


def added(table: str) -> str:
    """The 'size added' cell of the auth row of the backup table."""
    row = next((line for line in table.splitlines() if re.search(r"\bauth\b", line)), "")
    cells = [c.strip() for c in row.strip().strip("│").split("│")]
    return f"{cells[4]} added, {cells[2]} files" if len(cells) >= 6 else "(no row)"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sy-bench-backup-") as tmp, \
            e2e.lab(Path(tmp), name="bench") as lab:
        timed(lab, "pull", "--stack", "auth")
        timed(lab, "up", "--stack", "auth")
        rows = "INSERT INTO bench SELECT g, md5(g::text) FROM generate_series(1, 20000) g;"
        subprocess.run([*lab.engine.cli, "exec", "-u", "70", "auth-postgresql-1", "psql", "-q",
                        "-U", "authentik", "-d", "authentik", "-c",
                        f"CREATE TABLE bench (n int, t text); {rows}"], check=True,
                       capture_output=True)
        media = lab.workdir / "data" / "auth" / "data" / "media"
        media.mkdir(parents=True, exist_ok=True)
        for index in range(200):
            (media / f"file-{index}.bin").write_bytes(bytes([index % 256]) * 50_000)
        first, table1 = timed(lab, "backup", "--stack", "auth")
        second, table2 = timed(lab, "backup", "--stack", "auth")
        restore, _ = timed(lab, "restore", "--stack", "auth", "--yes")
    print("auth stack: 20 000 rows, 200 files of 50 kB")
    print(f"  first backup        {first:6.2f}s  ({added(table1)})")
    print(f"  unchanged backup    {second:6.2f}s  ({added(table2)})")
    print(f"  restore + bring-up  {restore:6.2f}s")


if __name__ == "__main__":
    main()
