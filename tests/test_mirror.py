"""The IMAGE_MIRROR rewrite rule (infra/mirror.py)."""

from __future__ import annotations

import pytest

from infra.errors import ConfigError
from infra.mirror import mirror_image, mirrored_registries, split_image

pytestmark = pytest.mark.unit

CASES = [
    ("busybox:1.37.0", "localhost:5000/docker/library/busybox:1.37.0"),
    ("docker.io/library/busybox:1.37.0", "localhost:5000/docker/library/busybox:1.37.0"),
    ("index.docker.io/busybox:1.37.0", "localhost:5000/docker/library/busybox:1.37.0"),
    ("grafana/loki:3.7.0", "localhost:5000/docker/grafana/loki:3.7.0"),
    ("ghcr.io/goauthentik/server:2025.12.4", "localhost:5000/ghcr/goauthentik/server:2025.12.4"),
    ("gcr.io/cadvisor/cadvisor:v0.49.1", "localhost:5000/gcr/cadvisor/cadvisor:v0.49.1"),
    ("quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z",
     "localhost:5000/quay/minio/mc:RELEASE.2025-08-13T08-35-41Z"),
    ("registry.k8s.io/pause:3.10", "localhost:5000/k8s/pause:3.10"),
    ("lscr.io/linuxserver/plex:1.42.2", "localhost:5000/lscr/linuxserver/plex:1.42.2"),
    ("nginx@sha256:" + "a" * 64, "localhost:5000/docker/library/nginx@sha256:" + "a" * 64),
]


@pytest.mark.parametrize(("ref", "expected"), CASES)
def test_rewrites_through_the_mirror(ref: str, expected: str) -> None:
    assert mirror_image(ref, "localhost:5000") == expected


@pytest.mark.parametrize(("ref", "_expected"), CASES)
def test_identity_without_a_mirror(ref: str, _expected: str) -> None:
    assert mirror_image(ref, "") == ref


def test_an_image_already_on_the_mirror_is_kept() -> None:
    assert mirror_image("localhost:5000/myapp:1.0", "localhost:5000") == "localhost:5000/myapp:1.0"


def test_unknown_registry_is_an_error_naming_the_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        mirror_image("registry.example.org/team/app:1.0", "localhost:5000")
    assert "IMAGE_MIRROR" in str(caught.value)
    assert "stacks/zot/registries.yaml" in str(caught.value)


def test_split_follows_the_docker_rule() -> None:
    assert split_image("localhost/app:1") == ("localhost", "app:1")
    assert split_image("host:5000/app:1") == ("host:5000", "app:1")
    assert split_image("library/busybox:1") == ("docker.io", "library/busybox:1")


def test_prefixes_match_the_seed() -> None:
    prefixes = {m.registry: m.prefix for m in mirrored_registries()}
    assert prefixes == {"docker.io": "docker", "ghcr.io": "ghcr", "gcr.io": "gcr",
                        "quay.io": "quay", "registry.k8s.io": "k8s", "lscr.io": "lscr"}


@pytest.mark.parametrize("text, said", [
    ("registries: []\n", "has no list of registries"),
    ("registries:\n  - {registry: quay.io, prefix: quay}\n", "is not {registry, prefix, url}"),
    ("registries:\n  - {registry: quay.io, prefix: 'q/../x', url: 'https://quay.io'}\n",
     "is not a registry host, a path prefix and an https URL"),
    ("registries:\n  - {registry: quay.io, prefix: quay, url: 'http://quay.io'}\n",
     "an https URL"),
    ("registries:\n  - {registry: quay.io, prefix: quay, url: 'https://quay.io'}\n"
     "  - {registry: quay.io, prefix: q2, url: 'https://quay.io'}\n", "given twice"),
])
def test_a_bad_registry_table_is_an_error_with_its_file(tmp_path, text: str, said: str) -> None:
    table = tmp_path / "registries.yaml"
    table.write_text(text)
    with pytest.raises(ConfigError) as caught:
        mirrored_registries(table)
    assert said in str(caught.value) and str(table) in str(caught.value)
