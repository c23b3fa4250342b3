"""Ordered, health-gated bring-up and day-2 operations.

Data flows one way: facts read from the engine (``facts``) and the rendered stacks go into a
pure planner (``plan``), the plan is shown or applied layer by layer (``apply``), and the
outcome becomes a report (``report``). Engine commands are built as plain strings in
``commands`` and run only through an invoke/fabric context.
"""
