"""What a backup holds and how, from the catalogue; restic's output read strictly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra import backup as bk
from infra.errors import ConfigError
from tests.support.rendering import load

pytestmark = pytest.mark.unit

PLAN_CASES = [
    # stack, what the snapshot holds, services stopped for it, databases dumped
    ("auth", ("auth/custom-templates", "auth/data"), (), ("postgresql",)),
    ("monitoring", ("dozzle", "grafana", "loki", "mimir-1", "mimir-2", "mimir-3", "tempo"),
     ("grafana",), ()),
    ("media", ("bazarr", "plex", "prowlarr", "qbittorrent", "radarr", "seerr", "sonarr"),
     ("bazarr", "plex", "prowlarr", "qbittorrent", "radarr", "seerr", "sonarr"), ()),
    ("zot", ("zot",), ("zot",), ()),
    ("minio", ("minio",), ("minio",), ()),
]


@pytest.mark.parametrize(("stack", "included", "stopped", "dumped"), PLAN_CASES)
def test_the_backup_plan_follows_the_catalogue(tmp_path: Path, stack: str, included: tuple,
                                               stopped: tuple, dumped: tuple) -> None:
    plan = bk.plan_stack(load(tmp_path).catalogue[stack])
    assert (plan.included, plan.stop, tuple(d.service for d in plan.dumps)) == (
        included, stopped, dumped)


def test_the_media_library_is_backed_up_only_when_asked(tmp_path: Path) -> None:
    env = tmp_path / "env"
    load(tmp_path)
    (env / "lib.env").write_text("BACKUP_MEDIA_LIBRARY_ENABLED=true\n")
    plan = bk.plan_stack(load(tmp_path, "lib").catalogue["media"])
    assert "media-library" in plan.included and "media-library/media" not in plan.included


def test_a_dump_runs_as_the_containers_user_with_its_database(tmp_path: Path) -> None:
    (dump,) = bk.plan_stack(load(tmp_path).catalogue["auth"]).dumps
    assert (dump.user, dump.database, dump.uid) == ("authentik", "authentik", "70")
    line = bk.dump_command("docker compose -p auth", dump, "/b/auth/dumps/postgresql.sql")
    assert line.startswith("mkdir -p /b/auth/dumps && docker compose -p auth exec -T -u 70 ")
    assert "> /b/auth/dumps/postgresql.sql.tmp && mv" in line  # a failed dump replaces nothing


def test_the_password_never_reaches_a_command_line() -> None:
    line = bk.restic_command(["snapshots", "--json"], "/srv/my backups", "/p/password")
    assert line == ("env RESTIC_REPOSITORY='/srv/my backups' RESTIC_PASSWORD_FILE=/p/password "
                    "restic snapshots --json")


def test_restics_output_is_read_strictly() -> None:
    out = "\n".join([json.dumps({"message_type": "status", "percent_done": 0.5}),
                     json.dumps({"message_type": "summary", "snapshot_id": "ab" * 32,
                                 "files_new": 2, "files_changed": 1,
                                 "total_files_processed": 9, "data_added": 2048,
                                 "total_duration": 1.25})])
    summary = bk.parse_summary(out)
    assert (summary.snapshot[:4], summary.files_total, summary.bytes_added) == ("abab", 9, 2048)
    with pytest.raises(ValueError, match="no summary"):
        bk.parse_summary("garbage")
    listed = bk.parse_snapshots(json.dumps([
        {"id": "b" * 64, "time": "2026-12-07T02:00:00Z", "tags": ["stack:auth", "rev:3"],
         "paths": ["/d/auth/data"]},
        {"id": "a" * 64, "time": "2026-12-06T02:00:00Z", "tags": ["stack:auth"]},
        {"id": 7}, "junk"]))
    assert [s.short for s in listed] == ["aaaaaaaa", "bbbbbbbb"]  # oldest first, junk skipped
    assert listed[1].tags == {"stack": "auth", "rev": "3"}


def test_choosing_a_snapshot_refuses_what_does_not_fit() -> None:
    snaps = [bk.Snapshot("a" * 64, "2026-12-06", {"stack": "auth"}, ()),
             bk.Snapshot("b" * 64, "2026-12-07", {"stack": "monitoring"}, ())]
    assert bk.choose_snapshot(snaps, "auth").short == "aaaaaaaa"
    for wanted, says in (("x;rm -rf", "is not a snapshot ID"), ("cccccccc", "no snapshot"),
                         ("bbbbbbbb", "is of stack monitoring")):
        with pytest.raises(ConfigError, match=says):
            bk.choose_snapshot(snaps, "auth", wanted)
    with pytest.raises(ConfigError, match="no snapshot of zot"):
        bk.choose_snapshot(snaps, "zot")


def test_the_plan_shows_how_each_volume_is_backed_up_and_its_size(tmp_path: Path) -> None:
    from infra.plan import backup_rows

    project = load(tmp_path)
    grafana = tmp_path / "data" / "grafana"
    grafana.mkdir(parents=True)
    (grafana / "grafana.db").write_bytes(b"x" * 3000)
    rows = {row[1]: row for row in backup_rows(project.catalogue, project.config)}
    assert rows["grafana"][2:] == ("stop grafana", "grafana", "2.9 KiB")
    assert rows["auth/postgres"][2] == "pg_dump in the container"
    assert rows["media-library"][2] == "excluded" and rows["loki"][4] == ""  # not there yet


def test_the_schedule_runs_backup_in_the_project() -> None:
    units = bk.schedule_units("/p/.venv/bin/invoke", "/p", "home", "*-*-* 04:15:00")
    service, timer = units["stackyard-backup.service"], units["stackyard-backup.timer"]
    assert "ExecStart=/p/.venv/bin/invoke backup" in service
    assert "WorkingDirectory=/p" in service and "INFRA_PROFILE=home" in service
    assert "OnCalendar=*-*-* 04:15:00" in timer and "Persistent=true" in timer
    assert bk.cron_line("/p/.venv/bin/invoke", "/p", "", "*-*-* 04:15:00").startswith(
        "15 4 * * * cd /p && /p/.venv/bin/invoke backup")
    assert bk.cron_line("/i", "/my project", "", "weekly").startswith("30 3 * * * cd '/my project'")


def test_a_drill_copy_shares_nothing_with_the_live_stack(tmp_path: Path) -> None:
    import yaml

    from infra.render import render_stacks

    project = load(tmp_path)
    live = yaml.safe_load(render_stacks(project, ["auth"], write=False)["auth"].files[
        "compose.yaml"])
    root = str(project.config.path("DATA_ROOT"))
    drill = bk.drill_compose(live, "auth", root, "/scratch/data",
                             ("auth/data", "auth/custom-templates", "auth/postgres"))
    assert drill["name"] == "drill-auth"
    assert all(n["name"].startswith("drill-auth_") and n["internal"] and "external" not in n
               for n in drill["networks"].values())
    for service in drill["services"].values():
        assert "ports" not in service
        assert not any(k.startswith("traefik.") for k in service.get("labels", {}))
        for volume in service.get("volumes", []):
            assert not volume.startswith(root + "/auth/"), volume  # restored copies only
    assert f"{root}/auth/data:/data" in live["services"]["authentik-server"]["volumes"]
    assert "/scratch/data/auth/data:/data" in drill["services"]["authentik-server"]["volumes"]
    metrics = bk.drill_metrics([bk.DrillResult("auth", "abcd1234", "t", True, 1.0, 9.5, 3600)],
                               1_800_000_000)
    assert 'stackyard_backup_drill_ok{stack="auth"} 1' in metrics
    assert 'stackyard_backup_drill_data_age_seconds{stack="auth"} 3600' in metrics


def test_the_backups_dashboard_queries_what_the_drill_writes(tmp_path: Path) -> None:
    from infra import contracts as ct
    from infra.render import render_stacks

    files = render_stacks(load(tmp_path), ["monitoring"], write=False)["monitoring"].files
    dashboard = json.loads(files["grafana/dashboards/backups.json"])
    written = {line.split("{", 1)[0] for line in bk.drill_metrics(
        [bk.DrillResult("auth", "a", "t", True, 1, 2, 3)], 0).splitlines()
        if not line.startswith("#")}
    used = ct.queried_metrics(dashboard)
    assert used and used <= written, used - written
