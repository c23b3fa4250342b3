"""The one converge step of the PKI, for `invoke certs` (and its step tasks) and for `up`.

Plan against the files on disk; under the certificates lock plan again (a run started at the
same time may have done it: one CA, never two) and apply that plan: rendered cfssl JSON,
cfssl, chain files. ``whenever``: apply even with nothing to issue (the certs task rewrites
stale rendered JSON and missing chains); ``up`` only takes the lock when there is work.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import ConfigError
from ..fsutil import locked
from .cfssl import Cfssl, apply_plan, write_chains, write_rendered
from .facts import read_states
from .plan import Plan, Step, plan_certs
from .spec import PkiSpec, cert_paths, render_cfssl_files


def converge(c: Any, config: Config, spec: PkiSpec, scope: Collection[str] | None = None, *,
             dry: bool = False, whenever: bool = False, replace: str | None = None,
             renew_days: int | None = None, force_leaves: bool = False,
             cfssl: Cfssl | None = None, show: Callable[[Plan], None] = lambda plan: None,
             notify: Callable[[Step], None] = lambda step: None,
             chains: Callable[[], None] = lambda: None) -> tuple[Plan, list[Path]]:
    """The plan (shown through ``show`` before anything is done) and the files written."""
    chosen = tuple(scope or spec.items)

    def planned() -> Plan:
        plan = plan_certs(spec, read_states(c, spec), chosen, replace=replace,
                          renew_days=renew_days, force_leaves=force_leaves)
        if plan.problems:
            raise ConfigError(list(plan.problems))
        return plan

    plan = planned()
    show(plan)
    if dry or (not whenever and plan.empty and not plan.protect):
        return plan, []
    cfssl = cfssl or Cfssl()  # before anything is written: a missing tool leaves no trace
    with locked(spec.certs_dir, "certificates"):
        plan = planned()  # again, under the lock
        paths = cert_paths(config)
        written = write_rendered(render_cfssl_files(config, spec), paths.rendered_dir)
        written += apply_plan(plan, spec, cfssl, paths.rendered_dir, notify=notify)
        chains()
        written += write_chains(spec)
    return plan, written
