"""Basic auth at Traefik for the registry's /v2/: a real bcrypt check of what is rendered."""

from __future__ import annotations

from pathlib import Path

import bcrypt
import pytest
import yaml

from infra import basicauth
from infra.render import render_stacks
from tests.support.rendering import load

pytestmark = pytest.mark.unit


def test_the_hash_checks_the_password_and_no_other() -> None:
    hashed = basicauth.bcrypt_hash("s3cretPassw0rd", "zot-api-basic").encode()
    assert hashed.startswith(b"$2b$10$")
    assert bcrypt.checkpw(b"s3cretPassw0rd", hashed)
    assert not bcrypt.checkpw(b"s3cretPassw0rD", hashed)


def test_the_hash_is_stable_per_password_and_router() -> None:
    # a fixed render must not rewrite Traefik's file (and reload it) on every run
    assert basicauth.bcrypt_hash("a" * 32, "r") == basicauth.bcrypt_hash("a" * 32, "r")
    assert basicauth.bcrypt_hash("a" * 32, "r") != basicauth.bcrypt_hash("a" * 32, "s")
    assert basicauth.bcrypt_hash("a" * 32, "r") != basicauth.bcrypt_hash("b" * 32, "r")


def test_the_registry_api_needs_the_pull_login(tmp_path: Path) -> None:
    project = load(tmp_path)
    results = render_stacks(project, ["traefik", "zot"], write=False)
    labels = yaml.safe_load(results["zot"].files["compose.yaml"])["services"]["zot"]["labels"]
    assert labels["traefik.http.routers.zot-api.middlewares"] == "zot-api-basic@file"
    dynamic = yaml.safe_load(results["traefik"].files["dynamic/stackyard.yml"])
    options = dynamic["http"]["middlewares"]["zot-api-basic"]["basicAuth"]
    [entry] = options["users"]
    user, hashed = entry.split(":")
    password = project.config.secrets["REGISTRY_PULL_PASSWORD"]
    assert user == project.config["REGISTRY_PULL_USER"]
    assert bcrypt.checkpw(password.encode(), hashed.encode())
    assert options["removeHeader"] is True
    for result in results.values():
        for text in result.files.values():
            assert password not in text
