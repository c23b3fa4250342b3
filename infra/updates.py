"""Pinned images and what their registries offer: ``outdated``, ``update`` and the digest lock.

A pin is an ``*_IMAGE`` setting (what ``update`` can change, in a profile) or an image
written in a stack's catalogue entry (changed there, by hand). For each, the registry's tags
(infra.registryclient) are read as versions of the pin's own scheme (infra.tags).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .tags import LEVELS, Newer, highest, newer_tags, tag_of

if TYPE_CHECKING:
    from .project import Project
    from .registryclient import Client


@dataclass(frozen=True)
class PinnedImage:
    reference: str  # as pinned (tag, maybe @digest)
    setting: str  # the *_IMAGE setting that pins it ('' : written in the catalogue)
    stacks: tuple[str, ...]  # the stacks that run it ('' for the helper image)


@dataclass(frozen=True)
class Outdated:
    image: PinnedImage
    newer: tuple[Newer, ...] = ()
    error: str = ""

    def best(self, level: str) -> Newer | None:
        return highest(self.newer, level)


def pinned_images(project: Project) -> list[PinnedImage]:
    """Every pinned image: the *_IMAGE settings, then the catalogue's own literals."""
    config = project.config
    users: dict[str, set[str]] = {}
    for stack in project.catalogue.stacks.values():
        for service in stack.services:
            users.setdefault(service.image, set()).add(stack.name)
    found = []
    settings = {key: config[key] for key in config.settings
                if key.endswith("_IMAGE") and config.get(key)}
    for key, value in sorted(settings.items()):
        found.append(PinnedImage(value, key, tuple(sorted(users.get(value, ())))))
    for image, stacks in sorted(users.items()):
        if image not in settings.values():
            found.append(PinnedImage(image, "", tuple(sorted(stacks))))
    return found


def check_outdated(images: Iterable[PinnedImage], client: Client, mirror: str = ""
                   ) -> list[Outdated]:
    """For each image, the newer tags of its scheme; a registry's failure stays that image's."""
    from .registryclient import RegistryError, repository_of  # the network: only when asked

    results = []
    for image in images:
        try:
            tags = client.tags(repository_of(image.reference, mirror))
        except RegistryError as exc:
            results.append(Outdated(image, error=str(exc)))
            continue
        results.append(Outdated(image, tuple(newer_tags(tag_of(image.reference), tags))))
    return results


# ---------------------------------------------------------------- update: new pins (pure)


@dataclass(frozen=True)
class PinChange:
    setting: str
    old: str
    new: str
    level: str
    stacks: tuple[str, ...]


def plan_update(results: Sequence[Outdated], level: str, only_stacks: Sequence[str] = (),
                only_images: Sequence[str] = ()) -> list[PinChange]:
    """The pins ``update`` writes: per *_IMAGE setting, the newest tag up to ``level``,
    limited to the images (settings or repositories) and stacks named."""
    if level not in LEVELS:
        raise ValueError(level)
    changes = []
    for result in results:
        image = result.image
        if not image.setting or result.error:
            continue
        if only_stacks and not set(only_stacks) & set(image.stacks):
            continue
        if only_images and not any(name in (image.setting, _repository(image.reference))
                                   for name in only_images):
            continue
        best = result.best(level)
        if best is None:
            continue
        new = with_tag(image.reference, best.tag)
        changes.append(PinChange(image.setting, image.reference, new, best.level, image.stacks))
    return changes


def with_tag(reference: str, tag: str) -> str:
    """``reference`` pinned to ``tag`` (a digest it had is dropped: it belonged to the old)."""
    name = reference.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    base = last.split(":", 1)[0]
    return f"{head}/{base}:{tag}" if head else f"{base}:{tag}"


def _repository(reference: str) -> str:
    return with_tag(reference, "x").rsplit(":", 1)[0]


# ---------------------------------------------------------------- the digest lock


@dataclass
class Lock:
    entries: dict[str, str] = field(default_factory=dict)  # pin -> digest

    def pinned(self, reference: str) -> str:
        """``reference`` as render uses it: ``tag@sha256:...`` when the lock has it."""
        digest = self.entries.get(reference)
        return f"{reference}@{digest}" if digest and "@" not in reference else reference


