"""An interruption that lands inside a library's own bookkeeping still ends as an
interruption (exit 130, its report), never as the library's follow-on error."""

from __future__ import annotations

import pytest
from invoke import Context, Exit
from invoke.runners import Runner

from infra.interrupt import Interrupted
from tasks._common import infra_task


def test_a_signal_inside_invokes_runner_setup_ends_as_an_interruption(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in CI: SIGINT arrived while invoke's runner was still setting itself up; its
    cleanup (``stop``) then failed on an attribute the setup had not set yet, and that
    AttributeError escaped as a traceback with exit 1."""
    def setup_cut_by_the_signal(self: Runner, command: str, kwargs: dict) -> None:
        raise Interrupted(2)

    monkeypatch.setattr(Runner, "_setup", setup_cut_by_the_signal)

    @infra_task
    def pulls(c: Context) -> None:
        c.run("true", hide=True)

    with pytest.raises(Exit) as ended:
        pulls(Context())
    assert ended.value.code == 130
    assert "interrupted (SIGINT)" in str(ended.value.message)
    assert "AttributeError" not in str(ended.value.message)


def test_an_ordinary_error_is_not_taken_for_an_interruption() -> None:
    @infra_task
    def breaks(c: Context) -> None:
        raise AttributeError("a real bug")

    with pytest.raises(AttributeError, match="a real bug"):
        breaks(Context())
