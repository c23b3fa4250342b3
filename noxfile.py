"""Test sessions. They reuse the project's virtual environment (made by `make bootstrap`):
installing the same pinned dependencies again per session would only cost time."""

from __future__ import annotations

import sys

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "tests", "e2e"]
PYTHON = sys.executable  # the project venv's interpreter, which runs nox


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy over the code."""
    session.run(PYTHON, "-m", "ruff", "check", ".")
    session.run(PYTHON, "-m", "mypy")


@nox.session
def tests(session: nox.Session) -> None:
    """Pure logic and real command-line tools (cfssl, openssl, nginx, compose config)."""
    session.run(PYTHON, "-m", "pytest", "-m", "not engine and not ssh", *session.posargs)


@nox.session
def e2e(session: nox.Session) -> None:
    """Against a real Docker engine (and sshd in network namespaces)."""
    session.run(PYTHON, "-m", "pytest", "-m", "engine or ssh", *session.posargs)
