"""The deploy history, rollback choices and image tags as versions: pure functions and files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from infra import history
from infra.bringup.facts import parse_stack_images
from infra.errors import ConfigError
from infra.tags import MAJOR, MINOR, PATCH, newer_tags, tag_of

pytestmark = pytest.mark.unit

NEWER_CASES = [
    # pin, tags the registry offers, what counts as newer (tag, level), oldest first
    ("1.28.0-alpine", ["1.28.1-alpine", "1.29.0-alpine", "2.0.0-alpine", "1.29.0", "mainline",
                       "1.28.0-alpine-slim", "1.27.9-alpine"],
     [("1.28.1-alpine", PATCH), ("1.29.0-alpine", MINOR), ("2.0.0-alpine", MAJOR)]),
    ("v3.6.24", ["v3.6.25", "v3.7.0", "v4.0.0-rc1", "v4.0.0", "3.6.30", "latest"],
     [("v3.6.25", PATCH), ("v3.7.0", MINOR), ("v4.0.0", MAJOR)]),
    ("1.42.2.10156-f737b826c-ls285", ["1.42.2.10156-f737b826c-ls286",
                                      "1.43.0.10389-8be686aa6-ls290",
                                      "1.42.2.10156-f737b826c-ls284"],
     [("1.42.2.10156-f737b826c-ls286", PATCH), ("1.43.0.10389-8be686aa6-ls290", MINOR)]),
    ("4.0.15.2941-ls294", ["4.0.15.2941-ls295", "5.0.0.1-ls1", "develop-ls3"],
     [("4.0.15.2941-ls295", PATCH), ("5.0.0.1-ls1", MAJOR)]),
    ("RELEASE.2025-09-07T16-13-09Z", ["RELEASE.2025-10-15T17-29-55Z",
                                      "RELEASE.2026-01-01T00-00-00Z",
                                      "RELEASE.2024-01-01T00-00-00Z", "latest"],
     [("RELEASE.2025-10-15T17-29-55Z", MINOR), ("RELEASE.2026-01-01T00-00-00Z", MAJOR)]),
    ("latest", ["1.0.0"], []),  # a pin of no scheme has no newer tags
]


@pytest.mark.parametrize(("pin", "tags", "newer"), NEWER_CASES, ids=[c[0] for c in NEWER_CASES])
def test_newer_tags_follow_the_pins_scheme_and_shape(pin: str, tags: list[str],
                                                     newer: list[tuple[str, str]]) -> None:
    assert [(n.tag, n.level) for n in newer_tags(pin, tags)] == newer


def test_tag_of_a_reference() -> None:
    assert tag_of("quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z") == \
        "RELEASE.2025-09-07T16-13-09Z"
    assert tag_of("127.0.0.1:5000/grafana/loki:3.7.0@sha256:" + "a" * 64) == "3.7.0"
    assert tag_of("127.0.0.1:5000/grafana/loki") == ""


def _revision(rev: int = 0, result: str = history.HEALTHY, digest: str = "d1",
              image: str = "127.0.0.1:5000/minio/minio:RELEASE.2025-09-07T16-13-09Z"
              ) -> history.Revision:
    return history.Revision(rev, "minio", "2026-12-07T00:00:00+00:00", "alice", history.UP,
                            digest, "s1", result, images=(history.ImageUse("minio", image),),
                            health={"minio": 2.5})


def test_revisions_are_numbered_kept_and_pruned(tmp_path: Path) -> None:
    files = {"compose.yaml": "services: {}\n", "secrets/minio.env": "KEY='x'\n"}
    for digest in ("d1", "d2", "d3"):
        history.record(tmp_path, _revision(digest=digest), files, keep=2)
    history.record(tmp_path, _revision(digest="d4", result=history.FAILED), files, keep=2)
    revisions = history.load(tmp_path, "minio")
    assert [(r.rev, r.digest, r.kept) for r in revisions] == [
        (1, "d1", False), (2, "d2", True), (3, "d3", True), (4, "d4", False)]
    folder = history.history_dir(tmp_path) / "minio"
    assert sorted(p.name for p in folder.iterdir()) == ["2", "3"]  # failed ones keep nothing
    assert stat.S_IMODE((folder / "3").stat().st_mode) == 0o700  # it holds secrets
    secret = folder / "3" / "secrets" / "minio.env"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((history.history_dir(tmp_path) / "minio.json").stat().st_mode) == 0o600
    assert history.kept_files(tmp_path, revisions[2]) == files
    assert revisions[0].health == {"minio": 2.5} and revisions[0].who == "alice"


def test_the_rollback_target_is_the_last_good_kept_revision_that_differs(tmp_path: Path
                                                                         ) -> None:
    for digest, result in (("d1", history.HEALTHY), ("d2", history.HEALTHY),
                           ("d3", history.FAILED), ("d2", history.HEALTHY)):
        history.record(tmp_path, _revision(digest=digest, result=result), {"a": "1"}, keep=5)
    revisions = history.load(tmp_path, "minio")
    assert history.rollback_target(revisions, None).rev == 1  # d2 runs now: d1 is older
    assert history.rollback_target(revisions, 2).rev == 2
    with pytest.raises(ConfigError, match="revision 3 failed its health gate") as failed:
        history.rollback_target(revisions, 3)
    assert "1, 2, 4" in failed.value.problems[0].fix
    with pytest.raises(ConfigError, match="has no revision 9"):
        history.rollback_target(revisions, 9)
    with pytest.raises(ConfigError, match="never brought up"):
        history.rollback_target([], None)


def test_a_major_version_change_between_revisions_is_named() -> None:
    old = _revision(image="r/grafana/grafana:11.6.0")
    new = _revision(image="r/grafana/grafana:12.2.1")
    assert history.major_changes(new, old) == [
        "minio: r/grafana/grafana:12.2.1 -> r/grafana/grafana:11.6.0"]
    assert history.major_changes(new, _revision(image="r/grafana/grafana:12.1.0")) == []


def test_a_damaged_history_names_its_file_and_the_fix(tmp_path: Path) -> None:
    folder = history.history_dir(tmp_path)
    folder.mkdir(parents=True)
    for text, why in (("{not json", "is not JSON"), ('{"revisions": 3}', "no list"),
                      (json.dumps({"revisions": [{"rev": "x"}]}), "revision #1 is malformed"),
                      (json.dumps({"revisions": [{**json.loads(json.dumps(
                          history._as_json(_revision(1)))), "action": "rm -rf"}]}),
                       "malformed")):
        (folder / "minio.json").write_text(text)
        with pytest.raises(ConfigError) as bad:
            history.load(tmp_path, "minio")
        problem = bad.value.problems[0]
        assert why in problem.message and problem.file.endswith("minio.json")
        assert "move it aside" in problem.fix


def test_the_images_a_stack_runs_with_their_ids_and_registry_digests() -> None:
    digest = "sha256:" + "b" * 64
    out = ("container\tminio\t127.0.0.1:5000/minio/minio:R1\tsha256:aaa\n"
           "container\tminio-setup\tmc:R2\tsha256:ccc\n"
           f'image\tsha256:aaa\t["other/minio@{digest}","127.0.0.1:5000/minio/minio@{digest}"]\n'
           "image\tsha256:ccc\tnull\n")
    assert parse_stack_images(out) == [
        ("minio", "127.0.0.1:5000/minio/minio:R1", "sha256:aaa",
         f"127.0.0.1:5000/minio/minio@{digest}"),
        ("minio-setup", "mc:R2", "sha256:ccc", "")]
