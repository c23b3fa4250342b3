"""The compose file of a stack, generated from its catalogue entry.

Pure: takes the model and the configuration, returns the document as a dict. Hardening
(no-new-privileges, cap_drop ALL, limits, restart policy) is applied to every service here, so a
stack description cannot forget it; documented exceptions go through a service's ``compose:``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from . import basicauth, sso
from .catalogue import Catalogue, Route, Service, Stack, key_copy, routed_networks, router_names
from .config import Config
from .errors import ConfigError, Problem
from .mirror import mirror_image
from .settings import parse_bool

STACK_LABEL = "io.stackyard.stack"
SERVICE_LABEL = "io.stackyard.service"
FORWARD_AUTH_MIDDLEWARE = "authentik@file"  # defined in templates/traefik/dynamic
OUTPOST_SERVICE = "authentik-outpost@file"  # the embedded outpost, same file
OUTPOST_PATH = "/outpost.goauthentik.io/"
OUTPOST_PRIORITY = 1000  # above any app router (Traefik's default priority is the rule length)
ACME_RESOLVER = "letsencrypt"
ENTRYPOINT = "websecure"
HEALTH_TIMEOUT = "5s"


def secret_env_file(service: Service) -> str:
    """Path, relative to the stack folder, of the 0600 env file holding a service's secrets."""
    return f"secrets/{service.name}.env"


COMPOSE_FILE = "compose.yaml"  # each stack's compose file in its rendered folder
CONTAINER_SECRETS = "secrets/files"


def container_secret_file(service: Service, key: str) -> str:
    """Path, relative to the stack folder, of a secret the service reads as a file."""
    return f"{CONTAINER_SECRETS}/{service.name}/{key}"


def route_rule(route: Route) -> str:
    rule = f"Host(`{route.host}`)"
    if route.path:
        rule += f" && PathPrefix(`{route.path}`)"
    if route.methods:
        rule += " && (" + " || ".join(f"Method(`{m}`)" for m in route.methods) + ")"
    return rule


def traefik_labels(stack: Stack, service: Service, config: Config) -> dict[str, str]:
    """Router, service and forward-auth labels for every route of ``service``."""
    if not service.routes:
        return {}
    acme = config.flag("ACME_ENABLED")
    labels = {"traefik.enable": "true", "traefik.docker.network": stack.network}

    def tls(router: str) -> None:
        labels[f"traefik.http.routers.{router}.entrypoints"] = ENTRYPOINT
        labels[f"traefik.http.routers.{router}.tls"] = "true"
        if acme:
            labels[f"traefik.http.routers.{router}.tls.certresolver"] = ACME_RESOLVER

    for router, route in zip(router_names(service), service.routes, strict=True):
        prefix = f"traefik.http.routers.{router}"
        labels[f"{prefix}.rule"] = route_rule(route)
        tls(router)
        if route.service:
            labels[f"{prefix}.service"] = route.service
        else:
            labels[f"{prefix}.service"] = router
            labels[f"traefik.http.services.{router}.loadbalancer.server.port"] = str(route.port)
            if route.scheme != "http":
                labels[f"traefik.http.services.{router}.loadbalancer.server.scheme"] = route.scheme
                labels[f"traefik.http.services.{router}.loadbalancer.serversTransport"] = (
                    "internal-ca@file")
        if route.auth == "sso":
            labels[f"{prefix}.middlewares"] = FORWARD_AUTH_MIDDLEWARE
            # The outpost's callback (and sign-out) paths on the protected host itself.
            callback = f"{router}-outpost"
            labels[f"traefik.http.routers.{callback}.rule"] = (
                f"Host(`{route.host}`) && PathPrefix(`{OUTPOST_PATH}`)")
            labels[f"traefik.http.routers.{callback}.priority"] = str(OUTPOST_PRIORITY)
            labels[f"traefik.http.routers.{callback}.service"] = OUTPOST_SERVICE
            tls(callback)
        elif route.auth == "basic":
            labels[f"{prefix}.middlewares"] = f"{basicauth.middleware_name(router)}@file"
    return labels


def _volume(volume: Any, config: Config, stack: Stack, service: Service) -> str:
    if volume.kind == "data":
        source = str(config.path("DATA_ROOT") / volume.source)
    elif volume.kind == "config":
        source = "./" + str(PurePosixPath(volume.source))
    elif volume.kind == "socket":
        source = config["DOCKER_SOCKET"]
    elif volume.kind == "host":
        path = PurePosixPath(volume.source)
        source = str(path if path.is_absolute() else config.project_root / path)
    elif volume.kind == "key":  # the container's own copy, made by `up` (bringup/ownership)
        source = str(config.path("DATA_ROOT") / key_copy(stack, service, volume))
    else:
        raise ConfigError(Problem(f"volume {volume.source} has unknown kind {volume.kind!r}",
                                  key=f"{stack.name}.{service.name}",
                                  file=str(stack.directory / "stack.yaml"),
                                  fix="use kind: data, config, socket, host or key"))
    read_only = volume.read_only or volume.kind in ("config", "key")
    return f"{source}:{volume.target}" + (":ro" if read_only else "")


