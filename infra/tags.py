"""Image tags as versions: which tags are newer than a pin, and by how much.

Three schemes, read from the pin itself, and a candidate tag counts only when it has the
pin's scheme and shape (a pin on ``1.28.0-alpine`` is compared with ``1.29.1-alpine``, never
with ``1.29.1`` or ``mainline``):

- **semver-like**: ``[v]MAJOR.MINOR[.PATCH[.BUILD]][-suffix]`` (Traefik, Grafana, Postgres,
  nginx, Zot, Seerr ...). The suffix must be the pin's (``-alpine``), so pre-releases
  (``-rc1``) and other variants never count as updates.
- **linuxserver**: ``<upstream version>-lsNNN``: the upstream version compares first, then
  the build number; a new build of the same upstream version is a patch.
- **MinIO**: ``RELEASE.YYYY-MM-DDTHH-MM-SSZ``: newer by date. The scheme has no major and
  minor versions: a later release in the same year is a ``minor`` change, one in a later
  year ``major`` (MinIO makes no compatibility promise between releases; read their notes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

PATCH, MINOR, MAJOR = "patch", "minor", "major"
LEVELS = (PATCH, MINOR, MAJOR)

_SEMVER = re.compile(r"^(?P<v>v?)(?P<nums>\d+(?:\.\d+){1,3})(?P<suffix>-[A-Za-z][\w.-]*)?$")
_LSIO = re.compile(r"^(?P<v>v?)(?P<nums>\d+(?:\.\d+)*)(?P<mid>(?:-[\w.]+?)*)-ls(?P<build>\d+)$")
_MINIO = re.compile(r"^RELEASE\.(?P<date>\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z)$")


@dataclass(frozen=True)
class Version:
    scheme: str  # semver | linuxserver | release
    key: tuple[int, ...]  # compared in order
    shape: str  # what a candidate must share with the pin (prefix, suffix, length)

    @property
    def major(self) -> int:
        return self.key[0]


def tag_of(reference: str) -> str:
    """The tag of an image reference ('' when it has none)."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


def version_of(reference: str) -> Version | None:
    """The version an image reference's tag stands for (None: no tag, or of no scheme)."""
    return parse_tag(tag_of(reference))


def parse_tag(tag: str) -> Version | None:
    """The version a tag stands for; None for a tag of no known scheme."""
    if not tag:
        return None
    if m := _MINIO.match(tag):
        date = re.findall(r"\d+", m["date"])
        return Version("release", tuple(int(x) for x in date), "RELEASE")
    if m := _LSIO.match(tag):
        nums = tuple(int(x) for x in m["nums"].split("."))
        return Version("linuxserver", (*nums, int(m["build"])),
                       f"{m['v']}|{len(nums)}|{_mid_shape(m['mid'])}")
    if m := _SEMVER.match(tag):
        nums = tuple(int(x) for x in m["nums"].split("."))
        return Version("semver", nums, f"{m['v']}|{len(nums)}|{m['suffix'] or ''}")
    return None


def _mid_shape(mid: str) -> str:
    """linuxserver's middle part (``-f737b826c`` build hashes, ``-r2`` revisions): its shape."""
    return re.sub(r"\d+", "N", re.sub(r"[0-9a-f]{7,}", "H", mid))


def level(old: Version, new: Version) -> str:
    """How far ``new`` moves from ``old``: patch, minor or major."""
    if old.scheme == "release":
        return MINOR if new.key[0] == old.key[0] else MAJOR
    if new.key[0] != old.key[0]:
        return MAJOR
    if old.scheme == "linuxserver":
        upstream_old, upstream_new = old.key[:-1], new.key[:-1]
        if upstream_old == upstream_new:
            return PATCH  # a new linuxserver build of the same upstream version
        return MINOR if len(old.key) > 2 and new.key[1] != old.key[1] else PATCH
    return MINOR if len(old.key) > 1 and new.key[1] != old.key[1] else PATCH


@dataclass(frozen=True)
class Newer:
    tag: str
    level: str


def newer_tags(pin: str, tags: Iterable[str]) -> list[Newer]:
    """The tags newer than ``pin`` (a tag) in its scheme and shape, oldest first."""
    base = parse_tag(pin)
    if base is None:
        return []
    found = []
    for tag in tags:
        version = parse_tag(tag)
        if (version is None or version.scheme != base.scheme or version.shape != base.shape
                or version.key <= base.key):
            continue
        found.append((version.key, Newer(tag, level(base, version))))
    return [newer for _, newer in sorted(found)]


def highest(newer: Iterable[Newer], up_to: str) -> Newer | None:
    """The newest of ``newer`` whose level is at most ``up_to`` (patch < minor < major)."""
    allowed = LEVELS[:LEVELS.index(up_to) + 1]
    chosen = [n for n in newer if n.level in allowed]
    return chosen[-1] if chosen else None
