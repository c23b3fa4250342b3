"""Image factory: honest local test doubles for every image the rendered stacks reference.

No registry is reachable here, so the end-to-end tests build their own images and push them
to a local registry used as IMAGE_MIRROR (the seed's pull-through pattern). Each image is
tagged with the exact reference the rendered compose file uses after mirror rewriting.

- Where Debian has the real program, the double runs it: nginx (the Mimir balancer and the
  landing page load OUR rendered nginx.conf; its curl runs the TLS health probe), PostgreSQL 15
  (Authentik's database), docker-registry (Zot's /v2/), and nginx again for Traefik's TLS on
  443 with the certificate and key our dynamic config names (doubles/traefik-run). They share
  one debootstrap image (built once, cached by tag).
- Every other image is a busybox double (tests/support/doubles/run), built from the image's
  contract (contracts/*.yaml): it runs as the contract's user in the contract's working
  directory, holds only the programs the contract lists (a health command naming another
  fails as it would in the real image; the double's own busybox lives in /double/bin, off the
  image's PATH), makes the contract's start-up writes where our flags and config move them
  (failing on a read-only root as the real program does), refuses a missing config file named
  on its command line, writes a marker into each declared data volume and exits non-zero when
  it cannot (so a missing ownership fix fails the bring-up), then serves the health endpoints
  the catalogue declares and the ports the contract lists.
- HELPER_IMAGE (busybox) is real busybox.

Images are cached by a content label: unchanged doubles are not rebuilt across runs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra.contracts import Contract, contract_of, contracts_dir, load_contracts
from infra.mirror import mirror_image, split_image
from infra.project import Project

DOUBLES_DIR = Path(__file__).resolve().parent / "doubles"
CACHE_DIR = Path(os.environ.get("STACKYARD_TEST_CACHE", "/var/tmp/stackyard-test"))
LABEL = "io.stackyard.double"
BUSYBOX_BASE = "stackyard-test/busybox-base:1"
DOUBLE_BASE = "stackyard-test/double-base:1"
DEBIAN_PACKAGES = ("postgresql-15", "nginx-light", "docker-registry", "busybox", "curl")
DEBIAN_BASE = "stackyard-test/debian-base:bookworm-1"
# Debian-based: the real programs, plus the images whose programs resolve service names
# (busybox-static links glibc statically and crashes in name lookups; Debian's busybox is
# dynamically linked and resolves like the real busybox image does).
DEBIAN_KINDS = ("postgres", "nginx", "registry", "real-busybox", "mc", "traefik")
DEBIAN_SUITE = "bookworm"
BUSYBOX = "/bin/busybox"
BUSYBOX_LINKS = ("RUN for applet in wget httpd nslookup; do ln -sf /bin/busybox "
                 "/usr/local/bin/$applet; done")

IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# An image with a shell has a userland around it (Alpine's busybox, Debian's coreutils): its
# double gets these in /bin too. Network clients (wget, curl, nc) only when the contract lists them.
CORE_APPLETS = ("cat", "ls", "mkdir", "rm", "cp", "mv", "echo", "test", "[", "id", "env",
                "chown", "chmod", "sleep", "stat", "head", "tail", "grep", "sed", "awk", "date",
                "touch", "ln", "find", "sort", "cut", "tr", "wc", "printf", "true", "false",
                "hostname", "ps", "kill", "uname", "dirname", "basename", "readlink", "xargs",
                "tee", "df", "du", "expr", "seq", "sha1sum", "sha256sum", "mktemp")
# programs a contract may list that the double provides with busybox itself
BUSYBOX_PROGRAMS = {"sh": "sh", "bash": "sh", "ash": "sh", "wget": "wget", "nc": "nc",
                    "cat": "cat", "ls": "ls", "id": "id", "env": "env", "chown": "chown",
                    "mkdir": "mkdir", "sleep": "sleep", "test": "test", "true": "true"}
URL_RE = re.compile(r"https?://(?:127\.0\.0\.1|localhost)(?::(\d+))?(/\S*)?")


@dataclass
class DoubleSpec:
    """What one upstream image must look like to the stacks that use it."""

    upstream: str
    reference: str  # the mirrored reference the rendered compose files use
    kind: str  # busybox | real-busybox | postgres | nginx | registry | lsio | mc
    user: str = "0:0"
    services: list[str] = field(default_factory=list)
    endpoints: list[tuple[int, str]] = field(default_factory=list)
    write_dirs: list[str] = field(default_factory=list)
    workdir: str = "/"
    programs: list[str] = field(default_factory=list)  # absolute paths (the contract's)
    startup_writes: list[str] = field(default_factory=list)  # "path|flag|config key|fatal"
    listens: list[int] = field(default_factory=list)
    path: str = IMAGE_PATH  # the image's PATH


def _repository(image: str) -> str:
    _, path = split_image(image)
    return re.split(r"[:@]", path, maxsplit=1)[0]


def _kind(repository: str) -> str:
    if repository == "library/busybox":
        return "real-busybox"
    if repository == "library/postgres":
        return "postgres"
    if repository == "library/nginx":
        return "nginx"
    if repository == "library/traefik":
        return "traefik"
    if repository.startswith("project-zot/"):
        return "registry"
    if repository.startswith("linuxserver/"):
        return "lsio"
    if repository == "minio/mc":
        return "mc"
    return "busybox"


def double_specs(project: Project) -> list[DoubleSpec]:
    """One spec per distinct image of the catalogue (plus HELPER_IMAGE), in catalogue order."""
    mirror = project.config.get("IMAGE_MIRROR")
    contracts = load_contracts(contracts_dir(project.root))
    values = project.config.public
    specs: dict[str, DoubleSpec] = {}
    helper = project.config["HELPER_IMAGE"]
    specs[helper] = DoubleSpec(helper, mirror_image(helper, mirror), "real-busybox")
    for stack in project.catalogue.stacks.values():
        for service in stack.services:
            if service.image not in specs:
                contract = contract_of(service.image, contracts, values)
                if contract is None:
                    raise RuntimeError(f"{service.image} has no contract: no honest double")
                specs[service.image] = _spec_of(contract, service.image,
                                                mirror_image(service.image, mirror))
            spec = specs[service.image]
            spec.services.append(f"{stack.name}/{service.name}")
            endpoints = []
            if service.health and service.health.http:
                endpoints.append((service.health.http.port, service.health.http.path))
            for word in (service.health.command if service.health else ()):
                for port, path in URL_RE.findall(word):
                    endpoints.append((int(port or 80), path or "/"))
            endpoints += [(r.port, "/") for r in service.routes if r.port]
            endpoints += [(p.target, "/") for p in service.ports if p.protocol == "tcp"]
            for endpoint in endpoints:
                if endpoint not in spec.endpoints:
                    spec.endpoints.append(endpoint)
            for volume in service.volumes:
                if volume.kind == "data" and not volume.read_only \
                        and volume.target not in spec.write_dirs:
                    spec.write_dirs.append(volume.target)
    return list(specs.values())


def _spec_of(contract: Contract, image: str, reference: str) -> DoubleSpec:
    uid, gid = contract.user_ids
    return DoubleSpec(
        image, reference, _kind(_repository(image)), f"{uid}:{gid}",
        workdir=contract.working_dir,
        programs=[str(p) for p in (contract.programs.value if contract.programs else [])],
        startup_writes=[f"{w.path}|{w.flag}|{w.config_key}|{str(w.fatal).lower()}"
                        for w in contract.startup_writes],
        listens=[int(p) for p in (contract.listens.value if contract.listens else [])],
        path=":".join(contract.search_path))


# ---------------------------------------------------------------- building


def docker(engine: Sequence[str], *args: str, check: bool = True, input_: bytes | None = None,
           timeout: float = 600) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run([*engine, *args], capture_output=True, input=input_,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join([*engine, *args])} failed: "
                           f"{result.stderr.decode(errors='replace')[-2000:]}")
    return result


def image_label(engine: Sequence[str], reference: str) -> str | None:
    result = docker(engine, "image", "inspect", "--format",
                    "{{index .Config.Labels \"" + LABEL + "\"}}", reference, check=False)
    return result.stdout.decode().strip() if result.returncode == 0 else None


def busybox_rootfs(target: Path, hidden: bool = False) -> None:
    """A root filesystem of busybox-static with every applet linked: in the usual places, or
    (``hidden``) only in /double/bin, the doubles' own tools, off the image's PATH (a double
    gets the image's programs, and only those, from its contract)."""
    tools = target / ("double/bin" if hidden else "bin")
    tools.mkdir(parents=True)
    for sub in ("tmp", "etc", "bin", "usr/bin", "usr/local/bin", "var/tmp", "root"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    (target / "tmp").chmod(0o1777)
    shutil.copy(BUSYBOX, tools / "busybox")
    if hidden:
        for applet in subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                                     check=True).stdout.split():
            if applet != "busybox":
                (tools / applet).symlink_to("busybox")
    else:
        for applet in subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True,
                                     check=True).stdout.split():
            link = target / applet
            if applet != "bin/busybox" and not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to("/bin/busybox")
    (target / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                           "nobody:x:65534:65534:nobody:/:/bin/false\n")
    (target / "etc" / "group").write_text("root:x:0:\nnobody:x:65534:\n")


