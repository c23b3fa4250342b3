"""Cross-host wiring, derived from the inventory and the catalogue's published ports.

Templates call ``peer(stack, service, port)``: ``service:port`` (container DNS) when that stack
runs on the same host as the one being rendered, else ``<its host's address>:<published port>``.
Traefik's dynamic configuration gets ``remote_routes``: a file-provider router per route of a
stack placed on another host than Traefik, pointing at that host's published port (Traefik's
docker provider only sees its own engine).

Which host is being rendered: the configuration's host layer (``Config.host``, set by
``deploy`` and by ``fab -H``; empty = this machine, where the stacks placed on no host run).
This machine's address, for hosts that need one of its services: DEPLOY_LOCAL_ADDRESS.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, Problem

if TYPE_CHECKING:
    from .catalogue import Catalogue, Route, Service, Stack
    from .config import Config
    from .inventory import Inventory

LOCAL = ""  # placement of a stack on no inventory host


@dataclass(frozen=True)
class Wiring:
    catalogue: Catalogue
    placement: dict[str, str]  # stack -> host name ('' local)
    addresses: dict[str, str]  # host name -> address ('' -> DEPLOY_LOCAL_ADDRESS)
    bind_addresses: dict[str, str]  # host name -> BIND_ADDRESS there
    current: str  # host being rendered

    def same_host(self, stack: str) -> bool:
        return self.placement.get(stack, LOCAL) == self.current

    def where(self, stack: str) -> str:
        return self.placement.get(stack, LOCAL) or "this machine"

    def published(self, stack: Stack, service: Service, port: int) -> tuple[str, int]:
        """(address, published port) at which another host reaches ``service``'s ``port``."""
        host = self.placement.get(stack.name, LOCAL)
        for item in service.ports:
            if item.target == int(port) and item.protocol == "tcp":
                bind = item.bind or self.bind_addresses.get(host, "")
                address = self.addresses.get(host, "")
                if not address:
                    raise ConfigError(Problem(
                        f"{stack.name}/{service.name} runs on this machine but host "
                        f"{self.current} needs it: this machine's address is unknown",
                        key="DEPLOY_LOCAL_ADDRESS",
                        fix="set DEPLOY_LOCAL_ADDRESS to the address the hosts reach "
                            "this machine at, or place the stack on an inventory host"))
                if bind and _loopback(bind):
                    raise ConfigError(Problem(
                        f"{self.where(stack.name)} publishes {stack.name}/{service.name}:"
                        f"{port} on {bind}, which host {self.current or 'this machine'} "
                        "cannot reach", key="BIND_ADDRESS", file="env/inventory.yaml",
                        fix=f"set `settings: {{BIND_ADDRESS: {address}}}` for "
                            f"{host or 'this machine'} (or 0.0.0.0, with "
                            "ALLOW_UNSAFE=bind-all)"))
                return address, item.published
        raise ConfigError(Problem(
            f"{stack.name}/{service.name} port {port} is needed from "
            f"{self.current or 'this machine'} but {self.where(stack.name)} does not publish it",
            key=f"{stack.name}.{service.name}.ports", file=f"stacks/{stack.name}/stack.yaml",
            fix=f"publish port {port}, or place {stack.name} on the same host as its users"))

    def peer(self, stack_name: str, service_name: str, port: int) -> str:
        if stack_name not in self.catalogue.stacks or self.same_host(stack_name):
            # a partial catalogue (tests, a trimmed checkout): container DNS, as before
            return f"{service_name}:{int(port)}"
        stack = self.catalogue[stack_name]
        address, published = self.published(stack, stack.service(service_name), port)
        return f"{address}:{published}"

    def remote_routes(self) -> list[dict[str, Any]]:
        """Routers for Traefik (rendered where the ingress stack runs) to other hosts."""
        from .basicauth import middleware_name
        from .compose import FORWARD_AUTH_MIDDLEWARE, route_rule

        routes = []
        for stack, service, route, router in self._routes():
            if not route.port or self.same_host(stack.name):
                continue
            try:
                address, published = self.published(stack, service, route.port)
            except ConfigError:
                continue  # not published, or only on loopback: see unreachable_routes()
            routes.append({
                "name": f"{router}-remote", "rule": route_rule(route),
                "url": f"{route.scheme}://{address}:{published}", "stack": stack.name,
                "host": self.placement.get(stack.name, LOCAL),
                "middlewares": [FORWARD_AUTH_MIDDLEWARE] if route.auth == "sso" else
                               [f"{middleware_name(router)}@file"] if route.auth == "basic"
                               else [],
                "scheme": route.scheme, "sso": route.auth == "sso",
            })
        return routes

    def unreachable_routes(self) -> list[str]:
        """Routes on another host than Traefik whose port that host does not publish."""
        found = []
        for stack, service, route, _ in self._routes():
            if route.port and not self.same_host(stack.name):
                try:
                    self.published(stack, service, route.port)
                except ConfigError as exc:
                    found.append(f"{route.host}: {exc.problems[0].message}")
        return found

    def _routes(self) -> list[tuple[Stack, Service, Route, str]]:
        from .catalogue import router_names

        result = []
        for stack in self.catalogue.stacks.values():
            for service in stack.services:
                for router, route in zip(router_names(service), service.routes, strict=True):
                    result.append((stack, service, route, router))
        return result


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def build_wiring(catalogue: Catalogue, inventory: Inventory, config: Config) -> Wiring:
    placement = inventory.placement(catalogue.names())
    addresses = {name: host.address for name, host in inventory.hosts.items()}
    addresses[LOCAL] = config.get("DEPLOY_LOCAL_ADDRESS")
    base_bind = config.get("BIND_ADDRESS", "127.0.0.1")
    binds = {name: host.settings.get("BIND_ADDRESS", base_bind)
             for name, host in inventory.hosts.items()}
    # Rendering for a host, BIND_ADDRESS here is that host's: this machine's is not known then
    binds[LOCAL] = "" if config.host else base_bind
    return Wiring(catalogue, placement, addresses, binds, config.host)


def wiring_of(catalogue: Catalogue, config: Config) -> Wiring:
    """The wiring of the configured inventory (read once: one per render, not per stack)."""
    from .inventory import inventory_of

    return build_wiring(catalogue, inventory_of(config, catalogue), config)


def template_helpers(catalogue: Catalogue, wiring: Wiring) -> dict[str, Any]:
    """``peer``, ``same_host`` and ``remote_routes`` for the template context (see module
    docstring)."""
    peer: Callable[[str, str, int], str] = wiring.peer
    remote = wiring.remote_routes() if _ingress_here(catalogue, wiring) else []
    return {"peer": peer, "same_host": wiring.same_host, "remote_routes": remote}


def _ingress_here(catalogue: Catalogue, wiring: Wiring) -> bool:
    return any(s.ingress and wiring.same_host(s.name) for s in catalogue.stacks.values())
