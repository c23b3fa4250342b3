"""Registry tasks against a real registry (Debian's docker-registry stands in for Zot)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from infra.errors import InfraError
from infra.registry import (
    Endpoint,
    curl,
    parse_catalog,
    parse_search,
    pull_reference,
    search_body,
)
from tests.support.images import docker, ensure_busybox_base
from tests.support.registry import local_registry

ENGINE = ("docker",)


def invoke(project_root: Path, env_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "INFRA_ENV_DIR": str(env_dir), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=project_root,
                          env=environ, capture_output=True, text=True, timeout=180)


@pytest.mark.unit
def test_pull_reference_uses_the_seed_prefixes() -> None:
    endpoint = Endpoint("localhost:5000")
    assert pull_reference("nginx:1.27", endpoint) == "localhost:5000/docker/library/nginx:1.27"
    assert pull_reference("ghcr.io/project-zot/zot-linux-amd64:v2.1.5", endpoint) == \
        "localhost:5000/ghcr/project-zot/zot-linux-amd64:v2.1.5"
    assert pull_reference("gcr.io/cadvisor/cadvisor:v0.52.0", endpoint) == \
        "localhost:5000/gcr/cadvisor/cadvisor:v0.52.0"
    assert pull_reference("quay.io/coreos/etcd:v3.5", endpoint) == \
        "localhost:5000/quay/coreos/etcd:v3.5"
    assert pull_reference("registry.k8s.io/pause:3.9", endpoint) == "localhost:5000/k8s/pause:3.9"


@pytest.mark.unit
def test_tls_endpoint_trusts_our_ca() -> None:
    command = curl(Endpoint("localhost:5000", "https", "/x/ca.pem"), "/v2/")
    assert "--cacert /x/ca.pem" in command and "https://localhost:5000/v2/" in command


@pytest.mark.unit
def test_search_is_graphql_and_parses_zot_answers() -> None:
    body = json.loads(search_body('ng"inx'))
    assert body["query"].startswith('{ GlobalSearch(query: "ng\\"inx")')
    answer = {"data": {"GlobalSearch": {"Repos": [
        {"Name": "docker/library/nginx", "NewestImage": {"Tag": "1.27"}}]}}}
    assert parse_search(json.dumps(answer)) == [("docker/library/nginx", "1.27")]
    with pytest.raises(InfraError, match="search failed"):
        parse_search(json.dumps({"errors": [{"message": "search extension disabled"}]}))


@pytest.mark.unit
def test_non_json_answer_is_a_clear_error() -> None:
    with pytest.raises(InfraError, match="not JSON"):
        parse_catalog("<html>502 Bad Gateway</html>")


@pytest.mark.engine
def test_catalog_tags_manifest_and_pull_through_prefixes(docker_engine: str, tmp_path: Path,
                                                         project_root: Path,
                                                         env_dir: Path) -> None:
    base = ensure_busybox_base(ENGINE)
    tag = f"t{uuid.uuid4().hex[:8]}"
    with local_registry(tmp_path / "registry") as registry:
        mirrored = f"{registry.address}/docker/library/busybox:{tag}"
        docker(ENGINE, "tag", base, mirrored)
        docker(ENGINE, "push", mirrored)
        docker(ENGINE, "rmi", mirrored)
        try:
            listed = invoke(project_root, env_dir, "registry.catalog", "--registry",
                            registry.address)
            assert listed.returncode == 0, listed.stderr
            assert "docker/library/busybox" in listed.stdout.split()

            tags = invoke(project_root, env_dir, "registry.tags", "docker/library/busybox",
                          "--registry", registry.address)
            assert tags.stdout.split() == [tag]

            shown = invoke(project_root, env_dir, "registry.manifest", "docker/library/busybox",
                           "--reference", tag, "--registry", registry.address)
            assert shown.returncode == 0, shown.stderr
            assert json.loads(shown.stdout)["schemaVersion"] == 2

            pulled = invoke(project_root, env_dir, "registry.pull", f"busybox:{tag}",
                            "--registry", registry.address)
            assert pulled.returncode == 0, pulled.stderr
            assert docker(ENGINE, "image", "inspect", mirrored, check=False).returncode == 0

            missing = invoke(project_root, env_dir, "registry.tags", "docker/library/nope",
                             "--registry", registry.address)
            assert missing.returncode != 0
            assert "Traceback" not in missing.stderr
        finally:
            docker(ENGINE, "rmi", mirrored, check=False)