def _ensure_busybox_image(engine: Sequence[str], reference: str, hidden: bool) -> str:
    digest = hashlib.sha256(Path(BUSYBOX).read_bytes()).hexdigest()[:16]
    if image_label(engine, reference) == digest:
        return reference
    with tempfile.TemporaryDirectory(prefix="sy-busybox-") as tmp:
        root = Path(tmp) / "rootfs"
        busybox_rootfs(root, hidden)
        tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True,
                             check=True).stdout
        shell = "/double/bin/sh" if hidden else "sh"
        docker(engine, "import", "--change", f"LABEL {LABEL}={digest}", "--change",
               f"ENV PATH={IMAGE_PATH}", "--change", f'CMD ["{shell}"]', "-", reference,
               input_=tar)
    return reference


def ensure_busybox_base(engine: Sequence[str]) -> str:
    """busybox with every applet on the PATH (tests that need a small image)."""
    return _ensure_busybox_image(engine, BUSYBOX_BASE, hidden=False)


def ensure_double_base(engine: Sequence[str]) -> str:
    """busybox in /double/bin only: the base of the contract-built doubles."""
    return _ensure_busybox_image(engine, DOUBLE_BASE, hidden=True)


def debian_archive() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        match = re.search(r"^URIs:\s*(\S+)", sources.read_text(), re.M)
        if match:
            return match.group(1)
    return "http://deb.debian.org/debian"


