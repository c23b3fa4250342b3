"""What a registry offers for an image: its tags, and the digest a tag resolves to.

The Docker Registry HTTP API v2 (the OCI distribution spec): ``GET /v2/<name>/tags/list``
(paged by ``Link`` headers) and ``HEAD /v2/<name>/manifests/<tag>`` (its digest in the
``Docker-Content-Digest`` header). A registry that wants a token answers 401 with a
``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` challenge; an anonymous token
from that realm is fetched once per repository. Through IMAGE_MIRROR when it is set: the
mirror is asked under the path it serves the image at (infra.mirror).

The network is untrusted: every answer is size-capped, parsed strictly and time-limited, and
every failure becomes a ``RegistryError`` naming the image and the registry (never a
traceback); callers report it per image.
"""

from __future__ import annotations

import ipaddress
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .mirror import mirror_image, split_image

MAX_BODY = 4 << 20  # a tag list of tens of thousands of tags fits; anything larger is refused
MAX_PAGES = 50
TIMEOUT = 10.0
TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))


class RegistryError(Exception):
    """A registry could not answer for an image (unreachable, refused, malformed)."""


@dataclass(frozen=True)
class Repository:
    """Where an image's tags are asked for: the registry's base URL and the repository."""

    base: str  # https://registry.example:443 (http:// for a loopback registry)
    name: str  # library/nginx
    registry: str  # the host as written in references (docker.io, quay.io, 127.0.0.1:5000)

    @property
    def shown(self) -> str:
        return f"{self.registry}/{self.name}"


def repository_of(reference: str, mirror: str = "") -> Repository:
    """The repository an image reference is pulled from (through ``mirror`` when set)."""
    name = mirror_image(reference, mirror) if mirror else reference
    registry, path = split_image(name)
    path = path.split("@", 1)[0]
    head, _, last = path.rpartition("/")
    repository = f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]
    host = "registry-1.docker.io" if registry == "docker.io" else registry
    scheme = "http" if _loopback(host) else "https"
    return Repository(f"{scheme}://{host}", repository, registry)


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


Fetch = Callable[[urllib.request.Request], tuple[int, Mapping[str, str], bytes]]


def http_fetch(ca_file: Path | None = None) -> Fetch:
    """A fetch over urllib: verified TLS (the system's CAs, and ``ca_file``: our own root,
    for the Zot mirror), capped bodies, no redirects to other schemes."""
    context = ssl.create_default_context()
    if ca_file is not None and ca_file.is_file():
        context.load_verify_locations(cafile=str(ca_file))
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))

    def fetch(request: urllib.request.Request) -> tuple[int, Mapping[str, str], bytes]:
        try:
            with opener.open(request, timeout=TIMEOUT) as answer:
                return answer.status, dict(answer.headers), _capped(answer)
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers or {}), b""

    return fetch


def _capped(answer: Any) -> bytes:
    body = answer.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise RegistryError(f"answered more than {MAX_BODY >> 20} MiB")
    return bytes(body)


