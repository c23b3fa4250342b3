"""Render and plan the stacks (placeholder: see issue 3)."""

ROOT_TASKS: list = []