def ensure_debian_base(engine: Sequence[str]) -> str:
    """debootstrap (minbase + the real programs), imported once and cached by tag (~60 s)."""
    digest = hashlib.sha256(" ".join(DEBIAN_PACKAGES).encode()).hexdigest()[:16]
    if image_label(engine, DEBIAN_BASE) in (digest, ""):  # "" : imported by hand from the cache
        return DEBIAN_BASE
    rootfs = CACHE_DIR / f"debian-{DEBIAN_SUITE}-{digest}"
    if not (rootfs / ".complete").exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["debootstrap", "--variant=minbase",
                        f"--include={','.join(DEBIAN_PACKAGES)}", DEBIAN_SUITE, str(rootfs),
                        debian_archive()], check=True, capture_output=True, timeout=900)
        for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        (rootfs / ".complete").touch()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    result = subprocess.run([*engine, "import", "--change", f"LABEL {LABEL}={digest}", "-",
                             DEBIAN_BASE], stdin=tar.stdout, capture_output=True, timeout=900)
    tar.wait()
    if result.returncode != 0:
        raise RuntimeError(f"docker import of the Debian rootfs failed: {result.stderr!r}")
    return DEBIAN_BASE


def _spec_file(spec: DoubleSpec, broken: bool) -> str:
    ports = sorted({port for port, _ in spec.endpoints} | set(spec.listens)) or [8080]
    health_port, health_path = spec.endpoints[0] if spec.endpoints else (8080, "/")
    lines = {
        "DOUBLE_UPSTREAM": spec.upstream,
        "DOUBLE_PORTS": " ".join(str(p) for p in ports),
        "DOUBLE_WRITE": " ".join(spec.write_dirs),
        "DOUBLE_HEALTH_PORT": str(health_port),
        "DOUBLE_HEALTH_PATH": health_path,
        "DOUBLE_LSIO": "1" if spec.kind == "lsio" else "",
        "DOUBLE_BROKEN": "1" if broken else "",
        "DOUBLE_STARTUP_WRITES": "\n".join(spec.startup_writes),
    }
    return "".join(f"{k}='{v}'\n" for k, v in lines.items())


