"""Authentik configured from the catalogue: one blueprint, applied by Authentik's worker.

For every ``auth: sso`` route: a proxy provider in forward-auth mode for its host, an
application for it (grouped by stack), bound to the access groups; the embedded outpost
serves all of them and knows its public URL. For every service with ``oidc:``, an OAuth2/OIDC
provider and application (Grafana logs its users in through it). The access groups are
created once (``state: created``), the first with the bootstrap admin in it, so members added
later in Authentik are kept.

Authentik never deletes what a blueprint no longer lists (contracts/authentik.yaml): a route
that was in the previous render and is gone gets ``state: absent`` entries, and those stay in
the file, so its provider, application and bindings are deleted on the next apply.

Facts (model names, fields, lookups, the tags' meaning) are in contracts/authentik.yaml, and
tests/test_sso.py holds every entry against them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, Problem

if TYPE_CHECKING:
    from .catalogue import Catalogue, Route, Service, Stack

BLUEPRINT_NAME = "stackyard: routes and sign-in clients from the catalogue"
BLUEPRINT_FILE = "blueprints/stackyard.yaml"  # in the auth stack's output folder
MOUNTED_AT = "/blueprints/custom/stackyard.yaml"  # beside the image's own, never instead
SECRETS_AT = "/run/secrets"
PROVIDER_PREFIX = "stackyard "
AUTHORIZATION_FLOW = "default-provider-authorization-implicit-consent"
INVALIDATION_FLOW = "default-provider-invalidation-flow"
EMBEDDED_OUTPOST = "goauthentik.io/outposts/embedded"
SIGNING_KEY = "authentik Self-signed Certificate"
BOOTSTRAP_ADMIN = "akadmin"
OIDC_SCOPES = ("openid", "email", "profile")
# the flows our providers name come from the image's default blueprints; applying those first
# makes a fresh install independent of the order Authentik discovers files in
DEFAULT_BLUEPRINTS = ("Default - Provider authorization flow (implicit consent)",
                      "Default - Provider invalidation flow")


@dataclass(frozen=True)
class Tag:
    """A YAML tag of Authentik's blueprint loader (!Find, !KeyOf, !File)."""

    name: str
    value: Any


def find(model: str, *lookups: tuple[str, str]) -> Tag:
    return Tag("!Find", [model, *[list(pair) for pair in lookups]])


def key_of(entry_id: str) -> Tag:
    return Tag("!KeyOf", entry_id)


@dataclass(frozen=True)
class ForwardAuthApp:
    slug: str  # the router name: unique across the catalogue
    title: str
    host: str
    stack_title: str


@dataclass(frozen=True)
class OidcClient:
    slug: str  # the service name: also its client id
    title: str
    redirect_uri: str
    secret_key: str  # the secret holding its client secret


def secret_file(key: str) -> str:
    """Where Authentik's worker reads a client secret (a secret_files mount)."""
    return f"{SECRETS_AT}/{key.lower().replace('_', '-')}"


def secret_files(catalogue: Catalogue, service: Service) -> dict[str, str]:
    """The service's own secret files, plus, for the one that reads our blueprint (Authentik's
    worker), the client secret of every OIDC client the blueprint's !File tags name."""
    files = dict(service.secret_files)
    if any(v.target == MOUNTED_AT for v in service.volumes):
        files.update({secret_file(c.secret_key): c.secret_key for c in oidc_clients(catalogue)})
    return files


def access_groups(value: str) -> list[str]:
    """SSO_GROUPS as a list; the first gets the bootstrap admin."""
    from .settings import GROUP_NAME_RE  # the setting's own rule

    groups = [g.strip() for g in value.split(",")]
    bad = [g for g in groups if not GROUP_NAME_RE.fullmatch(g)]
    if not value.strip() or bad:
        raise ConfigError(Problem(
            f"SSO_GROUPS names no valid group ({', '.join(map(repr, bad)) or 'empty'})",
            key="SSO_GROUPS", fix="comma-separated names of letters, digits, space, _ . -, "
                                  "e.g. SSO_GROUPS=admins,family"))
    return groups


