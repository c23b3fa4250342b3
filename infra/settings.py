"""What each setting may hold: kinds derived from key names, and their validators.

A key's kind comes from its name (``*_PORT`` is a port, ``*_IMAGE`` an image reference, ...),
so ``env/defaults.env`` stays the one list of settings and a new key needs no code unless it
introduces a new kind. A key whose default is empty is optional; every other key is required.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import PurePosixPath

# Checked in order; the first rule whose test matches the key gives its kind.
KIND_RULES: list[tuple[Callable[[str], bool], str]] = [
    (lambda k: k == "DOMAIN" or k.endswith("_DOMAIN"), "domain"),
    (lambda k: k.endswith("_EMAIL"), "email"),
    (lambda k: k.endswith("_IMAGE"), "image"),
    (lambda k: k.endswith("_PORT"), "port"),
    (lambda k: k in {"PUID", "PGID"} or k.endswith(("_UID", "_GID")), "id"),
    (lambda k: k.endswith("_SOCKET"), "socket"),
    (lambda k: k.endswith(("_ROOT", "_DIR", "_PATH")), "path"),
    (lambda k: k == "ROOTLESS" or k.endswith("_ENABLED"), "bool"),
    (lambda k: k.endswith(("_TIMEOUT", "_SECONDS")), "seconds"),
    (lambda k: k.endswith("_ADDRESS"), "ip"),
    (lambda k: k.endswith("_MIRROR") or k.endswith("_REGISTRY"), "registry"),
    (lambda k: k.endswith("_HOSTS"), "hostlist"),
    (lambda k: k == "UMASK", "umask"),
    (lambda k: k == "TZ", "timezone"),
    (lambda k: k.endswith("_COUNTRY"), "country"),
    (lambda k: k.endswith("_URL") or k == "ACME_CA_SERVER", "url"),
    (lambda k: k.endswith("_USER") or k == "MIMIR_TENANT", "name"),
    (lambda k: k.endswith("_GROUPS"), "groups"),
    (lambda k: k.endswith(("_MAX_FILES", "_KEY_SIZE", "_DAYS")) or k == "HISTORY_KEEP",
     "count"),
    (lambda k: k.startswith("BACKUP_KEEP_"), "keep"),
    (lambda k: k == "BACKUP_REPOSITORY", "repository"),
    (lambda k: k == "BACKUP_SCHEDULE", "calendar"),
    (lambda k: k.endswith(("_MAX_SIZE", "_KEEP_STORAGE")), "size"),
    (lambda k: k.endswith("_EXPIRY"), "hours"),
    (lambda k: k == "CA_KEY_ALGO", "keyalgo"),
    (lambda k: k == "ACME_DNS_PROVIDER", "provider"),
    (lambda k: k == "ALLOW_UNSAFE", "unsafe"),
]

UNSAFE_CHOICES = ("bind-all", "root-ids", "data-root")
SYSTEM_FOLDERS = {"/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/root",
                  "/run", "/sbin", "/sys", "/usr", "/var"}

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
DOMAIN_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
EMAIL_RE = re.compile(rf"^[A-Za-z0-9._%+-]+@{_LABEL}(\.{_LABEL})+$", re.IGNORECASE)
# docker reference grammar, simplified: [registry[:port]/]path[:tag][@digest]
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?"
IMAGE_RE = re.compile(
    rf"^{_REGISTRY}{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
REGISTRY_RE = re.compile(r"^[a-zA-Z0-9.-]+(:[0-9]{1,5})?(/[a-z0-9._/-]+)?$")
TRUE_WORDS = {"true", "yes", "on", "1"}
FALSE_WORDS = {"false", "no", "off", "0"}


def kind_of(key: str) -> str:
    for test, kind in KIND_RULES:
        if test(key):
            return kind
    return "text"


def parse_bool(value: str) -> bool:
    return value.strip().lower() in TRUE_WORDS


def check_value(key: str, value: str) -> tuple[str, str] | None:
    """Validate one non-empty value; return (message, fix) when it is wrong, else None."""
    kind = kind_of(key)
    checker = _CHECKERS.get(kind)
    return checker(value) if checker else None


def _domain(value: str) -> tuple[str, str] | None:
    if DOMAIN_RE.match(value):
        return None
    return (f"{value!r} is not a valid domain name",
            "use lower-case labels of letters, digits and '-', separated by dots, "
            "e.g. localhost or home.example.org")


def _email(value: str) -> tuple[str, str] | None:
    if EMAIL_RE.match(value):
        return None
    return f"{value!r} is not a valid e-mail address", "use the form name@example.org"


def _image(value: str) -> tuple[str, str] | None:
    match = IMAGE_RE.match(value)
    if not match:
        return (f"{value!r} is not a valid image reference",
                "use [registry/]name:tag, e.g. grafana/loki:3.5.5")
    if not match.group("tag") and not match.group("digest"):
        return f"{value!r} has no tag", "pin a specific tag, e.g. name:1.2.3 (never latest)"
    if match.group("tag") == "latest":
        return f"{value!r} uses the moving tag 'latest'", "pin a specific version tag"
    return None


def _port(value: str) -> tuple[str, str] | None:
    if value.isdigit() and 1 <= int(value) <= 65535:
        return None
    return f"{value!r} is not a TCP port", "use a whole number from 1 to 65535"


def _id(value: str) -> tuple[str, str] | None:
    if value.isdigit() and int(value) < 2**31:
        return None
    return f"{value!r} is not a user or group id", "use a whole number from 0 to 2147483647"


def _path(value: str) -> tuple[str, str] | None:
    bad = sorted({ch for ch in value if ch in ":,\n\t" or not ch.isprintable()})
    if bad:
        return (f"{value!r} contains {''.join(bad)!r}, which breaks docker volume specs",
                "choose a path without ':' or ','")
    if ".." in PurePosixPath(value).parts:
        return f"{value!r} contains '..'", "use a path without '..' components"
    return None


def _socket(value: str) -> tuple[str, str] | None:
    problem = _path(value)
    if problem:
        return problem
    if not value.startswith("/"):
        return (f"{value!r} is not an absolute path",
                "use the socket's full path, e.g. /var/run/docker.sock or "
                "/run/user/1000/docker.sock for rootless")
    return None


def _bool(value: str) -> tuple[str, str] | None:
    if value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return None
    return f"{value!r} is not a yes/no value", "use true or false"


def _seconds(value: str) -> tuple[str, str] | None:
    if value.isdigit() and 0 < int(value) <= 86400:
        return None
    return f"{value!r} is not a number of seconds", "use a whole number from 1 to 86400"


def _ip(value: str) -> tuple[str, str] | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address", "use e.g. 127.0.0.1, or 0.0.0.0 for all"
    return None


def _registry(value: str) -> tuple[str, str] | None:
    if "://" not in value and REGISTRY_RE.match(value):
        return None
    return (f"{value!r} is not a registry address",
            "use host[:port] without a scheme, e.g. localhost:5000")


def _hostlist(value: str) -> tuple[str, str] | None:
    for item in (part.strip() for part in value.split(",")):
        if not item:
            return f"{value!r} has an empty entry", "separate names with single commas"
        try:
            ipaddress.ip_address(item)
        except ValueError:
            if not DOMAIN_RE.match(item.removeprefix("*.")):
                return (f"{item!r} is neither a host name nor an IP address",
                        "list host names and IPs separated by commas")
    return None


def _umask(value: str) -> tuple[str, str] | None:
    if re.fullmatch(r"0?[0-7]{3}", value):
        return None
    return f"{value!r} is not a umask", "use three octal digits, e.g. 002 or 022"


def _timezone(value: str) -> tuple[str, str] | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return f"{value!r} is not a known time zone", "use an IANA name, e.g. Etc/UTC"
    return None


def _country(value: str) -> tuple[str, str] | None:
    if re.fullmatch(r"[A-Z]{2}", value):
        return None
    return f"{value!r} is not a country code", "use two capital letters, e.g. US or DE"


def _url(value: str) -> tuple[str, str] | None:
    if re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/%-]*)?", value):
        return None
    return f"{value!r} is not an http(s) URL", "use e.g. https://host:port/path"


GROUP_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}")  # no quote: safe in JMESPath


def _groups(value: str) -> tuple[str, str] | None:
    names = [n.strip() for n in value.split(",")]
    if all(GROUP_NAME_RE.fullmatch(n) for n in names):
        return None
    return (f"{value!r} is not a comma-separated list of group names",
            "names of letters, digits, space and _ . - (e.g. admins,family)")


def _name(value: str) -> tuple[str, str] | None:
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}", value):
        return None
    return (f"{value!r} is not a plain name",
            "use letters, digits and _ . @ - (it lands in configs, headers and URLs unquoted)")


def _count(value: str) -> tuple[str, str] | None:
    if value.isdigit() and 0 < int(value) < 1_000_000:
        return None
    return f"{value!r} is not a positive whole number", "use e.g. 3"


def _keep(value: str) -> tuple[str, str] | None:
    if value.isdigit() and int(value) < 10_000:
        return None
    return f"{value!r} is not a number of snapshots", "use e.g. 7 (0: none of that kind)"


REPOSITORY_RE = re.compile(r"^(?:(?:sftp|s3|rest|b2|azure|gs|swift):[A-Za-z0-9@._:/+~=-]+|"
                           r"[A-Za-z0-9._/~+=-]+)$")


def _repository(value: str) -> tuple[str, str] | None:
    if REPOSITORY_RE.match(value) and ".." not in value.split("/"):
        return None
    return (f"{value!r} is not a folder or a restic repository URL",
            "use e.g. backups, /srv/backups or sftp:backup@nas:/srv/restic (no spaces or "
            "quotes)")


CALENDAR_RE = re.compile(r"^(?:minutely|hourly|daily|weekly|monthly|"
                         r"(?:[A-Za-z]{3}(?:[,.][A-Za-z]{3})* )?[0-9*/,.-]+ [0-9*/,:.-]+)$")


def _calendar(value: str) -> tuple[str, str] | None:
    if CALENDAR_RE.match(value):
        return None
    return (f"{value!r} is not a systemd calendar time this project writes",
            "use daily, weekly, or a time such as *-*-* 03:30:00")


def _size(value: str) -> tuple[str, str] | None:
    if re.fullmatch(r"[0-9]+([kKmMgGtT][bB]?|[bB])?", value):
        return None
    return f"{value!r} is not a size", "use a number with a unit, e.g. 10m or 20GB"


def _hours(value: str) -> tuple[str, str] | None:
    if re.fullmatch(r"[1-9][0-9]*h", value):
        return None
    return f"{value!r} is not a number of hours", "use e.g. 8760h (one year)"


def _keyalgo(value: str) -> tuple[str, str] | None:
    if value in ("ecdsa", "rsa"):
        return None
    return f"{value!r} is not a key algorithm cfssl makes", "use ecdsa or rsa"


def _provider(value: str) -> tuple[str, str] | None:
    if re.fullmatch(r"[a-z0-9][a-z0-9.-]{0,63}", value):
        return None
    return f"{value!r} is not a lego DNS provider name", "use e.g. cloudflare or route53"


def _unsafe(value: str) -> tuple[str, str] | None:
    unknown = [v for v in (x.strip() for x in value.split(",")) if v not in UNSAFE_CHOICES]
    if not unknown:
        return None
    return f"{', '.join(unknown)} is not one of {', '.join(UNSAFE_CHOICES)}", \
        f"list some of {', '.join(UNSAFE_CHOICES)}, comma-separated"


def _unspecified(value: str) -> bool:
    """0.0.0.0, ::, ::0, 0:0:0:0:0:0:0:0...: every address of the host."""
    try:
        return ipaddress.ip_address(value).is_unspecified
    except ValueError:
        return False


def unsafe_problems(values: dict[str, str], resolve_path: Callable[[str], str]
                    ) -> list[tuple[str, str, str]]:
    """(key, message, fix) for each choice that needs ALLOW_UNSAFE and does not have it."""
    allowed = {x.strip() for x in values.get("ALLOW_UNSAFE", "").split(",") if x.strip()}
    found = []
    if _unspecified(values.get("BIND_ADDRESS", "")) and "bind-all" not in allowed:
        found.append(("BIND_ADDRESS", "publishes every service port on every network of the "
                      "host", "bind to 127.0.0.1 or one address, or add bind-all to "
                      "ALLOW_UNSAFE"))
    for key in ("PUID", "PGID"):
        if values.get(key, "").isdigit() and int(values[key]) == 0 and "root-ids" not in allowed:
            found.append((key, "is 0: the media apps and their files would run as root",
                          "use your own user's id (id -u), or add root-ids to ALLOW_UNSAFE"))
    data_root = values.get("DATA_ROOT", "")
    if data_root and resolve_path(data_root) in SYSTEM_FOLDERS and "data-root" not in allowed:
        found.append(("DATA_ROOT", f"resolves to {resolve_path(data_root)}, a system folder: "
                      "data folders' owners and modes would be changed there",
                      "use a folder of its own (e.g. /srv/stackyard), or add data-root to "
                      "ALLOW_UNSAFE"))
    return found


def _text(value: str) -> tuple[str, str] | None:
    if value.isprintable() and not any(ch in value for ch in "'\"\\`$"):
        return None
    return (f"{value!r} contains a control character, a quote, a backslash, a backtick or a $",
            "use plain printable text")


_CHECKERS: dict[str, Callable[[str], tuple[str, str] | None]] = {
    "unsafe": _unsafe,
    "url": _url,
    "name": _name,
    "groups": _groups,
    "count": _count,
    "keep": _keep,
    "repository": _repository,
    "calendar": _calendar,
    "size": _size,
    "hours": _hours,
    "keyalgo": _keyalgo,
    "provider": _provider,
    "text": _text,
    "domain": _domain,
    "email": _email,
    "image": _image,
    "port": _port,
    "id": _id,
    "path": _path,
    "socket": _socket,
    "bool": _bool,
    "seconds": _seconds,
    "ip": _ip,
    "registry": _registry,
    "hostlist": _hostlist,
    "umask": _umask,
    "timezone": _timezone,
    "country": _country,
}