def _context(spec: DoubleSpec, base: str, directory: Path, broken: bool, puid: str, pgid: str
             ) -> str:
    """Write the build context; returns the Dockerfile text."""
    double = directory / "double"
    double.mkdir(parents=True)
    for name in ("run", "health", "curl", "mc", "postgres-run", "registry-run", "traefik-run"):
        shutil.copy(DOUBLES_DIR / name, double / name)
    (double / "spec").write_text(_spec_file(spec, broken))
    lines = [f"FROM {base}", "COPY double/ /double/"]
    if spec.kind in DEBIAN_KINDS:  # the scripts' /double/bin: the real image's own tools
        lines.append("RUN ln -s /bin /double/bin")
    if spec.kind in ("busybox", "lsio"):
        www = double / "www"
        www.mkdir()
        (www / "index.html").write_text(f"double of {spec.upstream}\n")
        for _, path in spec.endpoints:
            target = www / path.lstrip("/")
            if path.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                (target / "index.html").write_text("ok\n")
            elif path != "/":
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text("ok\n")
        fakes = directory / "fakes"
        fakes.mkdir()
        shell = any(p.rsplit("/", 1)[-1] in ("sh", "bash") for p in spec.programs)
        userland = [f"/bin/{a}" for a in CORE_APPLETS] if shell else []
        for applet in userland:
            location = fakes / applet.lstrip("/")
            location.parent.mkdir(parents=True, exist_ok=True)
            location.write_text(f"#!/double/bin/sh\nexec /double/bin/busybox "
                                f"{applet.rsplit('/', 1)[-1]} \"$@\"\n")
            location.chmod(0o755)
        for program in spec.programs:
            location = fakes / program.lstrip("/")
            location.parent.mkdir(parents=True, exist_ok=True)
            name = program.rsplit("/", 1)[-1]
            if name == "curl":
                shutil.copy(DOUBLES_DIR / "curl", location)
            elif name in BUSYBOX_PROGRAMS:
                location.write_text(f"#!/double/bin/sh\nexec /double/bin/busybox "
                                    f"{BUSYBOX_PROGRAMS[name]} \"$@\"\n")
            else:  # the image's own program: its health subcommand answers like the real one
                location.write_text("#!/double/bin/sh\nexec /double/health \"$@\"\n")
            location.chmod(0o755)
        if spec.kind == "lsio":
            etc = fakes / "etc"
            etc.mkdir()
            (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                        f"abc:x:{puid}:{pgid}:abc:/config:/bin/false\n")
            (etc / "group").write_text(f"root:x:0:\nabc:x:{pgid}:\n")
        lines += ["COPY fakes/ /", f"ENV PATH={spec.path}", f"WORKDIR {spec.workdir}",
                  f"USER {spec.user}",
                  'ENTRYPOINT ["/double/run"]']
    elif spec.kind == "real-busybox":
        lines += [BUSYBOX_LINKS, 'CMD ["sh"]']
    elif spec.kind == "mc":
        lines += [BUSYBOX_LINKS + " && cp /double/mc /usr/bin/mc", 'ENTRYPOINT ["mc"]']
    elif spec.kind == "postgres":
        lines += ['RUN echo "postgres-double:x:70:70::/tmp:/bin/sh" >> /etc/passwd'
                  ' && echo "postgres-double:x:70:" >> /etc/group'
                  # as in the postgres image: the socket folder belongs to uid 70 (3777)
                  " && chown 70:70 /var/run/postgresql && chmod 3777 /var/run/postgresql",
                  "ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:"
                  "/usr/sbin:/usr/bin:/sbin:/bin",
                  "USER 70:70", 'ENTRYPOINT ["/double/postgres-run"]']
    elif spec.kind == "nginx":
        lines += [BUSYBOX_LINKS, 'ENTRYPOINT ["nginx", "-g", "daemon off;"]']
    elif spec.kind == "traefik":
        # the in-image health command asks the ping entry point, as the real one does
        lines += [BUSYBOX_LINKS + " && printf '#!/bin/sh\\nexec wget -q -O /dev/null "
                  "http://127.0.0.1:8080/ping\\n' > /usr/local/bin/traefik"
                  " && chmod 755 /usr/local/bin/traefik",
                  f"USER {spec.user}", 'ENTRYPOINT ["/double/traefik-run"]']
    elif spec.kind == "registry":
        lines += ['ENTRYPOINT ["/double/registry-run"]', 'CMD ["serve", "/etc/zot/config.json"]']
    return "\n".join(lines) + "\n"