def forward_auth_apps(catalogue: Catalogue) -> list[ForwardAuthApp]:
    from .catalogue import router_names

    apps = []
    for stack in catalogue.stacks.values():
        for service in stack.services:
            for router, route in zip(router_names(service), service.routes, strict=True):
                if route.auth == "sso":
                    apps.append(ForwardAuthApp(router, route.title or service.name,
                                               route.host, stack.title))
    return apps


def oidc_clients(catalogue: Catalogue, https_port: int | str = 443) -> list[OidcClient]:
    clients = []
    for stack in catalogue.stacks.values():
        for service in stack.services:
            if service.oidc is None:
                continue
            host = _sso_host(stack, service)
            clients.append(OidcClient(service.name, f"{_title(service)} sign-in",
                                      public_url(host, https_port)
                                      + service.oidc.redirect_path, service.oidc.secret))
    return clients


def _sso_host(stack: Stack, service: Service) -> str:
    hosts: list[Route] = [r for r in service.routes]
    if not hosts:
        raise ConfigError(Problem(f"{service.name} has oidc: but no route",
                                  key=f"{stack.name}.{service.name}.oidc",
                                  file=str(stack.directory / "stack.yaml"),
                                  fix="route it (the redirect goes to its host)"))
    return hosts[0].host


def _title(service: Service) -> str:
    return next((r.title for r in service.routes if r.title), service.name)


def previous_slugs(text: str | None) -> set[str]:
    """Forward-auth slugs an earlier blueprint listed (present or already absent)."""
    if not text:
        return set()
    return set(re.findall(r"^\s*slug: (\S+) # forward-auth$", text, re.M))


def public_url(host: str, https_port: int | str = 443) -> str:
    """How a browser reaches ``host`` through Traefik: the outpost matches the host part of
    a provider's external_host, port included, against the request's host."""
    port = int(https_port)
    return f"https://{host}" + ("" if port == 443 else f":{port}")


