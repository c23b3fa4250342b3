"""`fab`'s executor for this project (enabled by fabric.yaml: tasks.executor_class).

- ``-H`` names may be inventory names: they become that host's address, user, port and key,
  and commands see its engine (DOCKER_HOST from docker_socket). Other names are plain SSH
  targets, as in stock fab.
- Tasks with a ``stack`` option act on that host's stacks unless ``--stack`` is given, and
  every task loads the configuration that host deploys with: its inventory overrides and
  DATA_ROOT (``infra.deploy.run.host_task_layer``), a layer of its configuration.
- ``rollback`` and ``history`` run here once per ``-H`` host, with it as their ``--host``: they
  reach the host themselves (a host's history is kept on this machine).
- ``deploy`` is not run once per host, one after another (stock fab's behaviour): the host list
  becomes its ``--host`` option and the task runs once, deploying every host in parallel.
  So ``fab -H a,b deploy`` and ``invoke deploy --host a --host b`` run the same body.
"""

from __future__ import annotations

from typing import Any

from fabric import Executor
from fabric.tasks import ConnectionCall
from invoke import Call, Task

PARALLEL_TASKS = {"deploy"}
# run once, here, for the -H host (``--host``): they reach the host themselves, over SSH
ONCE_FOR_THE_HOST = {"rollback", "history"}


class InventoryCall(ConnectionCall):
    """A per-host call whose Connection exports the host's DOCKER_HOST (and, for every host,
    sends small packets at once: infra.deploy.connection)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.run_env: dict[str, str] = kwargs.pop("run_env", {})
        self.inventory_host: str = kwargs.pop("inventory_host", "")
        super().__init__(*args, **kwargs)

    def clone_kwargs(self) -> dict[str, Any]:
        kwargs = super().clone_kwargs()
        kwargs["run_env"] = self.run_env
        kwargs["inventory_host"] = self.inventory_host
        return kwargs

    def make_context(self, config: Any) -> Any:
        if self.run_env:
            config.run.env = {**(config.run.env or {}), **self.run_env}
        if self.inventory_host:  # tasks load this host's settings (tasks/_common.py)
            config.stackyard = {"inventory_host": self.inventory_host}
        from .connection import Connection  # fabric's, with TCP_NODELAY

        return Connection(**{**self.init_kwargs, "config": config})


def _inventory() -> Any:
    from ..inventory import inventory_of
    from ..project import read_only_project

    project = read_only_project()  # the inventory only: nothing written here
    return inventory_of(project.config, project.catalogue)


class InventoryExecutor(Executor):  # type: ignore[misc]
    def expand_calls(self, calls: list[Any], apply_hosts: bool = True) -> list[Any]:
        host_str = self.core[0].args.hosts.value if apply_hosts else None
        if host_str:
            hosts = [h for h in host_str.split(",") if h]
            kept = []
            for call in calls:
                call = Call(task=call) if isinstance(call, Task) else call
                if call.task.name in ONCE_FOR_THE_HOST:
                    for host in hosts:  # each run here, for that host (its --host)
                        own = call.clone()
                        own.kwargs = {**call.kwargs, "host": host}
                        kept.extend(super().expand_calls([own], apply_hosts=False))
                elif call.task.name in PARALLEL_TASKS:
                    given = list(call.kwargs.get("host") or [])
                    call.kwargs["host"] = given + [h for h in hosts if h not in given]
                    # run once, locally; the task itself connects to every host in parallel
                    kept.extend(super().expand_calls([call], apply_hosts=False))
                else:
                    kept.extend(super().expand_calls([call], apply_hosts=True))
            return kept
        return list(super().expand_calls(calls, apply_hosts=apply_hosts))

    def parameterize(self, call: Any, connection_init_kwargs: dict[str, Any]) -> Any:
        from .targets import resolve_targets

        name = connection_init_kwargs.get("host", "")
        target = resolve_targets(self._get_inventory(), [name])[0]
        run_env: dict[str, str] = {}
        # every host is verified: the user's known_hosts and the inventory's (connection.py)
        connection_init_kwargs = {**connection_init_kwargs,
                                  "known_hosts": target.connection_kwargs()["known_hosts"]}
        if target.in_inventory:
            kwargs = target.connection_kwargs()
            kwargs.pop("connect_timeout", None)
            connection_init_kwargs = {**connection_init_kwargs, **kwargs}
            run_env = target.run_env()
            params = getattr(call.task, "_stackyard_params", None) or _params(call.task)
            if "stack" in params and not call.kwargs.get("stack"):
                call.kwargs = {**call.kwargs, "stack": list(target.stacks)}
        return call.clone(into=InventoryCall, with_={
            "init_kwargs": connection_init_kwargs, "run_env": run_env,
            "inventory_host": target.name if target.in_inventory else ""})

    def _get_inventory(self) -> Any:
        if not hasattr(self, "_inventory_cache"):
            self._inventory_cache = _inventory()
        return self._inventory_cache


def _params(task: Any) -> set[str]:
    import inspect

    body = getattr(task.body, "__wrapped__", task.body)
    return set(inspect.signature(body).parameters)
