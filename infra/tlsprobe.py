"""Probe a live TLS endpoint: is the chain valid for the name, what is negotiated, are TLS 1.0/1.1
refused?

The legacy check uses a client that is itself willing to speak TLS 1.0/1.1 with any cipher
(``SECLEVEL=0``): a default client refuses old versions on its own, and would report a permissive
server as strict.
"""

from __future__ import annotations

import socket
import ssl
import warnings
from dataclasses import dataclass

from .errors import InfraError

LEGACY_VERSIONS = (("TLSv1.0", "TLSv1"), ("TLSv1.1", "TLSv1_1"))


class TlsProbeError(InfraError):
    """The endpoint could not be probed at all (as opposed to: it answered badly)."""


@dataclass(frozen=True)
class LegacyResult:
    version: str  # TLSv1.0 | TLSv1.1
    refused: bool
    detail: str  # the server's refusal, or what it negotiated


@dataclass(frozen=True)
class TlsReport:
    host: str
    port: int
    server_name: str
    verified: bool  # chain valid up to the trusted CA, and valid for server_name
    verify_error: str
    protocol: str
    cipher: str
    legacy: tuple[LegacyResult, ...]

    @property
    def ok(self) -> bool:
        return self.verified and all(result.refused for result in self.legacy)


def parse_target(target: str) -> tuple[str, int]:
    """HOST:PORT or [IPv6]:PORT -> (host, port)."""
    host, sep, port = target.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InfraError(f"{target!r} is not HOST:PORT\n    fix: e.g. registry.localhost:5000 "
                         "or 127.0.0.1:443")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise TlsProbeError(f"cannot connect to {host}:{port}: {exc}\n"
                            "    fix: check that the service is up and the address is right"
                            ) from None


def _handshake(context: ssl.SSLContext, host: str, port: int, server_name: str,
               timeout: float) -> tuple[str, str]:
    with _connect(host, port, timeout) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as tls:
        cipher = tls.cipher()
        return tls.version() or "", cipher[0] if cipher else ""


def legacy_context(version_name: str) -> ssl.SSLContext:
    """A client that offers exactly this old version, with every cipher allowed."""
    with warnings.catch_warnings():  # TLSv1/TLSv1_1 are deprecated: that is the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        version = getattr(ssl.TLSVersion, version_name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.minimum_version = version
        context.maximum_version = version
    context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def probe_legacy(host: str, port: int, server_name: str, timeout: float) -> tuple[LegacyResult,
                                                                                  ...]:
    results = []
    for label, attribute in LEGACY_VERSIONS:
        try:
            protocol, cipher = _handshake(legacy_context(attribute), host, port, server_name,
                                          timeout)
        except ssl.SSLError as exc:
            reason = exc.reason or str(exc)
            if reason == "NO_PROTOCOLS_AVAILABLE":  # our side could not offer it: prove nothing
                raise TlsProbeError(f"this Python's OpenSSL cannot offer {label}, so a refusal "
                                    "cannot be proven") from None
            results.append(LegacyResult(label, True, f"refused ({reason})"))
        except (ConnectionResetError, TimeoutError) as exc:
            detail = f"refused (connection {exc.__class__.__name__})"
            results.append(LegacyResult(label, True, detail))
        else:
            results.append(LegacyResult(label, False, f"accepted: {protocol} {cipher}"))
    return tuple(results)


def probe_tls(host: str, port: int, cafile: str, server_name: str = "",
              timeout: float = 5.0) -> TlsReport:
    """Connect to a live endpoint and report what it does (see TlsReport)."""
    server_name = server_name or host
    verifying = ssl.create_default_context(cafile=cafile)  # trusts only this CA
    verify_error = ""
    try:
        protocol, cipher = _handshake(verifying, host, port, server_name, timeout)
        verified = True
    except ssl.SSLCertVerificationError as exc:
        verified, verify_error = False, exc.verify_message or str(exc)
    except ssl.SSLError as exc:
        verified, verify_error = False, exc.reason or str(exc)
    if not verified:  # still report what a permissive modern client negotiates
        permissive = ssl.create_default_context()
        permissive.check_hostname = False
        permissive.verify_mode = ssl.CERT_NONE
        try:
            protocol, cipher = _handshake(permissive, host, port, server_name, timeout)
        except ssl.SSLError as exc:
            protocol, cipher = "", f"(handshake failed: {exc.reason or exc})"
    legacy = probe_legacy(host, port, server_name, timeout)
    return TlsReport(host, port, server_name, verified, verify_error, protocol, cipher, legacy)
