"""One JSON document per task run, for scripts: ``--json`` on status, ps, plan, check, config,
history and outdated.

Every document has ``v`` (the shape's version, 1) and ``kind`` (the task), then the same
rows its table shows, each a JSON object keyed by the table's column names (lowercased,
spaces as underscores), so a script and a person read the same facts:

- ``status`` / ``ps``: ``services``: [{stack, service, state, health, ports, url}];
- ``plan``: ``sections``: {stacks, networks, volumes, hostnames, ports, placement, backups},
  each a
  list of rows;
- ``check``: ``ok`` (bool), ``results``: [{stack, subject, ok, detail}];
- ``config``: ``profile``, ``settings``: [{key, value, source, origin}] (secrets masked, as
  in the table);
- ``config.check``: ``ok``, ``warnings``;
- ``history``: ``host``, ``revisions``: [{rev, stack, time, who, action, digest, settings,
  result, host, images: [{service, reference, image_id, repo_digest}], health: {service:
  seconds}, restored, kept, detail}];
- ``outdated``: ``images``: [{image, setting, stacks, error, newer: [{tag, level}]}],
  ``moved``: [{image, locked, now}] (with env/images.lock).

A new field may appear within a version; a field changing meaning or going away bumps ``v``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

VERSION = 1


def key(header: str) -> str:
    return "_".join(header.lower().replace("'", "").replace(",", "").split())


def rows_of(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    names = [key(h) for h in headers]
    return [dict(zip(names, row, strict=True)) for row in rows]


def document(kind: str, **fields: Any) -> str:
    return json.dumps({"v": VERSION, "kind": kind, **fields}, indent=2, sort_keys=False)


def status_rows(rows: Iterable[Any]) -> list[dict[str, Any]]:
    return [{"stack": r.stack, "service": r.service, "state": r.state, "health": r.health,
             "ports": r.ports, "url": r.url} for r in rows]


def sections(named: Mapping[str, tuple[Sequence[str], Iterable[Sequence[Any]]]]
             ) -> dict[str, list[dict[str, Any]]]:
    return {name: rows_of(headers, rows) for name, (headers, rows) in named.items()}
