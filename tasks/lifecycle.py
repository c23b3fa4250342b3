"""Bring-up and day-2 operations (placeholder: see issue 6)."""

from invoke import Exit

from ._common import infra_task, load

ROOT_TASKS: list = []


@infra_task(help={"stack": "stack to bring up (repeatable); default: all"}, iterable=["stack"])
def up(c, stack=None, profile=""):
    """Bring the stacks up in dependency order, health-gated."""
    load(profile)  # validates configuration and generates secrets
    raise Exit("error: bring-up is not implemented yet (issue 6). Configuration is valid and "
               "secrets exist; see `invoke --list` for what works today.", code=4)


ROOT_TASKS.append(up)
