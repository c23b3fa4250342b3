"""Pure core of the toolkit: configuration, catalogue, rendering, plans.

Nothing in this package runs a shell command by itself; side effects go through an invoke
``Context`` (or a fabric ``Connection``) handed in by the task layer.
"""
