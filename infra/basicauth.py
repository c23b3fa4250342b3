"""HTTP basic auth at Traefik for routes whose clients cannot follow a login redirect.

Traefik's basicAuth middleware checks ``user:hash`` entries; bcrypt is the format it reads
(contracts/traefik.yaml). The salt is derived from the password and the router's name, so a
render with unchanged secrets writes the same file (a random salt would change Traefik's
configuration, and reload it, on every run). The hash is of a long generated password: a
fixed salt costs nothing against guessing, and it never leaves the rendered 0644 file of the
ingress, which holds no password.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .catalogue import Catalogue

# bcrypt's own base64 alphabet (not RFC 4648's)
BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
ROUNDS = 10  # bcrypt's default cost: Traefik checks every request, and the password is long


def middleware_name(router: str) -> str:
    return f"{router}-basic"


def _salt(password: str, context: str) -> bytes:
    digest = hmac.new(password.encode(), context.encode(), hashlib.sha256).digest()[:16]
    bits = int.from_bytes(digest, "big") << 4  # 128 bits padded to 132 = 22 sextets
    chars = [BCRYPT_ALPHABET[(bits >> (6 * i)) & 63] for i in reversed(range(22))]
    return f"$2b${ROUNDS:02d}${''.join(chars)}".encode()


def bcrypt_hash(password: str, context: str) -> str:
    import bcrypt

    return bcrypt.hashpw(password.encode(), _salt(password, context)).decode()


def middlewares(catalogue: Catalogue, secrets: Mapping[str, str]
                ) -> dict[str, dict[str, object]]:
    """name -> basicAuth options, for every ``auth: basic`` route of the (resolved) catalogue."""
    from .catalogue import router_names

    found: dict[str, dict[str, object]] = {}
    for stack in catalogue.stacks.values():
        for service in stack.services:
            for router, route in zip(router_names(service), service.routes, strict=True):
                if route.auth != "basic":
                    continue
                name = middleware_name(router)
                hashed = bcrypt_hash(secrets[route.password], name)
                found[name] = {"users": [f"{route.user}:{hashed}"], "realm": route.host,
                               "removeHeader": True}
    return found
