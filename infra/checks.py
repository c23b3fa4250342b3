"""`invoke check`: every service healthy, every route answering the way its auth mode says.

The seed's health checks (Mimir /ready, MinIO /minio/health/live, Tempo /ready, Loki /ready,
registry /v2/, Alloy UI, ...) are each service's catalogue health probe; routes are checked
through Traefik with our CA. A protected route that answers 200 without a login is a failure:
it means the forward-auth middleware is missing.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .bringup.probes import ProbeResult
from .bringup.report import StatusRow, route_url
from .catalogue import Catalogue

LOGIN_REDIRECTS = {301, 302, 303, 307, 308, 401, 403}


@dataclass(frozen=True)
class CheckResult:
    stack: str
    subject: str  # service name or route URL
    ok: bool
    detail: str


@dataclass(frozen=True)
class RouteCheck:
    stack: str
    service: str
    host: str
    url: str
    auth: str


def service_results(rows: Iterable[StatusRow], probes: Iterable[ProbeResult]
                    ) -> list[CheckResult]:
    """Container state and in-image health from ``rows``; external probes from ``probes``."""
    probed = {p.service: p for p in probes}
    results = []
    for row in rows:
        if row.state.startswith("done ("):
            ok, detail = row.state == "done (0)", f"one-shot job {row.state}"
        elif row.state != "running":
            ok, detail = False, f"container {row.state}"
        elif row.service in probed:
            probe = probed[row.service]
            ok, detail = probe.healthy, "probe ok" if probe.healthy else probe.detail
        elif row.health in {"", "healthy"}:
            ok, detail = True, f"running{', healthy' if row.health else ''}"
        else:
            ok, detail = False, f"health: {row.health}"
        results.append(CheckResult(row.stack, row.service, ok, detail))
    return results


def route_checks(catalogue: Catalogue, names: Sequence[str], https_port: str | int
                 ) -> list[RouteCheck]:
    return [RouteCheck(name, service.name, route.host, route_url(route.host, https_port),
                       route.auth)
            for name in names for service, route in catalogue[name].routes]


def route_command(check: RouteCheck, https_port: str | int, cacert: str,
                  address: str = "127.0.0.1") -> str:
    """curl printing only the HTTP status; the host name resolved to the ingress address."""
    parts = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
             "--resolve", f"{check.host}:{int(https_port)}:{address}"]
    parts += ["--cacert", cacert] if cacert else []
    parts.append(check.url + "/")
    return shlex.join(parts)


# curl's words for a certificate that does not name the host, or that our CA did not issue
NAME_MISMATCH = ("no alternative certificate subject name", "does not match target host",
                 "subject name does not match")
UNTRUSTED = ("unable to get local issuer", "self-signed certificate", "self signed certificate",
             "certificate verify failed", "unable to verify")


def route_result(check: RouteCheck, status_text: str, error_text: str = "") -> CheckResult:
    code = int(status_text) if status_text.strip().isdigit() else 0
    if code == 0:
        error = " ".join(error_text.split())
        if any(words in error for words in NAME_MISMATCH):
            detail = f"the certificate it presents was not issued for {check.host}"
        elif any(words in error for words in UNTRUSTED):
            detail = "the certificate it presents was not issued by our CA"
        else:
            detail = "no answer (TLS or connection error)" + (f": {error[-200:]}" if error else "")
        return CheckResult(check.stack, check.url, False, detail)
    if code >= 500:
        return CheckResult(check.stack, check.url, False, f"HTTP {code}")
    if check.auth == "sso" and code not in LOGIN_REDIRECTS:
        return CheckResult(check.stack, check.url, False,
                           f"HTTP {code} without a login: the SSO middleware is not applied")
    verdict = "redirects to the login" if check.auth == "sso" else "answers"
    return CheckResult(check.stack, check.url, True, f"HTTP {code}, {verdict}")