class Client:
    """Asks registries about images; one per run (it keeps the tokens it was given)."""

    def __init__(self, fetch: Fetch | None = None):
        self.fetch = fetch or http_fetch()
        self.tokens: dict[str, str] = {}

    def tags(self, repo: Repository) -> list[str]:
        """Every tag of ``repo`` (all pages)."""
        url: str | None = f"{repo.base}/v2/{repo.name}/tags/list?n=1000"
        found: list[str] = []
        for _ in range(MAX_PAGES):
            if url is None:
                break
            status, headers, body = self._get(repo, url, "GET")
            if status != 200:
                raise RegistryError(_status_text(status, repo))
            try:
                document = json.loads(body)
            except ValueError:
                raise RegistryError(f"{repo.shown}: the tag list is not JSON") from None
            tags = document.get("tags") if isinstance(document, dict) else None
            if tags is None and isinstance(document, dict):
                tags = []  # a repository without tags
            if not isinstance(tags, list):
                raise RegistryError(f"{repo.shown}: the tag list has no list 'tags'")
            found += [t for t in tags if isinstance(t, str) and TAG_RE.match(t)]
            url = _next_page(repo, headers)
        return found

    def digest(self, repo: Repository, tag: str) -> str:
        """The digest ``tag`` resolves to now (``sha256:...``)."""
        if not TAG_RE.match(tag):
            raise RegistryError(f"{repo.shown}: {tag!r} is not a tag")
        status, headers, _ = self._get(repo, f"{repo.base}/v2/{repo.name}/manifests/{tag}",
                                       "HEAD", accept=MANIFEST_TYPES)
        if status != 200:
            raise RegistryError(_status_text(status, repo, tag))
        digest = _header(headers, "Docker-Content-Digest")
        if not DIGEST_RE.match(digest):
            raise RegistryError(f"{repo.shown}:{tag}: the registry gave no sha256 digest")
        return digest

    def _get(self, repo: Repository, url: str, method: str, accept: str = ""
             ) -> tuple[int, Mapping[str, str], bytes]:
        for attempt in range(2):
            request = urllib.request.Request(url, method=method)
            if accept:
                request.add_header("Accept", accept)
            token = self.tokens.get(repo.shown)
            if token:
                request.add_header("Authorization", f"Bearer {token}")
            try:
                status, headers, body = self.fetch(request)
            except RegistryError as exc:
                raise RegistryError(f"{repo.shown}: {exc}") from None
            except (OSError, urllib.error.URLError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise RegistryError(f"{repo.shown}: cannot reach {repo.base} ({reason})"
                                    ) from None
            if status == 401 and attempt == 0:
                challenge = _header(headers, "WWW-Authenticate")
                if challenge.lower().startswith("bearer "):
                    self.tokens[repo.shown] = self._token(repo, challenge)
                    continue
            return status, headers, body
        return status, headers, body

    def _token(self, repo: Repository, challenge: str) -> str:
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = fields.get("realm", "")
        if not realm.startswith("https://") and not (realm.startswith("http://")
                                                     and repo.base.startswith("http://")):
            raise RegistryError(f"{repo.shown}: the token service {realm!r} is not https")
        query = {k: fields[k] for k in ("service", "scope") if k in fields}
        query.setdefault("scope", f"repository:{repo.name}:pull")
        request = urllib.request.Request(f"{realm}?{urllib.parse.urlencode(query)}")
        try:
            status, _, body = self.fetch(request)
        except (OSError, urllib.error.URLError, ValueError, RegistryError) as exc:
            raise RegistryError(f"{repo.shown}: no token from {realm} ({exc})") from None
        try:
            document = json.loads(body) if status == 200 else {}
        except ValueError:
            document = {}
        token = document.get("token") or document.get("access_token") \
            if isinstance(document, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{repo.shown}: no anonymous pull token from {realm} "
                                f"(HTTP {status})")
        return token


def _header(headers: Mapping[str, str], name: str) -> str:
    return next((str(v) for k, v in headers.items() if k.lower() == name.lower()), "")


def _next_page(repo: Repository, headers: Mapping[str, str]) -> str | None:
    link = _header(headers, "Link")
    match = re.match(r'\s*<([^>]+)>\s*;\s*rel="?next"?', link)
    if not match:
        return None
    target = urllib.parse.urljoin(repo.base + "/", match[1])
    if not target.startswith(repo.base + "/v2/"):
        raise RegistryError(f"{repo.shown}: a next page outside the registry ({target})")
    return target


def _status_text(status: int, repo: Repository, tag: str = "") -> str:
    what = f"{repo.shown}:{tag}" if tag else repo.shown
    if status == 404:
        return f"{what}: not found on {repo.base}"
    if status in (401, 403):
        return f"{what}: {repo.base} refused anonymous access (HTTP {status})"
    return f"{what}: {repo.base} answered HTTP {status}"