def blueprint(apps: Sequence[ForwardAuthApp], clients: Sequence[OidcClient],
              groups: Sequence[str], auth_host: str, removed: Iterable[str] = (),
              https_port: int | str = 443) -> dict[str, Any]:
    """The blueprint document (tags as ``Tag``); ``removed``: slugs to delete."""
    entries: list[dict[str, Any]] = [
        {"model": "authentik_blueprints.metaapplyblueprint",
         "attrs": {"identifiers": {"name": name}, "required": False}}
        for name in DEFAULT_BLUEPRINTS]
    flows = {"authorization_flow": find("authentik_flows.flow", ("slug", AUTHORIZATION_FLOW)),
             "invalidation_flow": find("authentik_flows.flow", ("slug", INVALIDATION_FLOW))}
    for index, group in enumerate(groups):
        entry: dict[str, Any] = {"model": "authentik_core.group", "id": f"group-{index}",
                                 "state": "created", "identifiers": {"name": group}}
        if index == 0:
            entry["attrs"] = {"users": [find("authentik_core.user",
                                             ("username", BOOTSTRAP_ADMIN))]}
        entries.append(entry)
    for app in apps:
        entries += [
            {"model": "authentik_providers_proxy.proxyprovider", "id": f"provider-{app.slug}",
             "identifiers": {"name": PROVIDER_PREFIX + app.slug},
             "attrs": {"mode": "forward_single",
                       "external_host": public_url(app.host, https_port), **flows}},
            {"model": "authentik_core.application", "id": f"app-{app.slug}",
             "identifiers": {"slug": app.slug},
             "attrs": {"name": app.title, "provider": key_of(f"provider-{app.slug}"),
                       "group": app.stack_title,
                       "meta_launch_url": public_url(app.host, https_port) + "/",
                       "policy_engine_mode": "any"}},
            *_bindings(f"app-{app.slug}", len(groups))]
    for client in clients:
        entries += [
            {"model": "authentik_providers_oauth2.oauth2provider",
             "id": f"oidc-provider-{client.slug}",
             "identifiers": {"name": PROVIDER_PREFIX + client.slug},
             "attrs": {"client_type": "confidential", "client_id": client.slug,
                       "client_secret": Tag("!File", secret_file(client.secret_key)),
                       "redirect_uris": [{"matching_mode": "strict",
                                          "url": client.redirect_uri}],
                       "property_mappings": [
                           find("authentik_providers_oauth2.scopemapping",
                                ("managed", f"goauthentik.io/providers/oauth2/scope-{scope}"))
                           for scope in OIDC_SCOPES],
                       "signing_key": find("authentik_crypto.certificatekeypair",
                                           ("name", SIGNING_KEY)),
                       **flows}},
            {"model": "authentik_core.application", "id": f"oidc-app-{client.slug}",
             "identifiers": {"slug": f"{client.slug}-oidc"},
             "attrs": {"name": client.title, "provider": key_of(f"oidc-provider-{client.slug}"),
                       "policy_engine_mode": "any"}},
            *_bindings(f"oidc-app-{client.slug}", len(groups))]
    for slug in sorted(set(removed) - {a.slug for a in apps}):
        # the application first: it refers to the provider
        entries += [
            {"model": "authentik_core.application", "state": "absent",
             "identifiers": {"slug": slug}},
            {"model": "authentik_providers_proxy.proxyprovider", "state": "absent",
             "identifiers": {"name": PROVIDER_PREFIX + slug}}]
    entries.append({
        "model": "authentik_outposts.outpost",
        "identifiers": {"managed": EMBEDDED_OUTPOST},
        # replaces the outpost's provider list and settings as a whole (contracts/authentik.yaml)
        "attrs": {"providers": [key_of(f"provider-{a.slug}") for a in apps],
                  "config": {"authentik_host": public_url(auth_host, https_port)}}})
    return {"version": 1, "metadata": {"name": BLUEPRINT_NAME,
                                       "labels": {"managed-by": "stackyard"}},
            "entries": entries}


def _bindings(app_id: str, groups: int) -> list[dict[str, Any]]:
    return [{"model": "authentik_policies.policybinding",
             "identifiers": {"target": key_of(app_id), "group": key_of(f"group-{index}"),
                             "order": index}} for index in range(groups)]


def dump(document: Mapping[str, Any], forward_slugs: Iterable[str] = ()) -> str:
    """YAML text with Authentik's tags; the forward-auth applications' slugs (present or
    absent) marked, so a later render finds them (``previous_slugs``)."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # every value written out, no &id001
            return True

    def tag(dumper: yaml.SafeDumper, data: Tag) -> Any:
        if isinstance(data.value, list):
            return dumper.represent_sequence(data.name, data.value, flow_style=True)
        return dumper.represent_scalar(data.name, str(data.value))

    Dumper.add_representer(Tag, tag)
    text = yaml.dump(dict(document), Dumper=Dumper, sort_keys=False, width=1000,
                     allow_unicode=True)
    marked = set(forward_slugs)
    lines = []
    for line in text.splitlines():
        match = re.fullmatch(r"(\s*)slug: (\S+)", line)
        if match and match.group(2) in marked:
            line = f"{line} # forward-auth"
        lines.append(line)
    header = ("# Generated by `invoke render` from the catalogue (infra/sso.py): do not edit.\n"
              "# Applied by Authentik's worker at start and when it changes.\n")
    return header + "\n".join(lines) + "\n"


def render(catalogue: Catalogue, settings: Mapping[str, str], previous: str | None) -> str:
    apps = forward_auth_apps(catalogue)
    removed = previous_slugs(previous) - {a.slug for a in apps}
    port = settings.get("TRAEFIK_HTTPS_PORT", "443")
    document = blueprint(apps, oidc_clients(catalogue, port),
                         access_groups(settings["SSO_GROUPS"]), f"auth.{settings['DOMAIN']}",
                         removed, port)
    return dump(document, removed | {a.slug for a in apps})
