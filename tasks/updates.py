"""Image updates: what is newer (outdated), taking it safely (update), and the digest lock.

Thin: the registry client, tag schemes and pin changes are infra.registryclient, infra.tags
and infra.updates; the bring-up is up's (health-gated, with its automatic rollback).
"""

from __future__ import annotations

from typing import Any

from invoke import Collection, Exit

from ._common import console, infra_task, load

LEVEL_HELP = "how far an update may go: patch, minor or major (default: minor)"


def _client(project: Any) -> Any:
    from infra.registryclient import Client, http_fetch

    return Client(http_fetch(project.config.path("CERTS_DIR") / "ca.pem"))


@infra_task(iterable=["stack"], help={
    "stack": "only the images of this stack (repeatable)",
    "json": "print one JSON document: per image its newer tags with their levels, or the "
            "registry's error (infra/jsonout.py)",
})
def outdated(c, stack=None, json=False, profile=""):
    """For every pinned image, the newer tags its registry offers, marked patch/minor/major.

    Tags are read in each pin's own scheme (semver, linuxserver's -lsNNN, MinIO's RELEASE
    dates) and shape (a pin on -alpine only sees -alpine tags); through IMAGE_MIRROR when it
    is set. A registry that fails is reported for its images; the others are still listed.
    With env/images.lock, a tag that now resolves to another digest than locked is named.
    Exit 0 either way (it reports, it does not judge)."""
    from infra import updates

    project = load(profile, write=False)
    images = [i for i in updates.pinned_images(project)
              if not stack or set(stack) & set(i.stacks)]
    client, mirror = _client(project), project.config.get("IMAGE_MIRROR")
    results = updates.check_outdated(images, client, mirror)
    moved: list[tuple[str, str, str]] = []
    if updates.lock_path(project.config.env_dir).is_file():  # the lock, held against now
        lock = updates.read_lock(project.config.env_dir)
        moved = updates.moved_tags(lock, updates.resolve_lock(images, client, mirror)[0])
    if json:
        from infra import jsonout

        print(jsonout.document("outdated", images=[
            {"image": r.image.reference, "setting": r.image.setting,
             "stacks": list(r.image.stacks), "error": r.error,
             "newer": [{"tag": n.tag, "level": n.level} for n in r.newer]} for r in results],
            moved=[{"image": ref, "locked": old, "now": new} for ref, old, new in moved]))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Pinned images and newer tags")
    for header in ("image", "setting", "stacks", "patch", "minor", "major", "error"):
        table.add_column(header)
    for row in updates.as_rows(results):
        cells = [escape(str(x)) for x in row]
        if row[-1]:
            cells[-1] = f"[red]{cells[-1]}[/red]"
        table.add_row(*cells)
    console().print(table)
    current = sum(1 for r in results if not r.newer and not r.error)
    console().print(f"{current} of {len(results)} image(s) current; "
                    f"{sum(1 for r in results if r.error)} could not be checked")
    for reference, old, new in moved:
        console().print(f"[yellow]{escape(reference)} moved under the same tag: locked "
                        f"{old[:19]}..., the registry now has {new[:19]}... (pins.lock takes "
                        "it)[/yellow]", highlight=False)


@infra_task(iterable=["stack", "image"], help={
    "stack": "update only the images of this stack (repeatable)",
    "image": "update only this image: its setting (GRAFANA_IMAGE) or repository "
             "(grafana/grafana) (repeatable)",
    "level": LEVEL_HELP,
    "dry": "show the new pins (the file's diff) and stop; nothing written or pulled",
    "timeout": "seconds each stack may take to become healthy (default: HEALTH_TIMEOUT)",
}, interrupts="poll")
def update(c, stack=None, image=None, level="minor", dry=False, timeout=0, profile=""):
    """Move pins to the newest tags up to --level, then bring the affected stacks up.

    The new pins go into the active profile (env/<profile>.env), or env/pins.env when none is
    active (a layer over the defaults), written atomically after the diff is shown; the
    configuration must load with them before anything runs; env/images.lock follows when it
    exists. Then the affected stacks come up in dependency order, health-gated: a stack that
    fails goes back to its last healthy revision by itself, and the pins are put back too
    (exit 1). A pin past the version its image contract was verified at is named."""
    from infra import updates

    _on_this_machine(c)
    if level not in ("patch", "minor", "major"):
        raise Exit(f"error: --level: {level!r} is not patch, minor or major", code=2)
    project = load(profile, write=not dry)
    results = updates.check_outdated(updates.pinned_images(project), _client(project),
                                     project.config.get("IMAGE_MIRROR"))
    for failed in (r for r in results if r.error):
        console().print(f"[yellow]not checked: {failed.image.reference}: {failed.error}"
                        "[/yellow]", highlight=False)
    changes = updates.plan_update(results, level, list(stack or []), list(image or []))
    out = console()
    if not changes:
        out.print(f"nothing to update up to {level} level")
        return
    path = _pins_file(project)
    before = path.read_text(encoding="utf-8") if path.is_file() else ""
    from infra.envfile import with_values

    after = with_values(before, {ch.setting: ch.new for ch in changes})
    _show_diff(path, before, after, project.root)
    for change in changes:
        out.print(f"  {change.setting}: {change.level} ({', '.join(change.stacks) or 'helper'})",
                  markup=False, highlight=False)
    if dry:
        out.print("dry run: nothing written, nothing pulled")
        return
    lock_before = _write_pins(project, path, before, after, changes)
    _name_unverified_pins(project, [ch.setting for ch in changes])
    stacks = sorted({s for ch in changes for s in ch.stacks})
    if not stacks:
        return
    from ._common import load as reload
    from .lifecycle import bring_up

    try:
        bring_up(c, reload(profile), stacks, timeout=int(timeout), action="update")
    except Exit:
        _put_back(project, path, before, lock_before)
        out.print(f"the pins are put back in {path} (the update did not take)",
                  markup=False, highlight=False)
        raise


