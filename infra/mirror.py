"""Image references rewritten through a pull-through mirror (the Zot registry).

Rule: ``<registry>/<path>:<tag>`` becomes ``<MIRROR>/<prefix>/<path>:<tag>``, the prefix taken
from ``MIRROR_REGISTRIES``. Docker Hub references are normalised first, the way the docker
CLI does: ``busybox:1.37.0`` is ``docker.io/library/busybox:1.37.0``, so it becomes
``MIRROR/docker/library/busybox:1.37.0``; Zot's sync entry for ``/docker`` (content prefix
``**``) maps that back to ``docker.io/library/busybox``. An image already on the mirror is
kept as is; an image from a registry without a prefix is an error (add it to the table, and
Zot syncs it too: templates/zot builds its sync list from this table).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError, Problem


@dataclass(frozen=True)
class MirroredRegistry:
    registry: str  # host as written in image references
    prefix: str  # path on the mirror
    url: str  # upstream URL Zot syncs from


MIRROR_REGISTRIES: tuple[MirroredRegistry, ...] = (
    MirroredRegistry("docker.io", "docker", "https://registry-1.docker.io"),
    MirroredRegistry("ghcr.io", "ghcr", "https://ghcr.io"),
    MirroredRegistry("gcr.io", "gcr", "https://gcr.io"),
    MirroredRegistry("quay.io", "quay", "https://quay.io"),
    MirroredRegistry("registry.k8s.io", "k8s", "https://registry.k8s.io"),
    MirroredRegistry("lscr.io", "lscr", "https://lscr.io"),
)
MIRROR_PREFIXES: dict[str, str] = {m.registry: m.prefix for m in MIRROR_REGISTRIES}
DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}


def split_image(ref: str) -> tuple[str, str]:
    """``(registry, path[:tag][@digest])`` with Docker Hub's implicit parts made explicit."""
    first, sep, rest = ref.partition("/")
    # The docker rule: the first component is a registry when it has a dot or a port, or is
    # "localhost"; otherwise the whole reference is a Docker Hub repository.
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = "docker.io", ref
    if registry in DOCKER_HUB_ALIASES:
        registry = "docker.io"
        if "/" not in path:
            path = f"library/{path}"
    return registry, path


def mirror_image(ref: str, mirror: str) -> str:
    """``ref`` pulled through ``mirror``; identity when ``mirror`` is empty."""
    mirror = mirror.strip().rstrip("/")
    if not mirror:
        return ref
    if ref.startswith(f"{mirror}/"):
        return ref
    registry, path = split_image(ref)
    prefix = MIRROR_PREFIXES.get(registry)
    if prefix is None:
        raise ConfigError(Problem(
            f"image {ref!r} comes from {registry}, which the mirror has no prefix for",
            key="IMAGE_MIRROR",
            fix=f"add {registry} to MIRROR_REGISTRIES in infra/mirror.py (Zot then syncs it), "
                "or leave IMAGE_MIRROR empty"))
    return f"{mirror}/{prefix}/{path}"
