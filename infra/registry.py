"""The Zot registry's API, as the seed uses it: catalogue, tags, manifests, search, pulls.

Pure: builds the requests (curl command lines, so they run the same through a local Context or
an SSH Connection) and parses the answers. Local access goes straight to the published port
(no SSO), as the seed's "Via HTTP (Local Access)" section does.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from .config import Config
from .errors import InfraError
from .mirror import mirror_image

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


class RegistryError(InfraError):
    """The registry answered something we cannot use."""


@dataclass(frozen=True)
class Endpoint:
    address: str  # host:port
    scheme: str = "http"
    cacert: str = ""  # our root CA when the registry serves TLS

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.address}{path}"


def local_endpoint(config: Config, address: str = "") -> Endpoint:
    """The registry on this host's published port, or ``address`` (host:port) when given."""
    tls = config.flag("ZOT_TLS_ENABLED")
    cacert = str(config.path("CERTS_DIR") / "ca.pem") if tls else ""
    return Endpoint(address or f"localhost:{config['ZOT_PORT']}",
                    "https" if tls else "http", cacert)


def curl(endpoint: Endpoint, path: str, *, method: str = "GET", body: str = "",
         headers: tuple[str, ...] = ()) -> str:
    """A curl command line that fails on HTTP errors and prints only the body."""
    parts = ["curl", "-fsS", "--max-time", "30"]
    if endpoint.cacert:
        parts += ["--cacert", endpoint.cacert]
    if method != "GET":
        parts += ["-X", method]
    for header in headers:
        parts += ["-H", header]
    if body:
        parts += ["-H", "Content-Type: application/json", "--data", body]
    parts.append(endpoint.url(path))
    return shlex.join(parts)


def catalog_path() -> str:
    return "/v2/_catalog"


def tags_path(repository: str) -> str:
    return f"/v2/{repository.strip('/')}/tags/list"


def manifest_path(repository: str, reference: str) -> str:
    return f"/v2/{repository.strip('/')}/manifests/{reference}"


def manifest_headers() -> tuple[str, ...]:
    return (f"Accept: {', '.join(MANIFEST_TYPES)}",)


SEARCH_PATH = "/v2/_zot/ext/search"


def search_body(term: str) -> str:
    """Zot's search extension takes GraphQL: GlobalSearch over repository names."""
    fields = "Repos { Name LastUpdated NewestImage { Tag } }"
    query = f"{{ GlobalSearch(query: {json.dumps(term)}) {{ {fields} }} }}"
    return json.dumps({"query": query})


def _load(text: str, what: str) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"the registry's {what} answer is not JSON: {text[:200]!r}") from exc
    if not isinstance(data, dict):
        raise RegistryError(f"the registry's {what} answer is not an object: {text[:200]!r}")
    return data


def parse_catalog(text: str) -> list[str]:
    return sorted(_load(text, "catalogue").get("repositories") or [])


def parse_tags(text: str) -> list[str]:
    return sorted(_load(text, "tags").get("tags") or [])


def parse_search(text: str) -> list[tuple[str, str]]:
    """(repository, newest tag) pairs from a GlobalSearch answer."""
    data = _load(text, "search")
    if data.get("errors"):
        raise RegistryError(f"search failed: {data['errors']}")
    repos = ((data.get("data") or {}).get("GlobalSearch") or {}).get("Repos") or []
    return [(r.get("Name", ""), ((r.get("NewestImage") or {}).get("Tag") or "")) for r in repos]


def pull_reference(image: str, endpoint: Endpoint) -> str:
    """``image`` pulled through the registry's prefixes (nginx:1.27 -> .../docker/library/...)."""
    return mirror_image(image, endpoint.address)
