"""Shared plumbing for task modules: error conversion, project loading, lazy console."""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from invoke import Exit, task

from infra.errors import InfraError

if TYPE_CHECKING:
    from rich.console import Console

    from infra.config import Config, HostLayer
    from infra.project import Project

PROFILE_HELP = "configuration profile: env/<PROFILE>.env over env/defaults.env ($INFRA_PROFILE)"


def _typed_option_errors_exit_2() -> None:
    """invoke casts an option to its default's type (``--tail 20``) and lets the ValueError of
    ``--tail abc`` escape as a traceback: make it our input error (message, exit 2)."""
    from invoke.parser.argument import Argument

    if getattr(Argument.set_value, "_stackyard", False):
        return
    original = Argument.set_value

    def set_value(self: Any, value: Any, cast: bool = True) -> None:
        try:
            original(self, value, cast)
        except (TypeError, ValueError):
            kind = {"int": "whole number", "float": "number"}.get(
                getattr(self.kind, "__name__", ""), str(self.kind))
            raise Exit(f"error: --{self.name.replace('_', '-')}: {value!r} is not a {kind} "
                       f"(see invoke --help for the option)", code=2) from None

    set_value._stackyard = True  # type: ignore[attr-defined]
    Argument.set_value = set_value  # type: ignore[method-assign]


_typed_option_errors_exit_2()


def infra_task(*args: Any, **kwargs: Any) -> Callable[..., Any]:
    """``@task`` whose user-facing errors exit non-zero with the message, not a traceback.

    Usable bare (``@infra_task``) or with invoke's task options (``@infra_task(help=...)``).
    """
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return infra_task()(args[0])
    # "raise": Ctrl-C / SIGTERM stop the task where it is (infra.interrupt); "poll": the
    # task's threads ask interrupt.cancelled() and the task reports itself (up, deploy)
    interrupts = kwargs.pop("interrupts", "raise")

    def decorate(body: Callable[..., Any]) -> Any:
        help_ = dict(kwargs.pop("help", {}))
        parameters = inspect.signature(body).parameters
        if "profile" in parameters:
            help_.setdefault("profile", PROFILE_HELP)

        @functools.wraps(body)
        def run(c: Any, *a: Any, **kw: Any) -> Any:
            from infra.interrupt import handling

            _invoke_dry_is_our_dry(c, kw, "dry" in parameters, body.__name__)
            token = None
            cancellation = None
            try:
                with handling(raise_in_main=interrupts == "raise") as cancellation:
                    host = _inventory_host(c)
                    if host:  # `fab -H <inventory name> task`: that host's settings
                        token = _HOST.set(_host_layer(c, host, kw.get("profile", "")))
                    return body(c, *a, **kw)
            except Exit:
                raise  # the task's own ending (its report, its code)
            except Exception as exc:
                interrupted = _interruption_behind(exc, cancellation)
                if interrupted is None:
                    if isinstance(exc, InfraError):
                        raise Exit(f"error: {exc}", code=exc.exit_code) from None
                    raise
                report = getattr(interrupted, "report", None) or (
                    cancellation.steps.report() if cancellation and cancellation.steps else None)
                lines = (report.lines(interrupted.signum) if report
                         else _interrupted_lines(interrupted))
                raise Exit("\n".join(lines), code=interrupted.exit_code) from None
            finally:
                if token is not None:
                    _HOST.reset(token)

        return task(*args, help=help_, **kwargs)(run)

    return decorate


# The inventory host a task run through `fab -H <name>` acts on: its configuration layer.
_HOST: contextvars.ContextVar[HostLayer | None] = contextvars.ContextVar(
    "stackyard_host", default=None)


def _invoke_dry_is_our_dry(c: Any, kw: dict[str, Any], has_dry: bool, name: str) -> None:
    """`invoke --dry TASK` (invoke's own flag) means TASK's dry run: plan against the real
    state, change nothing. invoke's meaning (echo every command instead of running it) would
    not even read the state; a task without a dry run refuses rather than half-run."""
    run_config = getattr(getattr(c, "config", None), "run", None)
    if run_config is None or not getattr(run_config, "dry", False):
        return
    if not has_dry:
        raise Exit(f"error: {name} has no dry run: run it without --dry, or use a task "
                   "that has one (up, down, render, deploy, certs, host.*)", code=2)
    kw["dry"] = True
    run_config.dry = False  # the dry run reads the engine's real state


