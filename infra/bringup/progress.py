"""What each service of a stack is doing while compose brings it up, from compose's own events.

``docker compose --progress json`` writes one JSON object per line to stderr: per container
(``{"id": "Container <project>-<service>-1", "status": "Started"}``), per image pull
(``{"id": "<service>", "text": "Pulling"}``, layers with a ``parent_id`` and byte counts),
and errors (``{"error": true, "message": ...}``). ``ComposeProgress`` is a file-like sink for
that stream (invoke/fabric ``err_stream``): it keeps each service's state and tells
``on_change`` when one changes. ``plain_text`` turns the same stream back into the lines a
person (and the failure report) reads.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# compose's words -> ours (what the service is doing, or waiting for)
CONTAINER_STATES = {
    "Creating": "creating", "Created": "created", "Recreate": "recreating",
    "Recreated": "created", "Starting": "starting", "Started": "started",
    "Waiting": "waiting for health", "Healthy": "healthy", "Running": "running",
    "Exited": "exited", "Stopping": "stopping", "Stopped": "stopped", "Error": "error",
}
WAITING_FOR_HEALTH = "waiting for health"
FINAL = {"healthy", "running", "exited", "error", "pulled"}  # a service done, one way or another


@dataclass
class ServiceProgress:
    state: str = "waiting"
    since: float = field(default_factory=time.monotonic)
    layers: dict[str, tuple[int, int, bool]] = field(default_factory=dict)  # id -> cur, tot, done
    health: str = ""  # the health command's last output, while waiting for health

    def detail(self) -> str:
        if self.state == "pulling" and self.layers:
            done = sum(1 for _, _, finished in self.layers.values() if finished)
            current = sum(c for c, _, _ in self.layers.values())
            total = sum(t for _, t, _ in self.layers.values())
            size = f", {current / 1e6:.1f}/{total / 1e6:.1f} MB" if total else ""
            return f"pulling {done}/{len(self.layers)} layers{size}"
        if self.state == WAITING_FOR_HEALTH and self.health:
            return f"waiting for health (last check: {self.health})"
        return self.state


class ComposeProgress:
    """A write()-able sink for compose's JSON progress of one stack (thread-safe)."""

    def __init__(self, project: str,
                 on_change: Callable[[str, str, str], None] = lambda s, st, d: None):
        self.project = project
        self.on_change = on_change  # (service, state, detail) on every state change
        self.services: dict[str, ServiceProgress] = {}
        self.lock = threading.Lock()
        self.buffer = ""
        self.lines: list[str] = []

    # file-like
    def write(self, data: str) -> int:
        with self.lock:
            self.buffer += data
            *complete, self.buffer = self.buffer.split("\n")
        for line in complete:
            self.feed(line)
        return len(data)

    def flush(self) -> None:
        pass

    def feed(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        self.lines.append(line)
        try:
            event = json.loads(line)
        except ValueError:
            return
        if isinstance(event, dict):
            self._event(event)

    def _event(self, event: dict[str, Any]) -> None:
        ident = str(event.get("id", ""))
        status = str(event.get("status") or event.get("text") or "")
        parent = str(event.get("parent_id") or "")
        if ident.startswith("Container "):
            service = self._service_of(ident.removeprefix("Container "))
            if service and status.split()[0:1]:
                state = CONTAINER_STATES.get(status.split()[0], status.lower())
                self._set(service, state)
        elif parent and not parent.startswith(("Container ", "Network ", "Volume ")):
            # a layer's state is its "text"; its "status" is a progress bar
            self._layer(parent, ident, event, str(event.get("text") or ""))
        elif ident and not ident.startswith(("Network ", "Volume ")) and " " not in ident:
            text = str(event.get("text") or "")
            if text == "Pulling":
                self._set(ident, "pulling")
            elif text in ("Pulled", "Pull complete"):
                self._set(ident, "pulled")
            elif text == "Error":
                self._set(ident, "error")

    def _service_of(self, container: str) -> str:
        prefix = self.project + "-"
        if not container.startswith(prefix):
            return ""
        name, _, number = container[len(prefix):].rpartition("-")
        return name if number.isdigit() else container[len(prefix):]

    def _layer(self, service: str, layer: str, event: dict[str, Any], status: str) -> None:
        with self.lock:
            progress = self.services.setdefault(service, ServiceProgress("pulling"))
            finished = status in ("Pull complete", "Already exists", "Download complete")
            current, total = int(event.get("current") or 0), int(event.get("total") or 0)
            before = progress.layers.get(layer, (0, 0, False))
            progress.layers[layer] = (max(current, before[0]), max(total, before[1]),
                                      finished or before[2])
            progress.state = "pulling"

    def _set(self, service: str, state: str) -> None:
        with self.lock:
            progress = self.services.setdefault(service, ServiceProgress())
            if progress.state == state:
                return
            progress.state, progress.since = state, time.monotonic()
            if state != WAITING_FOR_HEALTH:
                progress.health = ""
            detail = progress.detail()
        self.on_change(service, state, detail)

    def note_health(self, service: str, output: str) -> None:
        with self.lock:
            progress = self.services.get(service)
            if progress is not None:
                progress.health = " ".join(output.split())[:120]

    def waiting_for_health(self) -> list[str]:
        with self.lock:
            return [s for s, p in self.services.items() if p.state == WAITING_FOR_HEALTH]


def plain_text(stderr: str) -> str:
    """Compose's JSON progress as the lines a person reads (others pass through as they are):
    what failed and why, for the failure report."""
    lines = []
    for raw in stderr.splitlines():
        try:
            event = json.loads(raw)
        except ValueError:
            lines.append(raw)
            continue
        if not isinstance(event, dict):
            lines.append(raw)
        elif event.get("error"):
            lines.append(str(event.get("message", "")))
        else:
            words = [str(event.get(k, "")) for k in ("id", "text", "status") if event.get(k)]
            lines.append(" " + " ".join(words))
    return "\n".join(lines)


def last_health_output(inspected: str) -> str:
    """The last health check's output, from ``commands.inspect_health`` (one ``<exit code>:
    <output>`` line per check kept by the engine; a check's output may span lines)."""
    entries: list[str] = []
    for line in inspected.splitlines():
        head, _, rest = line.partition(": ")
        if head.lstrip("-").isdigit():
            entries.append(rest)
        elif entries and line.strip():
            entries[-1] += " " + line.strip()
    return entries[-1].strip() if entries else ""
