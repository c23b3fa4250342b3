"""Issuing with cfssl (through plumbum) and writing the files in place."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ConfigError, InfraError, MissingToolError
from ..fsutil import atomic_write
from .constants import CFSSL_HINT, INTERMEDIATE, ROOT
from .plan import Plan, Step
from .spec import PkiSpec, fullchain_path, item_files


class Cfssl:
    """cfssl + cfssljson, found on PATH (or ``search_path``) before anything is written."""

    def __init__(self, search_path: str | None = None):
        from plumbum import local

        found = {}
        for program in ("cfssl", "cfssljson"):
            location = shutil.which(program, path=search_path)
            if location is None:
                raise MissingToolError(program, CFSSL_HINT)
            found[program] = local[location]
        self._cfssl, self._cfssljson = found["cfssl"], found["cfssljson"]

    def _cfssl_json(self, *args: str) -> str:
        from plumbum import ProcessExecutionError

        try:
            return str(self._cfssl(*args))
        except ProcessExecutionError as exc:
            log = [line for line in str(exc.stderr).splitlines() if "[INFO]" not in line]
            raise InfraError(f"cfssl {args[0]} failed: {' '.join(log).strip()}") from None

    def _bare(self, output: str, prefix: Path) -> None:
        (self._cfssljson["-bare", str(prefix)] << output)()

    def init_ca(self, csr_file: Path, prefix: Path) -> None:
        self._bare(self._cfssl_json("gencert", "-loglevel=2", "-initca", str(csr_file)), prefix)

    def sign(self, ca: Path, ca_key: Path, config_file: Path, profile: str, csr: Path,
             prefix: Path) -> None:
        self._bare(self._cfssl_json("sign", "-loglevel=2", f"-ca={ca}", f"-ca-key={ca_key}",
                                    f"-config={config_file}", f"-profile={profile}", str(csr)),
                   prefix)

    def gencert(self, ca: Path, ca_key: Path, config_file: Path, profile: str, csr_file: Path,
                prefix: Path) -> None:
        self._bare(self._cfssl_json("gencert", "-loglevel=2", f"-ca={ca}", f"-ca-key={ca_key}",
                                    f"-config={config_file}", f"-profile={profile}",
                                    str(csr_file)), prefix)


def write_rendered(rendered: Mapping[str, str], rendered_dir: Path) -> list[Path]:
    return [rendered_dir / name for name, text in rendered.items()
            if atomic_write(rendered_dir / name, text, 0o644)]


def apply_plan(plan: Plan, spec: PkiSpec, cfssl: Cfssl, rendered_dir: Path,
               notify: Callable[[Step], None] = lambda step: None,
               now: datetime | None = None) -> list[Path]:
    """Run the plan's steps in a private work folder, then move the results into place.

    Nothing lands in CERTS_DIR unless every step succeeded. Replaced CA files are moved (not
    copied) to CERTS_DIR/replaced/<UTC time>/. Returns the files that changed.
    """
    if plan.problems:
        raise ConfigError(list(plan.problems))
    protected = []
    for key in plan.protect:  # before anything else: a key others could read, no longer
        os.chmod(key, 0o600)
        protected.append(Path(key))
    if plan.empty:
        return protected
    d = spec.certs_dir
    d.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=d))
    produced: dict[str, Path] = {}  # item -> prefix in work

    def current(item: str) -> tuple[Path, Path]:
        if item in produced:
            return Path(f"{produced[item]}.pem"), Path(f"{produced[item]}-key.pem")
        return item_files(d, item)

    profiles = rendered_dir / "cfssl.json"
    try:
        for step in plan.steps:
            notify(step)
            cert_file = item_files(d, step.item)[0]
            prefix = work / cert_file.stem
            if step.item == ROOT:
                cfssl.init_ca(rendered_dir / "ca.json", prefix)
            elif step.item == INTERMEDIATE:
                cfssl.init_ca(rendered_dir / "intermediate-ca.json", prefix)
                root_cert, root_key = current(ROOT)
                cfssl.sign(root_cert, root_key, profiles, "intermediate_ca",
                           Path(f"{prefix}.csr"), prefix)
            else:
                leaf = spec.leaf(step.item)
                inter_cert, inter_key = current(INTERMEDIATE)
                cfssl.gencert(inter_cert, inter_key, profiles, leaf.profile,
                              rendered_dir / leaf.csr_file, prefix)
            produced[step.item] = prefix
        from ..interrupt import shielded

        # a key without its certificate, or a CA replaced without its leaves, is not a state
        # to stop in: the moves finish, then an interruption takes effect
        with shielded("moving the new certificates and keys into place"):
            return protected + _move_into_place(plan, produced, d, now or datetime.now(UTC))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _move_into_place(plan: Plan, produced: Mapping[str, Path], d: Path,
                     now: datetime) -> list[Path]:
    backup = d / "replaced" / now.strftime("%Y%m%dT%H%M%SZ")
    changed = []
    for step in plan.steps:
        prefix = produced[step.item]
        cert, key = item_files(d, step.item)
        files = [(Path(f"{prefix}-key.pem"), key, 0o600), (Path(f"{prefix}.pem"), cert, 0o644),
                 (Path(f"{prefix}.csr"), cert.with_suffix(".csr"), 0o644)]
        if step.action == "replace":
            backup.mkdir(parents=True, exist_ok=True, mode=0o700)
            for _, target, _mode in files:
                if target.exists():
                    os.replace(target, backup / target.name)
        # Key first: a crash in between leaves a cert that plan_certs reissues, not a stray key.
        for source, target, mode in files:
            if source.exists():
                os.chmod(source, mode)
                os.replace(source, target)
                changed.append(target)
    return changed


def chain_contents(spec: PkiSpec) -> dict[Path, str]:
    """The bundles to write: ca-chain.pem (intermediate + root), <leaf>-fullchain.pem."""
    d = spec.certs_dir
    root, _ = item_files(d, ROOT)
    inter, _ = item_files(d, INTERMEDIATE)
    if not (root.is_file() and inter.is_file()):
        return {}
    inter_pem = inter.read_text()
    wanted = {d / "ca-chain.pem": inter_pem + root.read_text()}
    for leaf in spec.leaves:
        cert, _ = item_files(d, leaf.name)
        if cert.is_file():
            wanted[fullchain_path(d, leaf.name)] = cert.read_text() + inter_pem
    return wanted


def write_chains(spec: PkiSpec) -> list[Path]:
    return [path for path, text in chain_contents(spec).items() if atomic_write(path, text, 0o644)]


