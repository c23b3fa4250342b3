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

from ..catalogue import SSO_STACK, Catalogue
from .probes import ProbeResult
from .report import StatusRow, route_url

REDIRECTS = {301, 302, 303, 307, 308}
DISCOVERY = "oidc"  # the auth mode of a check of an OIDC client's discovery document


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
    auth: str  # sso | basic | public | oidc (a discovery document)
    login: str = ""  # where an SSO redirect must lead: https://auth.<DOMAIN>/
    path: str = "/"


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


def route_checks(catalogue: Catalogue, names: Sequence[str], https_port: str | int,
                 domain: str = "") -> list[RouteCheck]:
    """A check per route (its path prefix, if any), and one per OIDC client's discovery
    document on the auth host (OpenID Connect discovery, at Authentik's per-client path)."""
    login = route_url(f"auth.{domain}", https_port) if domain else ""
    checks = [RouteCheck(name, service.name, route.host, route_url(route.host, https_port),
                         route.auth, login, route.path or "/")
              for name in names for service, route in catalogue[name].routes]
    if domain and SSO_STACK in names:
        auth_host = f"auth.{domain}"
        for stack in catalogue.stacks.values():
            for service in stack.services:
                if service.oidc is not None:
                    checks.append(RouteCheck(
                        SSO_STACK, service.name, auth_host, route_url(auth_host, https_port),
                        DISCOVERY, login,
                        f"/application/o/{service.name}/.well-known/openid-configuration"))
    return checks


def route_command(check: RouteCheck, https_port: str | int, cacert: str,
                  address: str = "127.0.0.1") -> str:
    """curl printing the HTTP status and where a redirect leads; the host name resolved to
    the ingress address."""
    parts = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
             "--max-time", "10", "--resolve", f"{check.host}:{int(https_port)}:{address}"]
    parts += ["--cacert", cacert] if cacert else []
    parts.append(check.url + check.path)
    return shlex.join(parts)


# curl's words for a certificate that does not name the host, or that our CA did not issue
NAME_MISMATCH = ("no alternative certificate subject name", "does not match target host",
                 "subject name does not match")
UNTRUSTED = ("unable to get local issuer", "self-signed certificate", "self signed certificate",
             "certificate verify failed", "unable to verify")


def route_result(check: RouteCheck, status_text: str, error_text: str = "") -> CheckResult:
    """The verdict on one answer (``status_text``: curl's ``<code> <redirect url>``)."""
    words = status_text.split()
    code = int(words[0]) if words and words[0].isdigit() else 0
    target = words[1] if len(words) > 1 else ""
    to_login = code in REDIRECTS and bool(check.login) and (
        target == check.login or target.startswith((check.login + "/", check.login + ":")))
    if code == 0:
        error = " ".join(error_text.split())
        if any(words in error for words in NAME_MISMATCH):
            detail = f"the certificate it presents was not issued for {check.host}"
        elif any(words in error for words in UNTRUSTED):
            detail = "the certificate it presents was not issued by our CA"
        else:
            detail = "no answer (TLS or connection error)" + (f": {error[-200:]}" if error else "")
        return CheckResult(check.stack, check.url, False, detail)
    subject = check.url + (check.path if check.path != "/" else "")
    if code >= 500:
        return CheckResult(check.stack, subject, False, f"HTTP {code}")
    ok, detail = _verdict(check, code, target, to_login)
    return CheckResult(check.stack, subject, ok, detail)


def _verdict(check: RouteCheck, code: int, target: str, to_login: bool) -> tuple[bool, str]:
    if check.auth == "sso":
        if to_login or (code in REDIRECTS and not check.login):
            return True, f"HTTP {code}, redirects to the login"
        if code in REDIRECTS:
            return False, f"HTTP {code} to {target or '?'}, not to the login at {check.login}"
        if code == 404:
            return False, ("HTTP 404: Authentik does not know this host (is the auth stack up, "
                           "and its blueprint applied? see the worker's log)")
        return False, f"HTTP {code} without a login: the SSO middleware is not applied"
    if check.auth == "basic":
        if code == 401:
            return True, "HTTP 401, asks for the login"
        return False, f"HTTP {code} without a login: the basic-auth middleware is not applied"
    if check.auth == DISCOVERY:
        if code == 200:
            return True, "HTTP 200, the OIDC discovery document answers"
        return False, (f"HTTP {code}: no OIDC discovery document for {check.service} (is its "
                       "client in Authentik? see the worker's log)")
    if to_login:
        return False, f"HTTP {code}: a public route asks for the SSO login"
    return True, f"HTTP {code}, answers"
