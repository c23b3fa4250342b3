"""The invoke collection: every task module composed in one place.

Entry point choice: this package is the only task source (there is no tasks.py, which would
shadow it); ``fabfile.py`` re-exports ``ns`` so ``fab`` sees exactly the same tasks. Modules
import nothing heavy at import time (rich, jinja2, fabric, plumbum load on first use), which
keeps ``invoke --list`` instant.
"""

from invoke import Collection

from . import (
    certs,
    checks,
    config,
    deploy,
    dev,
    doctor,
    history,
    host,
    lifecycle,
    registry,
    stacks,
    updates,
)
from . import docker as docker_tasks

ns = Collection()
for module in (stacks, lifecycle, checks, deploy, history, updates, dev, doctor):
    for root_task in module.ROOT_TASKS:
        ns.add_task(root_task)
for module in (config, certs, host, docker_tasks, registry, updates):
    ns.add_collection(module.ns)
for module in (lifecycle,):
    for sub in getattr(module, "COLLECTIONS", ()):
        ns.add_collection(sub)