def _interruption_behind(exc: BaseException, cancellation: Any) -> Any:
    """The Interrupted this exception is, or was raised while unwinding from (None: none).

    The signal handler raises wherever the main thread is; inside a library's own cleanup
    (invoke's runner stops a command it had not finished setting up) that cleanup can fail
    in turn, and its error, not ours, reaches here: still an interruption, not a crash."""
    from infra.interrupt import Interrupted

    seen: BaseException | None = exc
    for _ in range(16):
        if seen is None:
            break
        if isinstance(seen, Interrupted):
            return seen
        seen = seen.__context__ or seen.__cause__
    if cancellation is not None and cancellation.is_set():
        return Interrupted(cancellation.signum or 2)
    return None


def _interrupted_lines(exc: Any) -> list[str]:
    from infra.interrupt import resume_command

    return [f"interrupted ({exc}) before it finished; what it had done stays done",
            f"  to resume, run the same command again: {resume_command()}"]


def _inventory_host(c: Any) -> str:
    """The inventory name fab's executor put in this Connection's config ('' if none)."""
    config = getattr(c, "config", None)
    section = config.get("stackyard") if config is not None else None
    return str(section.get("inventory_host", "")) if section else ""


def _host_layer(c: Any, name: str, profile: str) -> HostLayer:
    from infra.deploy.run import host_task_layer
    from infra.inventory import inventory_of
    from infra.project import read_only_project

    base = read_only_project(profile)
    inventory = inventory_of(base.config, base.catalogue)
    return host_task_layer(c, inventory.hosts[name], base.config)


def load(profile: str = "", write: bool = True) -> Project:
    """The project; ``write=False`` for dry runs and read-only tasks: nothing is written, not
    even a missing secret (it is made up in memory for this run only)."""
    from infra.project import load_project, read_only_project

    layer = _HOST.get()
    if layer is not None and not write:  # fab -H: the base is read already, for the inventory
        return read_only_project(profile).for_host(layer)
    project = load_project(profile or None, write=write)
    if layer is not None:
        project = project.for_host(layer)
    if project.config.generated_secrets:
        console().print(f"[dim]generated {len(project.config.generated_secrets)} new secret(s) "
                        f"into {project.config.env_dir / 'secrets.env'} (mode 0600)[/dim]")
    return project


def settings(profile: str = "") -> Config:
    """Configuration only (no catalogue, no secrets generated)."""
    from infra.project import load_settings

    config = load_settings(profile or None)
    layer = _HOST.get()
    return config.for_host(layer) if layer is not None else config


@functools.cache
def console() -> Console:
    from rich.console import Console  # imported on first print: keeps `invoke --list` fast

    return Console(highlight=False)


class LiveView:
    """A rich Live view redrawn four times a second from ``table()`` (the subclass's), for
    long work on a terminal (up, deploy)."""

    def table(self) -> Any:
        raise NotImplementedError

    def __enter__(self) -> Any:
        import threading

        from rich.live import Live

        self.stop = threading.Event()
        self.live = Live(self.table(), console=console(), refresh_per_second=4)
        self.live.__enter__()

        def refresh() -> None:
            while not self.stop.wait(0.25):
                self.live.update(self.table())

        self.thread = threading.Thread(target=refresh, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()
        self.live.update(self.table())
        self.live.__exit__(*exc)


def exit_interrupted(report: Any, signum: int) -> None:
    """Print where an interrupted run stopped, and leave now: threads still stopping (a
    command that had not yet seen the signal) are not waited for."""
    import os
    import sys
    import threading

    from infra.interrupt import EXIT_CODES

    for line in report.lines(signum):
        console().print(line, markup=False, highlight=False)
    code = EXIT_CODES.get(signum, 130)
    if threading.active_count() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise Exit(code=code)