def _name_unverified_pins(project: Any, settings: list[str]) -> None:
    """config.check's word on the new pins: each past the tag its image contract was
    verified at is named, with what to re-verify (README: Bumping a pin)."""
    from infra.contracts import contracts_dir, load_contracts, pin_drift
    from infra.project import load_project

    config = load_project(project.config.profile or None, write=False).config
    for warning in pin_drift(load_contracts(contracts_dir(project.root)), config.public):
        if warning.key in settings:
            from rich.markup import escape

            console().print(f"[yellow]warning[/yellow]: {escape(str(warning))}",
                            highlight=False)


def _on_this_machine(c: Any) -> None:
    host = getattr(c, "host", None)
    if host:
        raise Exit(f"error: update changes this machine's pins and stacks; update here, then "
                   f"`fab -H {host} deploy` takes the new pins to {host}", code=2)


def _pins_file(project: Any) -> Any:
    from infra.config import PINS_FILE

    config = project.config
    return config.env_dir / (f"{config.profile}.env" if config.profile else PINS_FILE)


def _show_diff(path: Any, before: str, after: str, root: Any) -> None:
    import difflib

    try:
        shown = str(path.relative_to(root))
    except ValueError:
        shown = str(path)
    for line in difflib.unified_diff(before.splitlines(), after.splitlines(), shown, shown,
                                     lineterm="", n=0):
        colour = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
        from rich.markup import escape

        console().print(f"[{colour}]{escape(line)}[/{colour}]", highlight=False)


def _write_pins(project: Any, path: Any, before: str, after: str, changes: Any
                ) -> dict[str, str] | None:
    """Write the pins; the configuration must load with them (else they are put back, exit
    2); the lock follows when there is one. Returns the lock's entries before (None: none)."""
    from infra import updates
    from infra.errors import InfraError
    from infra.fsutil import atomic_write
    from infra.project import load_project

    config = project.config
    atomic_write(path, after, 0o644)
    try:
        load_project(config.profile or None, write=False)  # config.check's reading
    except InfraError as exc:
        _put_back(project, path, before, None)
        raise Exit(f"error: with the new pins the configuration does not load, so they are "
                   f"put back: {exc}", code=2) from None
    lock_path = updates.lock_path(config.env_dir)
    if not lock_path.is_file():
        return None
    lock = updates.read_lock(config.env_dir)
    images = [updates.PinnedImage(ch.new, ch.setting, ch.stacks) for ch in changes]
    digests, errors = updates.resolve_lock(images, _client(project), config.get("IMAGE_MIRROR"))
    if errors:
        _put_back(project, path, before, None)
        raise Exit("error: the new pins could not be locked, so they are put back: "
                   + "; ".join(errors.values()), code=1)
    entries = {k: v for k, v in lock.entries.items()
               if k not in {ch.old for ch in changes}}
    updates.write_lock(config.env_dir, {**entries, **digests})
    return dict(lock.entries)


def _put_back(project: Any, path: Any, before: str, lock_before: dict[str, str] | None) -> None:
    from infra import updates
    from infra.fsutil import atomic_write

    if before:
        atomic_write(path, before, 0o644)
    else:
        path.unlink(missing_ok=True)
    if lock_before is not None:
        updates.write_lock(project.config.env_dir, lock_before)


@infra_task(help={
    "check": "only compare: exit 1 when a pinned tag now resolves to another digest than "
             "the lock's, or the lock does not match the pins; write nothing",
})
def lock(c, check=False, profile=""):
    """Resolve every pinned tag to its registry digest into env/images.lock (commit it).

    Render then pins every image to tag@sha256:..., so what runs is exactly what was locked.
    A tag that moved upstream under the same name is reported, never silently taken: with a
    lock, run it again (or `update`) to accept the new digest."""
    from infra import updates

    project = load(profile, write=False)
    config = project.config
    images = updates.pinned_images(project)
    before = updates.read_lock(config.env_dir)
    digests, errors = updates.resolve_lock(images, _client(project), config.get("IMAGE_MIRROR"))
    out = console()
    for reference, error in errors.items():
        out.print(f"[red]{reference}: {error}[/red]", highlight=False)
    moved = updates.moved_tags(before, digests)
    for reference, old, new in moved:
        out.print(f"[yellow]{reference} moved: locked {old[:19]}..., the registry now has "
                  f"{new[:19]}...[/yellow]", highlight=False)
    if check:
        problems = updates.lock_problems(before, images)
        for problem in problems:
            out.print(f"[red]{problem}[/red]", highlight=False)
        if moved or problems or errors:
            raise Exit("error: the lock does not match the pins or the registry (invoke "
                       "pins.lock writes it again)", code=1)
        out.print("the lock matches every pin and the registry")
        return
    if errors:
        raise Exit("error: some pins could not be resolved; the lock is unchanged", code=1)
    changed = updates.write_lock(config.env_dir, digests)
    out.print(f"{updates.lock_path(config.env_dir)}: {len(digests)} image(s) "
              f"{'written' if changed else 'unchanged'}", highlight=False)


pins = Collection("pins")
pins.add_task(lock, default=False)
ns = Collection(outdated, update)  # root tasks (tasks/__init__.py)
ns.add_collection(pins)
