"""Engine command lines, built as plain strings (run by the caller through ``c.run``)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

q = shlex.quote
MANAGED_LABEL = "io.stackyard.managed=true"
PS_FORMAT = ("{{.Label \"com.docker.compose.project\"}}\t{{.Label \"com.docker.compose.service\"}}"
             "\t{{.ID}}\t{{.Names}}\t{{.State}}\t{{.Status}}\t{{.Ports}}")


@dataclass(frozen=True)
class ComposeTarget:
    """Where a stack's rendered compose file is, and the project name it runs under. Without
    the files (``by_name``), compose finds a project's containers by its name: what day-2
    commands (ps, logs, restart, down) need."""

    project: str
    directory: Path | None = None
    compose_file: Path | None = None
    program: str = "docker compose"  # or the plugin binary itself (enginehost.compose_program)

    @classmethod
    def by_name(cls, project: str) -> ComposeTarget:
        return cls(project)

    def base(self) -> str:
        files = (f" --project-directory {q(str(self.directory))} -f {q(str(self.compose_file))}"
                 if self.directory is not None and self.compose_file is not None else "")
        return f"{self.program} -p {q(self.project)}{files}"


def compose(target: ComposeTarget, *args: str) -> str:
    return " ".join([target.base(), *args])


def compose_up(target: ComposeTarget, services: Sequence[str], wait_timeout: int,
               force_recreate: bool = False, no_deps: bool = False,
               progress_json: bool = False) -> str:
    # --progress json: one event per line (infra/bringup/progress.py reads them live)
    args = ["--progress json"] if progress_json else []
    args += ["up", "-d", "--remove-orphans", "--wait", f"--wait-timeout {int(wait_timeout)}"]
    if force_recreate:
        args.append("--force-recreate")
    if no_deps:
        args.append("--no-deps")
    return compose(target, *args, *(q(s) for s in services))


def compose_start_oneshot(target: ComposeTarget, services: Sequence[str]) -> str:
    # `--wait` reports a one-shot job that exited 0 as a failure: start it, then `wait` on it.
    return compose(target, "up", "-d", "--no-deps", *(q(s) for s in services))


def compose_wait(target: ComposeTarget, service: str) -> str:
    """Print the job's exit code once it stops (``docker wait`` also sees exited containers)."""
    return f"docker wait $({compose(target, 'ps', '-a', '-q', q(service))})"


def compose_logs(target: ComposeTarget, services: Sequence[str] = (), tail: int | None = None,
                 follow: bool = False, timestamps: bool = False) -> str:
    args = ["logs", "--no-color"]
    if tail is not None:
        args.append(f"--tail {int(tail)}")
    if follow:
        args.append("-f")
    if timestamps:
        args.append("-t")
    return compose(target, *args, *(q(s) for s in services))


def list_networks() -> str:
    """Name and short ID of every network, tab separated (the ID names its bridge: br-<ID>)."""
    return "docker network ls --format '{{.Name}}\t{{.ID}}'"


def create_network(name: str, internal: bool = False) -> str:
    flag = " --internal" if internal else ""
    return f"docker network create{flag} --label {MANAGED_LABEL} {q(name)}"


def list_containers() -> str:
    """Every compose-managed container (one call; callers keep the projects they need)."""
    return ("docker ps -a --no-trunc --filter label=com.docker.compose.project "
            f"--format {q(PS_FORMAT)}")


def inspect_health(container: str) -> str:
    return ("docker inspect --format "
            + q("{{if .State.Health}}{{range .State.Health.Log}}{{.ExitCode}}: {{.Output}}\n"
                "{{end}}{{else}}{{.State.Status}} exit {{.State.ExitCode}} {{.State.Error}}{{end}}")
            + f" {q(container)}")


def helper_run(image: str, script: str, network: str = "none",
               mounts: Sequence[str] = (), name: str = "",
               binds: Sequence[tuple[str, str]] = ()) -> str:
    """A one-shot container of the helper image (busybox: sh, wget, chown, stat). ``binds``:
    read-only files (source, target) that must exist (--mount refuses a missing source)."""
    parts = ["docker run --rm --pull missing", f"--network {q(network)}", "--user 0:0"]
    if name:
        parts.append(f"--name {q(name)}")
    parts += [f"-v {q(m)}" for m in mounts]
    parts += [f"--mount {q(f'type=bind,source={s},target={t},readonly')}" for s, t in binds]
    parts += ["--entrypoint sh", q(image), "-c", q(script)]
    return " ".join(parts)


def stack_images(project: str) -> str:
    """For a compose project: a line per container (``container``, service, the image
    reference it was created from, the image ID), then one per image (``image``, ID, its
    registry digests): what the deploy history records (facts.parse_stack_images)."""
    label = q(f"com.docker.compose.project={project}")
    fmt = q('container\t{{index .Config.Labels "com.docker.compose.service"}}\t'
            '{{.Config.Image}}\t{{.Image}}')
    # json, not join: some engines hand the template RepoDigests as []interface{}
    image_fmt = q('image\t{{.Id}}\t{{json .RepoDigests}}')
    return (f"ids=$(docker ps -aq --filter label={label}); [ -n \"$ids\" ] || exit 0; "
            f"docker inspect --format {fmt} $ids && "
            f"docker image inspect --format {image_fmt} "
            "$(docker inspect --format '{{.Image}}' $ids | sort -u)")
