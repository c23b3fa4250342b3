"""Host preparation: facts (read-only probes), plans (facts in, actions out), and their apply.

Every function that touches a host takes an invoke ``Context`` or a fabric ``Connection`` (a
Connection is a Context), so the same code prepares this machine or one reached over SSH.
"""
