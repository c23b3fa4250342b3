"""External HTTP health probes for images without a shell (distroless Mimir, Zot, Tempo...).

One helper container per stack joins the stack network and polls every probe URL until all
answer or the deadline passes; it prints ``healthy <service>`` / ``unhealthy <service> <why>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..catalogue import Stack
from . import commands as cmd

SAFE_ITEMS = re.compile(r"^[A-Za-z0-9_.:/|?=&%~+ -]*$")  # embedded in a double-quoted sh string


@dataclass(frozen=True)
class HttpCheck:
    service: str
    url: str


@dataclass(frozen=True)
class ProbeResult:
    service: str
    healthy: bool
    detail: str = ""


def http_checks(stack: Stack, services: Iterable[str] | None = None) -> list[HttpCheck]:
    wanted = set(services) if services is not None else None
    checks = []
    for service in stack.services:
        probe = service.health.http if service.health else None
        if probe is None or service.oneshot or (wanted is not None and service.name not in wanted):
            continue
        # service names are unique across stacks and resolve on the stack network
        checks.append(HttpCheck(service.name,
                                f"{probe.scheme}://{service.name}:{probe.port}{probe.path}"))
    return checks


def probe_script(checks: Iterable[HttpCheck], timeout: int) -> str:
    items = " ".join(f"{c.service}|{c.url}" for c in checks)
    if not SAFE_ITEMS.match(items):
        raise ValueError(f"unexpected characters in health probe URLs: {items!r}")
    return f"""pending="{items}"
end=$(( $(date +%s) + {int(timeout)} ))
while :; do
  left=""
  for item in $pending; do
    svc=${{item%%|*}}; url=${{item#*|}}
    if timeout 5 wget -q -O /dev/null "$url" 2>/tmp/err-$svc; then echo "healthy $svc"
    else left="$left $item"; fi
  done
  pending=$left
  [ -z "$pending" ] && exit 0
  if [ "$(date +%s)" -ge "$end" ]; then
    for item in $pending; do svc=${{item%%|*}}
      echo "unhealthy $svc ${{item#*|}}: $(tr '\\n' ' ' </tmp/err-$svc)"; done
    exit 1
  fi
  sleep 1
done"""


def probe_command(helper_image: str, network: str, checks: Iterable[HttpCheck],
                  timeout: int) -> str:
    return cmd.helper_run(helper_image, probe_script(checks, timeout), network=network)


def parse_probe_output(text: str) -> list[ProbeResult]:
    results = []
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word in {"healthy", "unhealthy"}:
            service, _, detail = rest.partition(" ")
            results.append(ProbeResult(service, word == "healthy", detail.strip()))
    return results
