"""The registry's API and pulls through it (the seed's "Testing the Registry" procedures)."""

from __future__ import annotations

from invoke import Collection, Exit

from ._common import console, infra_task, load, settings

ADDRESS_HELP = "registry host:port (default: localhost:ZOT_PORT)"


def _endpoint(profile: str, address: str):  # type: ignore[no-untyped-def]
    from infra.registry import local_endpoint

    return local_endpoint(settings(profile), address)


def _get(c, endpoint, path: str, headers: tuple[str, ...] = ()) -> str:  # type: ignore[no-untyped-def]
    from infra.registry import curl

    return c.run(curl(endpoint, path, headers=headers), hide=True).stdout


@infra_task(help={"registry": ADDRESS_HELP})
def catalog(c, registry="", profile=""):
    """List the repositories in the registry (/v2/_catalog)."""
    from infra.registry import catalog_path, parse_catalog

    endpoint = _endpoint(profile, registry)
    repositories = parse_catalog(_get(c, endpoint, catalog_path()))
    for name in repositories:
        console().print(name)
    if not repositories:
        console().print("[dim](no repositories yet)[/dim]")


@infra_task(help={"repository": "repository, e.g. docker/library/nginx", "registry": ADDRESS_HELP})
def tags(c, repository, registry="", profile=""):
    """List the tags of a repository (/v2/<name>/tags/list)."""
    from infra.registry import parse_tags, tags_path

    endpoint = _endpoint(profile, registry)
    for tag in parse_tags(_get(c, endpoint, tags_path(repository))):
        console().print(tag)


@infra_task(help={"repository": "repository, e.g. docker/library/nginx",
                  "reference": "tag or digest (default: latest)", "registry": ADDRESS_HELP})
def manifest(c, repository, reference="latest", registry="", profile=""):
    """Print an image manifest (/v2/<name>/manifests/<reference>)."""
    from infra.registry import manifest_headers, manifest_path

    endpoint = _endpoint(profile, registry)
    console().print_json(_get(c, endpoint, manifest_path(repository, reference),
                              manifest_headers()))


@infra_task(help={"term": "text to look for in repository names", "registry": ADDRESS_HELP})
def search(c, term, registry="", profile=""):
    """Search repositories through Zot's search extension (GraphQL GlobalSearch)."""
    from infra.registry import SEARCH_PATH, curl, parse_search, search_body

    endpoint = _endpoint(profile, registry)
    answer = c.run(curl(endpoint, SEARCH_PATH, method="POST", body=search_body(term)),
                   hide=True).stdout
    for name, newest in parse_search(answer):
        console().print(f"{name}  [dim]{newest}[/dim]")


@infra_task(help={"image": "image as you would pull it upstream, e.g. nginx:1.27 or "
                           "ghcr.io/org/app:1.0", "registry": ADDRESS_HELP})
def pull(c, image, registry="", profile=""):
    """Pull an image through the registry's prefixes (docker/, ghcr/, gcr/, quay/, k8s/)."""
    from infra.registry import pull_reference

    reference = pull_reference(image, _endpoint(profile, registry))
    console().print(f"docker pull {reference}")
    c.run(f"docker pull {reference}")


@infra_task(help={"registry": "registry to log in to (default: registry.<DOMAIN>, through "
                              "Traefik)"})
def login(c, registry="", profile=""):
    """Log docker in to the registry as REGISTRY_PULL_USER, with its generated password.

    The password goes to ``docker login --password-stdin`` and is never shown; docker keeps
    it in its credential store."""
    import io
    import shlex

    config = load(profile).config  # the password is generated on first need, like every secret
    host = registry or f"registry.{config['DOMAIN']}"
    user = config["REGISTRY_PULL_USER"]
    result = c.run(f"docker login {shlex.quote(host)} --username {shlex.quote(user)} "
                   "--password-stdin", in_stream=io.StringIO(
                       config.secrets["REGISTRY_PULL_PASSWORD"] + "\n"),
                   hide=True, warn=True)
    if not result.ok:
        raise Exit(f"error: docker could not log in to {host} as {user}: "
                   f"{result.stderr.strip()}\nfix: is the zot stack up (invoke up "
                   "--stack=zot) and does the name resolve to Traefik?", code=1)
    console().print(f"docker is logged in to {host} as {user}")


ns = Collection("registry", catalog, tags, manifest, search, pull, login)
