"""External HTTP health probes for images without a shell (distroless Mimir, Zot, Tempo...).

One helper container per stack joins the stack network and polls every probe URL until all
answer or the deadline passes; it prints ``healthy <service>`` / ``unhealthy <service> <why>``.
When the engine is rootful on the machine the shell runs on (enginehost), the shell polls
the same URLs itself with curl, reaching each service at its address on the stack network
(``--resolve``: the URL, Host header and TLS server name stay the service's), with the same
output and no helper container to start.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from ..catalogue import Stack
from . import commands as cmd

SAFE_ITEMS = re.compile(r"^[A-Za-z0-9_.:/|?=&%~+ -]*$")  # embedded in a double-quoted sh string


@dataclass(frozen=True)
class HttpCheck:
    service: str
    url: str
    network: str = ""  # where the probe reaches the service (its home network)

    @property
    def port(self) -> int:
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)


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
                                f"{probe.scheme}://{service.name}:{probe.port}{probe.path}",
                                stack.home_network(service)))
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


def host_probe_script(checks: Iterable[HttpCheck], project: str, network: str,
                      timeout: int) -> str:
    """The probe loop for the engine's own host: curl each service at its network address.

    Health, not trust: ``-k`` accepts any certificate (as the helper's busybox wget does);
    ``certs.test-tls`` and ``check`` verify the chain.
    """
    items = " ".join(f"{c.service}|{c.port}|{c.url}" for c in checks)
    if not SAFE_ITEMS.match(items) or not SAFE_ITEMS.match(project + network):
        raise ValueError(f"unexpected characters in health probe URLs: {items!r}")
    # one engine call per round finds every service: compose names its containers
    # <project>-<service>-<n>, and the network lists each member's name and address
    members = '{{range .Containers}}{{.Name}} {{.IPv4Address}}{{"\\n"}}{{end}}'
    awk = ('index($1, want) == 1 && substr($1, length(want) + 1) ~ /^[0-9]+$/ '
           '{ sub("/.*", "", $2); print $2; exit }')
    return f"""pending="{items}"
errors=$(mktemp -d) && trap 'rm -rf "$errors"' EXIT
end=$(( $(date +%s) + {int(timeout)} ))
while :; do
  members=$(docker network inspect --format {shlex.quote(members)} {network} 2>/dev/null)
  left=""
  for item in $pending; do
    svc=${{item%%|*}}; rest=${{item#*|}}; port=${{rest%%|*}}; url=${{rest#*|}}
    ip=$(printf '%s\\n' "$members" | awk -v want="{project}-$svc-" '{awk}')
    if [ -z "$ip" ]; then echo "no address on {network} yet" >"$errors/$svc"
    elif curl -fsSk -o /dev/null --max-time 5 --resolve "$svc:$port:$ip" "$url" \\
         2>"$errors/$svc"; then echo "healthy $svc"; continue; fi
    left="$left $item"
  done
  pending=$left
  [ -z "$pending" ] && exit 0
  if [ "$(date +%s)" -ge "$end" ]; then
    for item in $pending; do svc=${{item%%|*}}; url=${{item##*|}}
      echo "unhealthy $svc $url: $(tr '\\n' ' ' <"$errors/$svc")"; done
    exit 1
  fi
  sleep 1
done"""


def host_probe_command(checks: Iterable[HttpCheck], project: str, network: str,
                       timeout: int) -> str:
    return f"sh -c {shlex.quote(host_probe_script(checks, project, network, timeout))}"


def parse_probe_output(text: str) -> list[ProbeResult]:
    results = []
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word in {"healthy", "unhealthy"}:
            service, _, detail = rest.partition(" ")
            results.append(ProbeResult(service, word == "healthy", detail.strip()))
    return results


CA_MOUNT = "/stackyard-ca.pem"


@dataclass(frozen=True)
class TlsCheck:
    service: str
    name: str
    port: int
    ca: str  # host path of the CA file
    image: str  # as the catalogue names it (mirrored by the caller)
    network: str = ""


def tls_checks(stack: Stack, services: Iterable[str] | None = None) -> list[TlsCheck]:
    wanted = set(services) if services is not None else None
    checks = []
    for service in stack.services:
        probe = service.health.tls if service.health else None
        if probe is None or (wanted is not None and service.name not in wanted):
            continue
        checks.append(TlsCheck(service.name, probe.name, probe.port, probe.ca, probe.image,
                               stack.home_network(service)))
    return checks


def tls_probe_script(check: TlsCheck, timeout: int) -> str:
    """curl, until it completes a request: the certificate chains to our CA and names
    ``check.name`` (asked for by SNI), reached at the service's own address and port."""
    target = f"{check.name}:{check.port}:{check.service}:{check.port}"
    url = f"https://{check.name}:{check.port}/"
    if not SAFE_ITEMS.match(target + url):
        raise ValueError(f"unexpected characters in a TLS probe: {target!r}")
    return f"""end=$(( $(date +%s) + {int(timeout)} ))
until curl -sS -o /dev/null --max-time 5 --cacert {CA_MOUNT} --connect-to "{target}" \\
      "{url}" 2>/tmp/tls-error; do
  if [ "$(date +%s)" -ge "$end" ]; then
    echo "unhealthy {check.service} {url}: $(tr '\\n' ' ' </tmp/tls-error)"; exit 1
  fi
  sleep 1
done
echo "healthy {check.service}"
"""


def tls_probe_command(image: str, network: str, check: TlsCheck, timeout: int) -> str:
    return cmd.helper_run(image, tls_probe_script(check, timeout), network=network,
                          binds=[(check.ca, CA_MOUNT)])
