"""host.storage: directories derived from the catalogue, planned and applied for real."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from invoke import Context

from infra.catalogue import Catalogue, load_raw, resolve
from infra.errors import ConfigError
from infra.host import storage as st
from infra.host.remote import apply_plan

STACKS = {
    "loki": """
name: loki
services:
  loki:
    image: grafana/loki:3.7.0
    volumes:
      - {source: loki, target: /loki, owner: "10001:10001", backup: live}
      - {source: loki.yaml, target: /etc/loki.yaml, kind: config}
""",
    "auth": """
name: auth
services:
  postgresql:
    image: postgres:16.10-alpine
    volumes:
      - {source: postgres, target: /var/lib/postgresql/data, owner: "70:70", mode: "0700",
         backup: "dump:postgres"}
  redis:
    image: redis:7
    volumes:
      - {source: redis, target: /data, backup: exclude}
""",
}


def make_catalogue(root: Path, stacks: dict[str, str] = STACKS) -> Catalogue:
    for name, text in stacks.items():
        (root / name).mkdir(parents=True)
        (root / name / "stack.yaml").write_text(text)
    return resolve(load_raw(root), {})


@pytest.mark.unit
def test_data_dirs_come_from_the_catalogue(tmp_path: Path) -> None:
    dirs = st.data_dirs(make_catalogue(tmp_path / "stacks"), "/mnt/data/")
    assert [(d.path, d.owner, d.mode) for d in dirs] == [
        ("/mnt/data/loki", (10001, 10001), ""),
        ("/mnt/data/postgres", (70, 70), "0700"),
        ("/mnt/data/redis", None, ""),
    ]
    only = st.data_dirs(make_catalogue(tmp_path / "two"), "/d", ["loki"])
    assert [d.path for d in only] == ["/d/loki"]


@pytest.mark.unit
def test_conflicting_owners_are_refused(tmp_path: Path) -> None:
    stacks = {"a": "name: a\nservices:\n  x: {image: i:1, volumes: [{source: s, target: /s, "
                   "owner: '1:1', backup: live}]}\n  y: {image: i:1, volumes: [{source: s, "
                   "target: /t, owner: '2:2', backup: live}]}\n"}
    with pytest.raises(ConfigError, match="declared with owner"):
        st.data_dirs(make_catalogue(tmp_path / "s", stacks), "/d")


@pytest.mark.unit
def test_plan_rootful_sets_declared_owners_and_modes() -> None:
    dirs = [st.DataDir("/d/loki", (10001, 10001), "", ("loki.loki",)),
            st.DataDir("/d/pg", (70, 70), "0700", ("auth.postgresql",))]
    plan = st.plan_storage(dirs, "/d", {"/d": st.PathState(0, 0, "755")}, rootless=False,
                           user_ids=(1000, 1000), run_as_user=False)
    assert plan.commands() == ["sudo mkdir -p /d/loki /d/pg", "sudo chown 70:70 /d/pg",
                               "sudo chown 10001:10001 /d/loki", "sudo chmod 0700 /d/pg"]
    existing = {"/d": st.PathState(0, 0, "755"), "/d/loki": st.PathState(10001, 10001, "755"),
                "/d/pg": st.PathState(70, 70, "700")}
    assert st.plan_storage(dirs, "/d", existing, False, (1000, 1000), False).empty


@pytest.mark.unit
def test_plan_rootless_owns_by_user_and_leaves_existing_alone() -> None:
    dirs = [st.DataDir("/d/loki", (10001, 10001), "", ("loki.loki",))]
    plan = st.plan_storage(dirs, "/d", {}, rootless=True, user_ids=(1001, 1002), run_as_user=False)
    assert plan.commands() == ["sudo mkdir -p /d /d/loki", "sudo chown 1001:1002 /d /d/loki"]
    assert any("from inside the engine" in n for n in plan.notes)
    as_user = st.plan_storage(dirs, "/d", {}, True, (1001, 1002), run_as_user=True)
    assert as_user.commands() == ["mkdir -p /d /d/loki"]
    # already fixed at bring-up (subuid owner): not reverted
    fixed = {"/d": st.PathState(1001, 1002, "755"), "/d/loki": st.PathState(110000, 110000, "755")}
    assert st.plan_storage(dirs, "/d", fixed, True, (1001, 1002), False).empty


@pytest.mark.unit
def test_parse_stat() -> None:
    assert st.parse_stat("0:0:755:/d\n70:70:700:/d/with:colon\n") == {
        "/d": st.PathState(0, 0, "755"), "/d/with:colon": st.PathState(70, 70, "700")}


@pytest.mark.engine  # root: real chown on this machine
def test_storage_applied_locally_then_nothing_to_do(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for chown")
    data_root = str(tmp_path / "data")
    dirs = st.data_dirs(make_catalogue(tmp_path / "stacks"), data_root)
    c = Context()
    plan = st.plan_storage(dirs, data_root, st.gather(c, [data_root, *(d.path for d in dirs)]),
                           rootless=False, user_ids=(0, 0), run_as_user=True)
    said: list[str] = []
    assert apply_plan(c, plan, dry=False, say=said.append)
    loki = (tmp_path / "data" / "loki").stat()
    assert (loki.st_uid, loki.st_gid) == (10001, 10001)
    assert oct((tmp_path / "data" / "postgres").stat().st_mode & 0o777) == "0o700"
    again = st.plan_storage(dirs, data_root, st.gather(c, [data_root, *(d.path for d in dirs)]),
                            rootless=False, user_ids=(0, 0), run_as_user=True)
    assert again.empty
