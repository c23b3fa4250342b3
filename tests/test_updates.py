"""Pins and the digest lock as data: the update plan, the lock's reader and render's use of it,
the pins layer (env/pins.env)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra import updates
from infra.config import load_config
from infra.errors import ConfigError
from infra.render import render_stacks
from infra.tags import Newer
from tests.support.rendering import PROJECT_ROOT, load

pytestmark = pytest.mark.unit
DIGEST = "sha256:" + "c" * 64


def _result(reference: str, setting: str, *newer: tuple[str, str]) -> updates.Outdated:
    return updates.Outdated(updates.PinnedImage(reference, setting, ("monitoring",)),
                            tuple(Newer(t, lvl) for t, lvl in newer))


UPDATE_CASES = [
    # level, what the registries offer, the pins written
    ("patch", [_result("grafana/loki:3.7.0", "LOKI_IMAGE", ("3.7.1", "patch"),
                       ("3.8.0", "minor"))], [("LOKI_IMAGE", "grafana/loki:3.7.1")]),
    ("minor", [_result("grafana/loki:3.7.0", "LOKI_IMAGE", ("3.7.1", "patch"),
                       ("3.8.0", "minor"), ("4.0.0", "major"))],
     [("LOKI_IMAGE", "grafana/loki:3.8.0")]),
    ("major", [_result("grafana/loki:3.7.0@" + DIGEST, "LOKI_IMAGE", ("4.0.0", "major"))],
     [("LOKI_IMAGE", "grafana/loki:4.0.0")]),  # the old digest goes with the old tag
    ("major", [_result("busybox:1.37.0", "", ("1.38.0", "minor"))], []),  # catalogue literal
    ("minor", [updates.Outdated(updates.PinnedImage("x/y:1.0.0", "X_IMAGE", ()),
                                error="registry down")], []),
]


@pytest.mark.parametrize(("level", "results", "pins"), UPDATE_CASES)
def test_plan_update_takes_the_newest_tag_up_to_the_level(level, results, pins) -> None:  # type: ignore[no-untyped-def]
    changes = updates.plan_update(results, level)
    assert [(c.setting, c.new) for c in changes] == pins


def test_plan_update_follows_the_stack_and_image_filters() -> None:
    results = [_result("grafana/loki:3.7.0", "LOKI_IMAGE", ("3.7.1", "patch"))]
    assert updates.plan_update(results, "minor", only_stacks=["media"]) == []
    assert updates.plan_update(results, "minor", only_images=["grafana/loki"])
    assert updates.plan_update(results, "minor", only_images=["LOKI_IMAGE"])
    assert updates.plan_update(results, "minor", only_images=["TEMPO_IMAGE"]) == []


def test_render_pins_every_locked_image_to_its_digest(tmp_path: Path) -> None:
    project = load(tmp_path)
    pins = updates.pinned_images(project)
    loki = next(p for p in pins if p.setting == "LOKI_IMAGE")
    updates.write_lock(project.config.env_dir, {loki.reference: DIGEST})
    compose = yaml.safe_load(render_stacks(project, ["monitoring"], write=False)[
        "monitoring"].files["compose.yaml"])
    assert compose["services"]["loki"]["image"] == f"{loki.reference}@{DIGEST}"
    assert "@" not in compose["services"]["grafana"]["image"]  # not locked: the tag
    problems = updates.lock_problems(updates.read_lock(project.config.env_dir), pins)
    assert f"{pins[0].reference} has no digest in the lock" in problems


@pytest.mark.parametrize("text", [
    "images: [a, b]\n",
    "images:\n  'nginx:1.28.0': 'sha256:short'\n",
    "images:\n  'nginx:1.28.0@sha256:" + "a" * 64 + "': '" + DIGEST + "'\n",
    "images: {}\nextra: 1\n",
])
def test_a_hand_edited_lock_is_an_error_naming_the_file(tmp_path: Path, text: str) -> None:
    (tmp_path / updates.LOCK_FILE).write_text(text)
    with pytest.raises(ConfigError) as bad:
        updates.read_lock(tmp_path)
    assert bad.value.problems[0].file.endswith("images.lock")
    assert "pins.lock" in bad.value.problems[0].fix


def test_pins_env_holds_image_pins_only(tmp_path: Path) -> None:
    env = tmp_path / "env"
    env.mkdir()
    (env / "defaults.env").write_text((PROJECT_ROOT / "env" / "defaults.env").read_text())
    (env / "pins.env").write_text("LOKI_IMAGE=grafana/loki:3.7.1\n")
    config = load_config(PROJECT_ROOT, None, {}, env_dir=env)
    assert config["LOKI_IMAGE"] == "grafana/loki:3.7.1"
    assert config.settings["LOKI_IMAGE"].source == "pins"
    (env / "pins.env").write_text("DOMAIN=evil.example\n")
    with pytest.raises(ConfigError, match="only image pins"):
        load_config(PROJECT_ROOT, None, {}, env_dir=env)
