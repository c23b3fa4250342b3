"""The registry client against the real Debian registry, and against a hostile one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.registryclient import Client, RegistryError, Repository, repository_of
from infra.updates import Lock, PinnedImage, check_outdated, moved_tags, resolve_lock
from tests.conftest import require_program
from tests.support import registry


def test_where_an_image_is_asked_for() -> None:
    assert repository_of("nginx:1.28.0-alpine") == Repository(
        "https://registry-1.docker.io", "library/nginx", "docker.io")
    assert repository_of("quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z") == Repository(
        "https://quay.io", "minio/minio", "quay.io")
    assert repository_of("grafana/loki:3.7.0", "127.0.0.1:5000") == Repository(
        "http://127.0.0.1:5000", "docker/grafana/loki", "127.0.0.1:5000")


@pytest.mark.tools
def test_tags_and_digests_from_a_real_registry(tmp_path: Path) -> None:
    """Several tags of one image pushed: outdated sees the newer ones at their levels, the
    lock resolves digests, and a tag pushed again with new content is caught."""
    require_program("docker-registry")
    with registry.local_registry(tmp_path / "root", config_dir=tmp_path) as reg:
        repo = "docker/grafana/loki"
        digests = {tag: registry.push_tag(reg.address, repo, tag, tag)
                   for tag in ("3.7.0", "3.7.1", "3.8.0", "4.0.0", "4.0.0-rc1", "main")}
        pin = PinnedImage("grafana/loki:3.7.0", "LOKI_IMAGE", ("monitoring",))
        gone = PinnedImage("grafana/nosuch:1.0.0", "", ("x",))
        client = Client()
        results = check_outdated([pin, gone], client, reg.address)
        assert [(n.tag, n.level) for n in results[0].newer] == [
            ("3.7.1", "patch"), ("3.8.0", "minor"), ("4.0.0", "major")]
        assert results[1].error and "not found" in results[1].error  # per image, no crash
        resolved, errors = resolve_lock([pin], client, reg.address)
        assert resolved == {"grafana/loki:3.7.0": digests["3.7.0"]} and not errors
        lock = Lock(dict(resolved))
        assert lock.pinned("grafana/loki:3.7.0") == f"grafana/loki:3.7.0@{digests['3.7.0']}"
        moved = registry.push_tag(reg.address, repo, "3.7.0", "rebuilt under the same tag")
        again, _ = resolve_lock([pin], client, reg.address)
        assert moved_tags(lock, again) == [("grafana/loki:3.7.0", digests["3.7.0"], moved)]
    down = check_outdated([pin], Client(), reg.address)  # the registry is gone now
    assert down[0].error.startswith("127.0.0.1:") and "cannot reach" in down[0].error


class Hostile:
    """A registry that answers what a test tells it to (status, headers, body) per URL part."""

    def __init__(self, answers: dict[str, tuple[int, dict[str, str], bytes]]):
        self.answers, self.asked = answers, []

    def __call__(self, request):  # type: ignore[no-untyped-def]
        self.asked.append((request.full_url, dict(request.header_items())))
        for part, answer in self.answers.items():
            if part in request.full_url:
                return answer
        return 404, {}, b""


REPO = Repository("https://r.example", "a/b", "r.example")


@pytest.mark.parametrize(("answer", "says"), [
    ((200, {}, b"not json"), "not JSON"),
    ((200, {}, json.dumps({"tags": "x"}).encode()), "no list 'tags'"),
    ((500, {}, b""), "HTTP 500"),
    ((403, {}, b""), "refused anonymous access"),
    ((200, {"Link": '<https://evil.example/v2/a/b/tags/list?last=x>; rel="next"'},
      json.dumps({"tags": ["1.0.0"]}).encode()), "outside the registry"),
    ((401, {"WWW-Authenticate": 'Bearer realm="http://evil.example/token"'}, b""),
     "is not https"),
])
def test_a_hostile_registry_is_an_error_for_that_image(answer, says) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RegistryError, match=says):
        Client(Hostile({"/tags/list": answer})).tags(REPO)


def test_a_token_challenge_is_answered_once_and_tags_are_paged() -> None:
    fetch = Hostile({
        "token?": (200, {}, json.dumps({"token": "t0k"}).encode()),
        "last=b": (200, {}, json.dumps({"tags": ["c", "../../etc"]}).encode()),
    })
    first = {"calls": 0}

    def registry(request):  # type: ignore[no-untyped-def]
        if "/tags/list" in request.full_url and "last=" not in request.full_url:
            first["calls"] += 1
            if request.get_header("Authorization") != "Bearer t0k":
                return 401, {"WWW-Authenticate": 'Bearer realm="https://auth.example/token",'
                                                 'service="r",scope="repository:a/b:pull"'}, b""
            return 200, {"Link": '</v2/a/b/tags/list?n=1000&last=b>; rel="next"'}, \
                json.dumps({"tags": ["a", "b"]}).encode()
        return fetch(request)

    assert Client(registry).tags(REPO) == ["a", "b", "c"]  # a tag of no valid shape dropped
    assert first["calls"] == 2
