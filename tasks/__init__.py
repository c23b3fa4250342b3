"""The invoke collection: every task module composed in one place.

Entry point choice: this package is the only task source (there is no tasks.py, which would
shadow it); ``fabfile.py`` re-exports ``ns`` so ``fab`` sees exactly the same tasks. Modules
import nothing heavy at import time (rich, jinja2, fabric, plumbum load on first use), which
keeps ``invoke --list`` instant.
"""

from invoke import Collection

from . import (
    backup,
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

# One collection per module: a named one (config, certs, host, docker, registry) becomes a
# prefix (`invoke certs.ca`); an unnamed one holds root tasks (`invoke up`) and their own
# named collections (volumes, pins).
ns = Collection()
for module in (stacks, lifecycle, checks, deploy, history, updates, backup, dev, doctor, config,
               certs, host, docker_tasks, registry):
    if module.ns.name:
        ns.add_collection(module.ns)
        continue
    for task in module.ns.tasks.values():
        ns.add_task(task)
    for sub in module.ns.collections.values():
        ns.add_collection(sub)