def _context_digest(directory: Path, dockerfile: str, base_id: str) -> str:
    digest = hashlib.sha256((dockerfile + base_id).encode())
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(directory)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def build_double(engine: Sequence[str], spec: DoubleSpec, reference: str | None = None,
                 broken: bool = False, puid: str = "1000", pgid: str = "1000") -> str:
    """Build (unless cached) the double of ``spec`` as ``reference``; returns the reference."""
    reference = reference or spec.reference
    base = ensure_debian_base(engine) if spec.kind in DEBIAN_KINDS else ensure_double_base(engine)
    base_id = docker(engine, "image", "inspect", "--format", "{{.Id}}", base).stdout.decode()
    with tempfile.TemporaryDirectory(prefix="sy-double-") as tmp:
        directory = Path(tmp)
        dockerfile = _context(spec, base, directory, broken, puid, pgid)
        digest = _context_digest(directory, dockerfile, base_id)
        if image_label(engine, reference) == digest:
            return reference
        (directory / "Dockerfile").write_text(dockerfile + f"LABEL {LABEL}={digest}\n")
        result = subprocess.run([*engine, "build", "-q", "--network", "none", "-t", reference,
                                 str(directory)],
                                capture_output=True, timeout=600,
                                env={**os.environ, "DOCKER_BUILDKIT": "0"})
        if result.returncode != 0:
            raise RuntimeError(f"building the double {reference} failed: "
                               f"{result.stderr.decode(errors='replace')[-2000:]}")
    return reference


def forget_doubles(references: Sequence[str], engine: Sequence[str] = ("docker",)) -> None:
    """Untag doubles built for a one-off registry port (the layers stay, shared with the
    fixed port's tags), so runs that found the fixed port busy leave no tags behind."""
    if references:
        subprocess.run([*engine, "rmi", *references], capture_output=True, timeout=300)


def ensure_doubles(project: Project, engine: Sequence[str] = ("docker",), push: bool = True
                   ) -> list[str]:
    """Build every double and push it to IMAGE_MIRROR (the local registry); returns references."""
    references = []
    puid, pgid = project.config["PUID"], project.config["PGID"]
    for spec in double_specs(project):
        references.append(build_double(engine, spec, puid=puid, pgid=pgid))
    if push:
        for reference in references:
            docker(engine, "push", "-q", reference, timeout=900)
    return references
