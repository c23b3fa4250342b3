"""A local registry (Debian's docker-registry) on 127.0.0.1: the tests' IMAGE_MIRROR.

The seed pulls every image through its Zot pull-through cache at localhost:5000; the tests do
the same through this registry (on another port: the Zot double publishes 5000). 127.0.0.0/8
is an insecure registry by default, so the engine pushes and pulls over plain HTTP. A pull of
anything not pushed here fails at once with "manifest unknown" (no upstream is configured).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Registry:
    address: str  # host:port, the IMAGE_MIRROR value
    root: Path
    pid: int


def free_port(avoid: tuple[int, ...] = (5000,)) -> int:
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in avoid:
            return port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def local_registry(root: Path, port: int | None = None, netns_path: str = "",
                   config_dir: Path | None = None) -> Iterator[Registry]:
    """Serve ``root`` (kept across runs: pushes of cached images are then no-ops).

    With ``netns_path`` the registry listens on 127.0.0.1 inside that network namespace, so a
    private engine there uses the same IMAGE_MIRROR address; it may share ``root`` with a
    registry in the main namespace (the filesystem driver is safe for readers).
    """
    port = port or free_port()
    root.mkdir(parents=True, exist_ok=True)
    config_dir = config_dir or root.parent
    config = config_dir / f"registry-{port}{'-ns' if netns_path else ''}.yml"
    config.write_text(f"version: 0.1\nlog: {{level: warn}}\n"
                      f"storage: {{filesystem: {{rootdirectory: {root}}}}}\n"
                      f"http: {{addr: 127.0.0.1:{port}}}\n")
    argv = ["docker-registry", "serve", str(config)]
    if netns_path:
        argv = ["nsenter", f"--net={netns_path}", *argv]
    log = (config_dir / f"registry-{port}.log").open("ab")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"docker-registry exited; see {log.name}")
            if netns_path:
                probe = subprocess.run(["nsenter", f"--net={netns_path}", "busybox", "wget",
                                        "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}/v2/"],
                                       capture_output=True)
                if probe.returncode == 0:
                    break
            elif _answers(f"http://127.0.0.1:{port}/v2/"):
                break
            time.sleep(0.1)
        else:
            raise TimeoutError("docker-registry did not answer /v2/")
        yield Registry(f"127.0.0.1:{port}", root, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def push_tag(address: str, repository: str, tag: str, content: str) -> str:
    """Push a minimal image (one config blob, no layers) as ``repository:tag`` over the
    registry's HTTP API, no engine needed; ``content`` makes it unique. Returns its digest
    (what the registry answers for the tag)."""
    import hashlib
    import json

    def upload(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = urllib.request.Request(f"http://{address}/v2/{repository}/blobs/uploads/",
                                       method="POST")
        with urllib.request.urlopen(start, timeout=10) as answer:
            location = answer.headers["Location"]
        if location.startswith("/"):
            location = f"http://{address}{location}"
        joiner = "&" if "?" in location else "?"
        put = urllib.request.Request(f"{location}{joiner}digest={digest}", data=data,
                                     method="PUT",
                                     headers={"Content-Type": "application/octet-stream"})
        urllib.request.urlopen(put, timeout=10).close()
        return digest

    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": []},
                         "history": [{"comment": content}]}).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": len(config), "digest": upload(config)},
        "layers": []}).encode()
    put = urllib.request.Request(
        f"http://{address}/v2/{repository}/manifests/{tag}", data=manifest, method="PUT",
        headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(put, timeout=10) as answer:
        return str(answer.headers["Docker-Content-Digest"])
