"""Inventory parsing and validation (env/inventory.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.errors import ConfigError
from infra.inventory import load_inventory, parse_inventory

pytestmark = pytest.mark.unit
STACKS = ["traefik", "auth", "minio", "zot", "monitoring", "media"]
SETTINGS = ["DATA_ROOT", "DOCKER_SOCKET", "ROOTLESS", "DOMAIN", "GRAFANA_PORT"]


def parse(text: str):
    return parse_inventory(yaml.safe_load(text), "env/inventory.yaml", STACKS, SETTINGS)


def test_example_inventory_is_valid(project_root: Path) -> None:
    doc = yaml.safe_load((project_root / "env" / "inventory.example.yaml").read_text())
    inventory = parse_inventory(doc, "example", STACKS, SETTINGS)
    media = inventory.hosts["media-box"]
    assert media.rootless and media.stacks == ("media",)
    assert media.overrides() == {"DOCKER_SOCKET": "/run/user/1000/docker.sock",
                                 "ROOTLESS": "true", "DATA_ROOT": "/srv/data"}
    placement = inventory.placement(STACKS)
    assert placement["media"] == "media-box" and placement["monitoring"] == "monitor-box"
    assert placement["traefik"] == ""  # placed nowhere: local


def test_absent_inventory_is_empty(tmp_path: Path) -> None:
    assert load_inventory(tmp_path, STACKS, SETTINGS).hosts == {}


def test_find_by_name_or_address() -> None:
    inventory = parse("hosts:\n  a:\n    address: 10.77.0.2\n")
    assert inventory.find("a") is inventory.find("10.77.0.2") is inventory.hosts["a"]
    assert inventory.find("nope") is None


@pytest.mark.parametrize(("text", "words"), [
    ("hosts:\n  a:\n    adress: 10.0.0.1\n", "did you mean address"),
    ("hosts:\n  a:\n    user: x\n", "has no address"),
    ("hosts:\n  a:\n    address: 'not an address!'\n", "neither an IP nor a host name"),
    ("hosts:\n  a:\n    address: h\n    port: 99999\n", "not a TCP port"),
    ("hosts:\n  a:\n    address: h\n    docker_socket: run/docker.sock\n", "absolute path"),
    ("hosts:\n  a:\n    address: h\n    stacks: [medai]\n", "did you mean media"),
    ("hosts:\n  a:\n    address: h\n    stacks: [media]\n  b:\n    address: g\n"
     "    stacks: [media]\n", "also placed on a"),
    ("hosts:\n  a:\n    address: h\n    settings: {DATAROOT: /x}\n", "did you mean DATA_ROOT"),
    ("hosts:\n  a:\n    address: h\n    settings: {GRAFANA_PORT: '0'}\n", "not a TCP port"),
    ("servers: {}\n", "unknown top-level"),
    ("hosts: [a, b]\n", "expected a mapping"),
])
def test_bad_inventory_names_the_problem(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert words in str(caught.value)
    assert all(problem.fix for problem in caught.value.problems)


def test_invalid_yaml_points_at_the_line(tmp_path: Path) -> None:
    (tmp_path / "inventory.yaml").write_text("hosts:\n  a:\n    address: [unclosed\n")
    with pytest.raises(ConfigError, match=r"inventory.yaml:\d"):
        load_inventory(tmp_path, STACKS, SETTINGS)