def lock_problems(lock: Lock, images: Sequence[PinnedImage]) -> list[str]:
    """Where the lock and the pins disagree: pins it lacks, entries no pin has."""
    pins = {i.reference for i in images if "@" not in i.reference}
    missing = sorted(pins - set(lock.entries))
    extra = sorted(set(lock.entries) - pins)
    problems = [f"{ref} has no digest in the lock" for ref in missing]
    problems += [f"{ref} is locked but no longer pinned" for ref in extra]
    return problems


def resolve_lock(images: Sequence[PinnedImage], client: Client, mirror: str = ""
                 ) -> tuple[dict[str, str], dict[str, str]]:
    """(pin -> digest, pin -> error) for every tag-pinned image."""
    from .registryclient import RegistryError, repository_of

    digests, errors = {}, {}
    for image in images:
        if "@" in image.reference:
            continue
        try:
            digests[image.reference] = client.digest(repository_of(image.reference, mirror),
                                                     tag_of(image.reference))
        except RegistryError as exc:
            errors[image.reference] = str(exc)
    return digests, errors


def moved_tags(lock: Lock, resolved: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(pin, locked digest, digest now) for every tag that points elsewhere than locked."""
    return [(ref, lock.entries[ref], now) for ref, now in sorted(resolved.items())
            if ref in lock.entries and lock.entries[ref] != now]


def as_rows(results: Sequence[Outdated]) -> list[tuple[Any, ...]]:
    """(image, setting, stacks, newest patch, newest minor, newest major, error)."""
    rows = []
    for result in results:
        best = {lvl: next((n.tag for n in reversed(result.newer) if n.level == lvl), "")
                for lvl in LEVELS}
        rows.append((result.image.reference, result.image.setting or "(catalogue)",
                     ", ".join(result.image.stacks) or "(helper)", *best.values(),
                     result.error))
    return rows


LOCK_FILE = "images.lock"
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
LOCK_HEADER = ("# The registry digest each pinned tag resolved to (invoke pins.lock); render pins\n"
               "# every image to tag@digest, so a tag moved upstream is never pulled silently.\n"
               "# Commit it. `invoke outdated` and `invoke update` keep it current.\n")


def lock_path(env_dir: Any) -> Any:
    return env_dir / LOCK_FILE


def read_lock(env_dir: Any) -> Lock:
    """``env/images.lock``, validated (absent: an empty lock; a hand-edited, broken one: an
    error naming the file, the entry and the fix)."""
    from pathlib import Path

    from .errors import ConfigError, Problem
    from .settings import IMAGE_RE

    path = Path(lock_path(env_dir))
    if not path.is_file():
        return Lock()
    from .yamlfile import read_yaml

    shown = str(path)
    document = read_yaml(path)
    entries = document.get("images") if isinstance(document, dict) else None
    fix = "run `invoke pins.lock` to write it again (or delete it to stop locking)"
    if not isinstance(entries, dict) or set(document) != {"images"}:
        raise ConfigError(Problem("is not a mapping 'images:' of pinned image -> digest",
                                  file=shown, fix=fix))
    problems = []
    for reference, digest in entries.items():
        if not (isinstance(reference, str) and IMAGE_RE.match(reference)
                and "@" not in reference and isinstance(digest, str)
                and DIGEST_RE.match(digest)):
            problems.append(Problem(f"{reference!r}: {digest!r} is not a pinned image and its "
                                    "sha256 digest", file=shown, key=f"images.{reference}",
                                    fix=fix))
    if problems:
        raise ConfigError(problems)
    return Lock({str(k): str(v) for k, v in entries.items()})


def write_lock(env_dir: Any, entries: Mapping[str, str]) -> bool:
    """Write the lock (sorted, atomic); True when it changed."""
    from pathlib import Path

    import yaml

    from .fsutil import atomic_write

    text = LOCK_HEADER + yaml.safe_dump({"images": dict(sorted(entries.items()))},
                                        default_flow_style=False, sort_keys=False)
    return atomic_write(Path(lock_path(env_dir)), text, 0o644)


_LOCKS: dict[tuple[str, int], Lock] = {}


def lock_of(env_dir: Any) -> Lock:
    """The lock as it is on disk now (read again only when the file changed)."""
    from pathlib import Path

    path = Path(lock_path(env_dir))
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return Lock()
    key = (str(path), stamp)
    if key not in _LOCKS:
        _LOCKS.clear()
        _LOCKS[key] = read_lock(env_dir)
    return _LOCKS[key]
