"""Machine-readable progress: one JSON object per line (ndjson), as things change.

``up --events PATH`` (``-`` for standard output) writes the same state changes its live view
draws, so a script or a test can follow a run and act on what it has reached. Shape (version
1): every object has ``v`` (1), ``time`` (seconds since the epoch) and ``event``:

- ``stack``: ``stack``, ``state`` (waiting, starting, healthy, unchanged, failed, blocked,
  not started, interrupted) and ``elapsed`` seconds;
- ``service``: ``stack``, ``service``, ``state`` (pulling, created, starting, started,
  waiting for health, healthy, error, ...) and ``detail`` (e.g. "pulling 3/7 layers,
  12.0/48.3 MB", "waiting for health (last check: ...)");
- ``step``: ``step`` (certificates, plan, engine) and ``state`` (started, done);
- ``interrupted``: ``signal``, ``finished``, ``cut_off``, ``not_started``, ``resume``;
- ``done``: ``ok``, ``stacks`` (stack -> final state) and, when something failed,
  ``failure``: ``summary``, ``lines`` and ``fixes``, the report the user reads.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, Any

VERSION = 1


class Events:
    """Thread-safe ndjson writer; a no-op without a destination."""

    def __init__(self, destination: str = ""):
        self.lock = threading.Lock()
        self.handle: IO[str] | None = None
        self.owned = False
        if destination == "-":
            self.handle = sys.stdout
        elif destination:
            self.handle = open(destination, "a", encoding="utf-8")  # noqa: SIM115 - closed
            self.owned = True

    def emit(self, event: str, **fields: Any) -> None:
        if self.handle is None:
            return
        line = json.dumps({"v": VERSION, "time": round(time.time(), 3), "event": event,
                           **fields})
        with self.lock:
            self.handle.write(line + "\n")
            self.handle.flush()

    def close(self) -> None:
        if self.owned and self.handle is not None:
            self.handle.close()
        self.handle = None
