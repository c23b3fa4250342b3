"""Image references rewritten through a pull-through mirror (the Zot registry).

Rule: ``<registry>/<path>:<tag>`` becomes ``<MIRROR>/<prefix>/<path>:<tag>``, the prefix taken
from the table in ``stacks/zot/registries.yaml`` (data, read and validated here). Docker Hub
references are normalised first, the way the docker CLI does: ``busybox:1.37.0`` is
``docker.io/library/busybox:1.37.0``, so it becomes ``MIRROR/docker/library/busybox:1.37.0``;
Zot's sync entry for ``/docker`` (content prefix ``**``) maps that back to
``docker.io/library/busybox``. An image already on the mirror is kept as is; an image from a
registry without a prefix is an error (add it to the table, and Zot syncs it too:
templates/zot builds its sync list from this table).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, Problem

REGISTRIES_FILE = Path(__file__).resolve().parents[1] / "stacks" / "zot" / "registries.yaml"


@dataclass(frozen=True)
class MirroredRegistry:
    registry: str  # host as written in image references
    prefix: str  # path on the mirror
    url: str  # upstream URL Zot syncs from


HOST_RE = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?")
PREFIX_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


@functools.lru_cache(maxsize=4)
def mirrored_registries(path: Path = REGISTRIES_FILE) -> tuple[MirroredRegistry, ...]:
    """The table, validated: every entry a registry host, a path prefix and an https URL,
    no registry or prefix twice."""
    from .yamlfile import read_yaml

    where = str(path)
    doc = read_yaml(path)
    entries = doc.get("registries") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(Problem("has no list of registries", file=where, key="registries",
                                  fix="registries: [{registry: docker.io, prefix: docker, "
                                      "url: https://registry-1.docker.io}]"))
    found: list[MirroredRegistry] = []
    problems = []
    for index, entry in enumerate(entries):
        key = f"registries[{index}]"
        if not isinstance(entry, dict) or set(entry) != {"registry", "prefix", "url"}:
            problems.append(Problem("is not {registry, prefix, url}", file=where, key=key,
                                    fix="give exactly registry, prefix and url"))
            continue
        registry, prefix, url = (str(entry[k]) for k in ("registry", "prefix", "url"))
        if not HOST_RE.fullmatch(registry) or not PREFIX_RE.fullmatch(prefix) \
                or not re.fullmatch(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?", url):
            problems.append(Problem(f"{registry!r}, {prefix!r}, {url!r} is not a registry "
                                    "host, a path prefix and an https URL", file=where,
                                    key=key, fix="e.g. {registry: quay.io, prefix: quay, "
                                                 "url: https://quay.io}"))
            continue
        if any(m.registry == registry or m.prefix == prefix for m in found):
            problems.append(Problem(f"{registry} or {prefix} is given twice", file=where,
                                    key=key, fix="one entry per registry and per prefix"))
            continue
        found.append(MirroredRegistry(registry, prefix, url))
    if problems:
        raise ConfigError(problems)
    return tuple(found)
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
    prefix = {m.registry: m.prefix for m in mirrored_registries()}.get(registry)
    if prefix is None:
        raise ConfigError(Problem(
            f"image {ref!r} comes from {registry}, which the mirror has no prefix for",
            key="IMAGE_MIRROR",
            fix=f"add {registry} to stacks/zot/registries.yaml (Zot then syncs it), "
                "or leave IMAGE_MIRROR empty"))
    return f"{mirror}/{prefix}/{path}"
