"""Each service's progress from compose's own JSON events (recorded from compose v2.40.3:
`docker compose --progress json pull` and `up -d --wait` against this machine's engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.bringup.progress import ComposeProgress, last_health_output, plain_text

pytestmark = pytest.mark.unit
DATA = Path(__file__).parent / "recorded"


def test_a_pull_is_counted_in_layers_and_bytes_as_it_comes() -> None:
    changes: list[tuple[str, str, str]] = []
    sink = ComposeProgress("cptest", lambda *change: changes.append(change))
    lines = (DATA / "compose-pull.jsonl").read_text().splitlines()
    for line in lines[:6]:  # fed in pieces, as a pipe delivers them
        sink.write(line[:10])
        sink.write(line[10:] + "\n")
    mid = sink.services["d"].detail()
    assert mid.startswith("pulling 1/3 layers") and "MB" in mid, mid
    for line in lines[6:]:
        sink.write(line + "\n")
    assert sink.services["d"].state == "pulled"
    assert [c[:2] for c in changes] == [("d", "pulling"), ("d", "pulled")]


def test_containers_move_through_their_states_once_each() -> None:
    changes: list[tuple[str, str, str]] = []
    sink = ComposeProgress("cptest", lambda *change: changes.append(change))
    sink.write((DATA / "compose-up.jsonl").read_text())
    a_states = [state for service, state, _ in changes if service == "a"]
    assert a_states == ["creating", "created", "starting", "started", "waiting for health",
                        "healthy", "waiting for health", "healthy"]
    assert sink.services["b"].state == "healthy"
    assert "Network" not in {service for service, _, _ in changes}


def test_what_the_stack_waits_on_names_the_service_and_the_last_check() -> None:
    from infra.bringup import schedule

    progress = schedule.Progress()
    progress.set("mon", schedule.STARTING)
    sink = ComposeProgress("mon", lambda *change: progress.service("mon", *change))
    sink.write('{"id":"Container mon-grafana-1","status":"Waiting"}\n')
    sink.note_health("grafana", "wget: server returned error: HTTP/1.1 503\n")
    progress.service("mon", "grafana", "waiting for health", sink.services["grafana"].detail())
    assert sink.waiting_for_health() == ["grafana"]
    assert progress.doing("mon").startswith(
        "grafana: waiting for health (last check: wget: server returned error: HTTP/1.1 503)")


def test_the_failure_report_reads_the_same_stream_as_text() -> None:
    stderr = ('{"id":"b","text":"Pulling"}\n'
              '{"id":"b","text":"Error","status":"Get \\"http://127.0.0.1:1/v2/\\": dial tcp: '
              'connection refused"}\n{"error":true,"message":"Error response from daemon: '
              'Get \\"http://127.0.0.1:1/v2/\\": connection refused"}\n')
    text = plain_text(stderr)
    assert ' b Error Get "http://127.0.0.1:1/v2/": dial tcp: connection refused' in text
    assert text.splitlines()[-1].startswith("Error response from daemon:")


def test_the_last_health_output_of_the_engines_log() -> None:
    assert last_health_output("1: starting\n0: ok\n1: wget: 503\nService\nUnavailable\n") == \
        "wget: 503 Service Unavailable"
    assert last_health_output("running exit 0 ") == ""