def _port(port: Any, config: Config) -> str:
    address = port.bind or config["BIND_ADDRESS"]
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port.published}:{port.target}/{port.protocol}"


def _healthcheck(service: Service) -> dict[str, Any] | None:
    health = service.health
    if health is None or not health.command:
        return None
    test = list(health.command)
    if test[0] not in {"CMD", "CMD-SHELL", "NONE"}:
        test.insert(0, "CMD")
    return {"test": test, "interval": health.interval, "timeout": HEALTH_TIMEOUT,
            "retries": health.retries, "start_period": health.start_period}


def _depends_on(stack: Stack, service: Service) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, condition in service.depends_on.items():
        target = stack.service(name)
        if target.oneshot:
            condition = "service_completed_successfully"
        elif condition == "service_healthy" and not (target.health and target.health.command):
            # No in-image check (distroless): compose cannot wait for health; `up` probes it.
            condition = "service_started"
        result[name] = {"condition": condition}
    return result


def _escape(node: Any) -> Any:
    """Compose interpolates ``$``: keep literal dollars literal."""
    if isinstance(node, str):
        return node.replace("$", "$$")
    if isinstance(node, list):
        return [_escape(item) for item in node]
    if isinstance(node, dict):
        return {key: _escape(value) for key, value in node.items()}
    return node


# Compose keys that take a boolean. A passthrough value rendered from a setting arrives as the
# text "True"/"False" ("{{ CADVISOR_PRIVILEGED | flag }}"): it becomes a real boolean, or is
# dropped when false, so the compose file says exactly what is in force.
BOOLEAN_KEYS = {"privileged", "init", "read_only", "tty", "stdin_open"}


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if key in BOOLEAN_KEYS and isinstance(value, str):
            value = parse_bool(value)
            if not value:
                base.pop(key, None)
                continue
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = _merge(dict(base[key]), value)
        else:
            base[key] = value
    return base


def service_document(stack: Stack, service: Service, catalogue: Catalogue,
                     config: Config) -> dict[str, Any]:
    from .updates import lock_of  # env/images.lock: the digest each pinned tag resolved to

    image = lock_of(config.env_dir).pinned(service.image)
    doc: dict[str, Any] = {"image": mirror_image(image, config.get("IMAGE_MIRROR"))}
    if service.entrypoint is not None:
        doc["entrypoint"] = list(service.entrypoint)
    if service.command is not None:
        doc["command"] = list(service.command)
    if service.user:
        doc["user"] = service.user
    if service.environment:
        doc["environment"] = dict(service.environment)
    if service.secret_env or service.credentials_from:
        doc["env_file"] = [secret_env_file(service)]
    volumes = [_volume(v, config, stack, service) for v in service.volumes]
    volumes += [f"./{container_secret_file(service, key)}:{target}:ro"
                for target, key in sso.secret_files(catalogue, service).items()]
    if volumes:
        doc["volumes"] = volumes
    if service.tmpfs:
        doc["tmpfs"] = list(service.tmpfs)
    if service.ports:
        doc["ports"] = [_port(p, config) for p in service.ports]
    networks = [stack.home_network(service), *service.networks]
    if stack.ingress and (service.ingress or not any(s.ingress for s in stack.services)):
        networks += routed_networks(catalogue)
    doc["networks"] = list(dict.fromkeys(networks))
    if service.aliases:
        home = stack.home_network(service)
        doc["networks"] = {net: {"aliases": list(service.aliases)} if net == home
                           else None for net in doc["networks"]}
    health = _healthcheck(service)
    if health:
        doc["healthcheck"] = health
    if service.depends_on:
        doc["depends_on"] = _depends_on(stack, service)
    labels = {STACK_LABEL: stack.name, SERVICE_LABEL: service.name}
    labels.update(traefik_labels(stack, service, config))
    doc["labels"] = labels
    doc["security_opt"] = ["no-new-privileges:true"]
    doc["cap_drop"] = ["ALL"]
    if service.cap_add:
        doc["cap_add"] = list(service.cap_add)
    if service.read_only:
        doc["read_only"] = True
    doc["mem_limit"] = service.memory
    doc["cpus"] = float(service.cpus)
    doc["pids_limit"] = service.pids
    doc["restart"] = "no" if service.oneshot else "unless-stopped"
    return _merge(doc, service.compose)


def compose_document(stack: Stack, catalogue: Catalogue, config: Config) -> dict[str, Any]:
    """The whole compose file of ``stack``: project name, services, external networks."""
    services = {s.name: service_document(stack, s, catalogue, config) for s in stack.services}
    used: list[str] = []
    for doc in services.values():
        used += [n for n in doc["networks"] if n not in used]
    return _escape({
        "name": stack.name,
        "services": services,
        "networks": {net: {"name": net, "external": True} for net in used},
    })
