"""The bring-up core without an engine: planning, scheduling, state, command construction.

The shell scripts the core builds (ownership fix, HTTP probes) are run with the real busybox
sh/wget/httpd, not inspected as text.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from invoke import MockContext, Result

from infra.bringup import facts, ownership, plan, probes, report, schedule, state
from infra.bringup.apply import bring_up_stack
from infra.bringup.commands import ComposeTarget
from infra.bringup.session import prepare_stacks
from infra.catalogue import networks
from infra.fsutil import combined_digest
from tests.conftest import require_program
from tests.support.registry import free_port
from tests.support.rendering import load

pytestmark = pytest.mark.unit

PS_LINES = (
    "traefik\ttraefik\tabc123\ttraefik-traefik-1\trunning\tUp 3 minutes (healthy)\t"
    "0.0.0.0:80->80/tcp\n"
    "minio\tminio-setup\tdef456\tminio-minio-setup-1\texited\tExited (0) 2 minutes ago\t\n"
    "minio\tminio\t789abc\tminio-minio-1\trunning\tUp 2 minutes (health: starting)\t\n"
)


@pytest.fixture
def project(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load(tmp_path)


def _running(project, names):  # type: ignore[no-untyped-def]
    """Every service of ``names`` running and healthy (jobs exited 0)."""
    found = {}
    for name in names:
        found[name] = [facts.ContainerFact(name, s.name, f"id-{s.name}", f"{name}-{s.name}-1",
                                           "exited" if s.oneshot else "running",
                                           "" if s.oneshot else "healthy", 0)
                       for s in project.catalogue[name].services]
    return found


def _prepared(project):  # type: ignore[no-untyped-def]
    names = plan.select_stacks(project.catalogue, None, False)
    return names, prepare_stacks(project, names, write=False)


def test_parse_docker_ps_lines() -> None:
    parsed = facts.parse_containers(PS_LINES)
    assert [(f.project, f.service, f.state, f.health, f.exit_code) for f in parsed] == [
        ("traefik", "traefik", "running", "healthy", 0),
        ("minio", "minio-setup", "exited", "", 0),
        ("minio", "minio", "running", "starting", 0),
    ]
    assert set(facts.containers_by_project(parsed)) == {"traefik", "minio"}


def test_parse_compose_ps_json_lines() -> None:
    text = ('{"Project":"auth","Service":"postgresql","ID":"1","Name":"auth-postgresql-1",'
            '"State":"running","Health":"unhealthy","ExitCode":0,"Publishers":[{"URL":"127.0.0.1",'
            '"TargetPort":5432,"PublishedPort":5432,"Protocol":"tcp"}]}\n')
    (fact,) = facts.parse_compose_ps(text)
    assert (fact.service, fact.health, fact.ports) == ("postgresql", "unhealthy",
                                                        "127.0.0.1:5432->5432")


def test_selection_adds_dependencies_unless_no_deps(project) -> None:  # type: ignore[no-untyped-def]
    catalogue = project.catalogue
    with_deps = plan.select_stacks(catalogue, ["monitoring"], no_deps=False)
    assert set(with_deps) == {"monitoring", *catalogue["monitoring"].depends_on,
                              *(d for dep in catalogue["monitoring"].depends_on
                                for d in catalogue[dep].depends_on)}
    assert with_deps[-1] == "monitoring"
    assert plan.select_stacks(catalogue, ["monitoring"], no_deps=True) == ["monitoring"]


def test_first_up_creates_everything_in_layers(project) -> None:  # type: ignore[no-untyped-def]
    names, prepared = _prepared(project)
    up = plan.plan_up(project.catalogue, names, {n: p.digest for n, p in prepared.items()},
                      {n: p.files for n, p in prepared.items()}, {}, {}, ["bridge"])
    assert {s.action for s in up.steps.values()} == {plan.CREATE}
    assert sorted(up.networks_to_create) == sorted(networks(project.catalogue))
    seen: set[str] = set()
    for layer in up.layers:  # every stack after all of its dependencies
        for name in layer:
            assert set(project.catalogue[name].depends_on) <= seen
        seen.update(layer)
    owners = {f.source: f.owner for f in up.ownership}
    for stack in project.catalogue.stacks.values():
        for _, volume in (x for x in ((s, v) for s in stack.services for v in s.volumes)
                          if x[1].kind == "data"):
            assert volume.source in owners
            if volume.owner:
                assert owners[volume.source] is not None


def test_second_up_with_nothing_changed_is_a_no_op(project) -> None:  # type: ignore[no-untyped-def]
    names, prepared = _prepared(project)
    records = {n: state.StackRecord(p.digest, p.files) for n, p in prepared.items()}
    up = plan.plan_up(project.catalogue, names, {n: p.digest for n, p in prepared.items()},
                      {n: p.files for n, p in prepared.items()}, records,
                      _running(project, names), networks(project.catalogue))
    assert up.empty
    assert up.ownership == []


def test_a_changed_mounted_file_updates_only_its_stack_and_services(project  # type: ignore[no-untyped-def]
                                                                   ) -> None:
    names, prepared = _prepared(project)
    records = {n: state.StackRecord(p.digest, p.files) for n, p in prepared.items()}
    stack = next(s for s in project.catalogue.stacks.values()
                 if any(v.kind == "config" for sv in s.services for v in sv.volumes))
    service, volume = next((sv, v) for sv in stack.services for v in sv.volumes
                           if v.kind == "config")
    changed = next(path for path in prepared[stack.name].files
                   if path == volume.source or path.startswith(volume.source + "/"))
    files = {n: dict(p.files) for n, p in prepared.items()}
    files[stack.name][changed] = "0" * 64
    digests = {n: combined_digest(f) for n, f in files.items()}
    up = plan.plan_up(project.catalogue, names, digests, files, records,
                      _running(project, names), networks(project.catalogue))
    assert up.to_apply == [stack.name]
    step = up.steps[stack.name]
    assert step.action == plan.UPDATE and changed in step.changed_files
    assert service.name in step.recreate
    untouched = [s.name for s in stack.services
                 if not any(v.kind == "config" and (v.source == changed or
                                                     changed.startswith(v.source + "/"))
                            for v in s.volumes)]
    assert not set(untouched) & set(step.recreate)


def test_a_renewed_key_updates_its_stack_and_recreates_who_copies_it(project  # type: ignore[no-untyped-def]
                                                                       ) -> None:
    """A key file changed (renewed) while nothing rendered did: the stack is updated, its key
    copies refreshed and the services that mount one recreated (a bind-mounted file keeps the
    old inode until then); the others stay."""
    import os

    certs = project.config.path("CERTS_DIR")
    certs.mkdir(parents=True, exist_ok=True)
    key = certs / "ingress-key.pem"
    key.write_text("KEY-1\n")
    names, prepared = _prepared(project)
    assert plan.KEYS_STATE in prepared["traefik"].files
    records = {n: state.StackRecord(p.digest, p.files) for n, p in prepared.items()}
    key.write_text("KEY-2\n")
    os.utime(key, ns=(1, 1))  # a different time for sure, whatever the clock's resolution
    _, again = _prepared(project)
    up = plan.plan_up(project.catalogue, names, {n: p.digest for n, p in again.items()},
                      {n: p.files for n, p in again.items()}, records,
                      _running(project, names), networks(project.catalogue))
    assert up.to_apply == ["traefik"]
    assert up.steps["traefik"].recreate == ("traefik",)
    assert [k.copy for k in up.keys] == ["keys/traefik/traefik/ingress-key.pem"]


def test_an_unhealthy_or_missing_service_is_brought_up_again(project  # type: ignore[no-untyped-def]
                                                            ) -> None:
    names, prepared = _prepared(project)
    records = {n: state.StackRecord(p.digest, p.files) for n, p in prepared.items()}
    running = _running(project, names)
    running["traefik"] = running["traefik"][1:]  # one container gone
    first = running["auth"][0]
    running["auth"][0] = facts.ContainerFact(first.project, first.service, first.container_id,
                                             first.name, "running", "unhealthy", 0)
    up = plan.plan_up(project.catalogue, names, {n: p.digest for n, p in prepared.items()},
                      {n: p.files for n, p in prepared.items()}, records, running,
                      networks(project.catalogue))
    assert set(up.to_apply) == {"traefik", "auth"}
    assert "no container" in up.steps["traefik"].reason
    assert "unhealthy" in up.steps["auth"].reason


# The per-stack decision of plan_up as data: facts in (the record of the last good bring-up,
# the files rendered now, the containers the engine has), the step out (action, reason).
# One stack of the real catalogue: minio (a daemon and a one-shot job).
_RECORD, _FILES = "d-1", {"compose.yaml": "a" * 64}
_DAEMON = ("running", "healthy", 0)
UP_STEP_CASES = [
    # case, record (digest, files) or None, files now, minio / minio-setup (state, health, exit)
    ("first bring-up", None, _FILES, None, None, plan.CREATE, "not running"),
    ("containers but no record", None, _FILES, _DAEMON, ("exited", "", 0),
     plan.UPDATE, "no record of a successful bring-up"),
    ("nothing changed", (_RECORD, _FILES), _FILES, _DAEMON, ("exited", "", 0),
     plan.SKIP, "unchanged"),
    ("a file changed", (_RECORD, _FILES), {"compose.yaml": "b" * 64}, _DAEMON,
     ("exited", "", 0), plan.UPDATE, "changed: compose.yaml"),
    ("the job failed", (_RECORD, _FILES), _FILES, _DAEMON, ("exited", "", 3),
     plan.UPDATE, "minio-setup exited 3"),
    ("the job's container is gone", (_RECORD, _FILES), _FILES, _DAEMON, None,
     plan.UPDATE, "minio-setup has no container"),
    ("the daemon stopped", (_RECORD, _FILES), _FILES, ("exited", "", 137), ("exited", "", 0),
     plan.UPDATE, "minio is exited"),
    ("the daemon is unhealthy", (_RECORD, _FILES), _FILES, ("running", "unhealthy", 0),
     ("exited", "", 0), plan.UPDATE, "minio is unhealthy"),
    ("the daemon still starts", (_RECORD, _FILES), _FILES, ("running", "starting", 0),
     ("exited", "", 0), plan.SKIP, "unchanged"),
]


@pytest.mark.parametrize(("case", "record", "files", "daemon", "job", "action", "reason"),
                         UP_STEP_CASES, ids=[c[0] for c in UP_STEP_CASES])
def test_up_step_from_facts(project, case, record, files, daemon, job, action, reason  # type: ignore[no-untyped-def]
                            ) -> None:
    stack = project.catalogue["minio"]
    assert [s.name for s in stack.services] == ["minio", "minio-setup"]  # the table's columns
    containers = [facts.ContainerFact("minio", name, f"id-{name}", f"minio-{name}-1", *fact)
                  for name, fact in (("minio", daemon), ("minio-setup", job)) if fact]
    digest = _RECORD if files == _FILES else "d-2"
    records = {"minio": state.StackRecord(*record)} if record else {}
    up = plan.plan_up(project.catalogue, ["minio"], {"minio": digest}, {"minio": files},
                      records, {"minio": containers}, networks(project.catalogue))
    step = up.steps["minio"]
    assert (step.action, step.reason) == (action, reason), case


def test_down_goes_in_reverse_dependency_order(project) -> None:  # type: ignore[no-untyped-def]
    names = plan.select_stacks(project.catalogue, None, False)
    down = plan.plan_down(project.catalogue, None, _running(project, ["traefik"]), False)
    position = {n: i for i, n in enumerate(down.order)}
    for name in names:
        for dep in project.catalogue[name].depends_on:
            assert position[name] < position[dep]
    assert down.steps["traefik"].action == plan.STOP
    assert all(down.steps[n].action == plan.ABSENT for n in names if n != "traefik")
    assert any("stop and remove traefik" in line for line in report.down_plan_lines(down))


def test_state_round_trip_and_forget(tmp_path: Path) -> None:
    state.record_stack(tmp_path, "a", state.StackRecord("d1", {"compose.yaml": "x"}))
    state.record_stack(tmp_path, "b", state.StackRecord("d2"))
    assert state.load_state(tmp_path)["a"] == state.StackRecord("d1", {"compose.yaml": "x"})
    state.forget_stack(tmp_path, "a")
    assert set(state.load_state(tmp_path)) == {"b"}
    (tmp_path / state.STATE_FILE).write_text("{broken")
    assert state.load_state(tmp_path) == {}


# ---------------------------------------------------------------- scheduling


def test_independent_stacks_run_in_parallel_and_dependents_wait() -> None:
    deps = {"base": [], "left": ["base"], "right": ["base"], "top": ["left", "right"]}
    active, peak, order = [0], [0], []
    lock = threading.Lock()

    def bring_up(name: str) -> schedule.StackOutcome:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            order.append(name)
        time.sleep(0.2)
        with lock:
            active[0] -= 1
        return schedule.StackOutcome(name, schedule.HEALTHY)

    outcomes = schedule.run_in_order(["base", "left", "right", "top"], deps, bring_up)
    assert all(o.ok for o in outcomes.values())
    assert order[0] == "base" and order[-1] == "top"
    assert peak[0] == 2  # left and right together


def test_a_failure_blocks_dependents_and_starts_nothing_new() -> None:
    deps = {"base": [], "bad": ["base"], "slow": ["base"], "needs_bad": ["bad"],
            "later": ["slow"]}
    started = []

    def bring_up(name: str) -> schedule.StackOutcome:
        started.append(name)
        if name == "slow":
            time.sleep(0.3)
        status = schedule.FAILED if name == "bad" else schedule.HEALTHY
        return schedule.StackOutcome(name, status, detail="boom" if name == "bad" else "")

    outcomes = schedule.run_in_order(list(deps), deps, bring_up)
    assert outcomes["bad"].status == schedule.FAILED
    assert outcomes["slow"].status == schedule.HEALTHY  # already running: finishes, stays up
    assert outcomes["needs_bad"].status == schedule.BLOCKED
    assert outcomes["later"].status == schedule.NOT_STARTED  # up stops after a failure
    assert "needs_bad" not in started and "later" not in started
    text = "\n".join(_failure_text(outcomes))
    assert "bad: boom" in text
    assert "not started: needs_bad, later (bring-up stopped; needs bad)" in text


def test_an_interruption_starts_nothing_new_and_cuts_off_what_runs() -> None:
    """A stack that stops when told is ``interrupted``; one that does not stop within the
    grace period is reported cut off all the same, and the run returns at once."""
    deps = {"base": [], "quick": ["base"], "stuck": ["base"], "top": ["quick"]}
    cancel = threading.Event()

    def bring_up(name: str) -> schedule.StackOutcome:
        if name == "base":
            return schedule.StackOutcome(name, schedule.HEALTHY)
        if name == "quick":  # its command got the signal: it fails at once
            cancel.wait(5)
            return schedule.StackOutcome(name, schedule.FAILED, detail="canceled")
        time.sleep(5)  # a command that never saw the signal
        return schedule.StackOutcome(name, schedule.HEALTHY)

    threading.Timer(0.3, cancel.set).start()
    events: list[tuple[str, str]] = []
    progress = schedule.Progress(listener=lambda s, state, _: events.append((s, state)))
    begin = time.monotonic()
    outcomes = schedule.run_in_order(list(deps), deps, bring_up, progress,
                                     cancelled=cancel.is_set)
    took = time.monotonic() - begin
    assert took < 0.3 + schedule.GRACE + 0.5, took
    assert outcomes["base"].status == schedule.HEALTHY
    assert outcomes["quick"].status == schedule.INTERRUPTED  # never "failed"
    assert outcomes["stuck"].status == schedule.INTERRUPTED
    assert outcomes["top"].status == schedule.NOT_STARTED
    assert outcomes["top"].detail == "interrupted before it started"
    assert ("quick", schedule.INTERRUPTED) in events
    told = schedule.interruption_report(outcomes)
    assert (told.finished, set(told.cut_off), told.not_started) == (
        ("base",), {"quick", "stuck"}, ("top",))
    lines = told.lines()
    assert lines[0] == "interrupted (SIGINT)" and "run the same command again" in lines[-1]


# ---------------------------------------------------------------- commands through a context


def answering(answers: dict[str, tuple[bool, str]]) -> MockContext:
    """invoke's MockContext answering any command that contains a key (in order), every other
    command with success; its ``run`` records the calls."""
    table = {re.compile(".*" + re.escape(part)): Result(stdout=out, stderr="" if ok else out,
                                                         exited=0 if ok else 1)
             for part, (ok, out) in answers.items()}
    table[re.compile(".*")] = Result()
    return MockContext(run=table, repeat=True)


def healthy_ps(stack) -> str:  # type: ignore[no-untyped-def]
    """`compose ps --format json` of ``stack`` with every daemon running and healthy."""
    import json

    return "".join(json.dumps({"Project": stack.name, "Service": s.name, "ID": s.name,
                               "Name": f"{stack.name}-{s.name}-1", "State": "running",
                               "Health": "healthy" if s.health and s.health.command else ""})
                   + "\n" for s in stack.services if not s.oneshot)


def commands(ctx: MockContext) -> list[str]:
    return [call.args[0] for call in ctx.run.call_args_list]  # type: ignore[attr-defined]


def test_a_stack_compose_calls_up_but_the_engine_calls_starting_is_not_healthy(project  # type: ignore[no-untyped-def]
                                                                              ) -> None:
    """The gate is the engine's health state, not compose's exit code alone (CI once saw
    `up --wait` end while MinIO's health check had not passed)."""
    import json

    stack = project.catalogue["minio"]
    target = ComposeTarget(stack.name, Path("/b"), Path("/b/compose.yaml"))
    starting = json.dumps({"Project": "minio", "Service": "minio", "ID": "m",
                           "Name": "minio-minio-1", "State": "running", "Health": "starting"})
    ctx = answering({"ps -a --format json": (True, starting + "\n")})
    outcome = bring_up_stack(ctx, stack, target, plan.StackStep("minio", plan.CREATE, ""),
                             "helper:1", 30)
    assert outcome.status == schedule.FAILED
    assert "the engine says minio is starting" in outcome.detail
    assert [f.service for f in outcome.failures] == ["minio"]
    assert not any("minio-setup" in c and " up " in c for c in commands(ctx)[1:])  # no job


def test_bring_up_waits_for_daemons_then_probes_then_runs_jobs(project  # type: ignore[no-untyped-def]
                                                              ) -> None:
    stack = next(s for s in project.catalogue.stacks.values() if any(x.oneshot for x in s.services))
    target = ComposeTarget(stack.name, Path("/b"), Path("/b/compose.yaml"))
    checks = probes.http_checks(stack)
    probe_out = "".join(f"healthy {c.service}\n" for c in checks)
    ctx = answering({"docker wait": (True, "0\n"), "--network": (True, probe_out),
                     "ps -a --format json": (True, healthy_ps(stack))})
    step = plan.StackStep(stack.name, plan.CREATE, "not running")
    outcome = bring_up_stack(ctx, stack, target, step, "helper:1", 30)
    assert outcome.status == schedule.HEALTHY, outcome
    up = commands(ctx)[0]
    assert " up -d " in up and "--wait" in up
    for service in stack.services:
        assert (f" {service.name}" in up) != service.oneshot  # jobs are not --wait'ed on
    jobs = [c for c in commands(ctx) if "docker wait" in c]
    assert len(jobs) == sum(s.oneshot for s in stack.services)


def test_a_failing_job_or_probe_is_reported_with_its_logs(project) -> None:  # type: ignore[no-untyped-def]
    stack = next(s for s in project.catalogue.stacks.values()
                 if any(x.health and x.health.http for x in s.services))
    target = ComposeTarget(stack.name, Path("/b"), Path("/b/compose.yaml"))
    check = probes.http_checks(stack)[0]
    ctx = answering({"--network": (False, f"unhealthy {check.service} {check.url}: "
                                          "connection refused\n"),
                     " logs ": (True, "last words\n"),
                     "ps -a --format json": (True, healthy_ps(stack))})
    outcome = bring_up_stack(ctx, stack, target, plan.StackStep(stack.name, plan.CREATE, ""),
                             "helper:1", 5)
    assert outcome.status == schedule.FAILED
    (failure,) = outcome.failures
    assert failure.service == check.service
    assert "connection refused" in failure.health_output and failure.logs == "last words"


# ---------------------------------------------------------------- scripts run by real programs


def _busybox_bin(tmp_path: Path) -> Path:
    busybox = require_program("busybox")
    bin_dir = tmp_path / "bb"
    bin_dir.mkdir()
    for applet in ("sh", "wget", "timeout", "stat", "chown", "chmod", "mkdir", "date", "tr",
                   "sleep", "cat", "echo", "test", "[", "cmp", "cp", "mv", "rm", "rmdir",
                   "dirname"):
        (bin_dir / applet).symlink_to(busybox)
    return bin_dir


@pytest.mark.tools
def test_ownership_script_fixes_only_what_differs(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to other users needs root")
    bin_dir = _busybox_bin(tmp_path)
    data = tmp_path / "data"
    (data / "loki").mkdir(parents=True)
    (data / "right").mkdir()
    os.chown(data / "right", 472, 0)
    fixes = [ownership.OwnershipFix("m", "loki", "loki", (10001, 10001), "0700"),
             ownership.OwnershipFix("m", "grafana", "right", (472, 0)),
             ownership.OwnershipFix("m", "tempo", "new/tempo", (10001, 10001))]
    script = ownership.ownership_script(fixes, dry=True, base=str(data))
    run = subprocess.run([str(bin_dir / "sh"), "-c", script], capture_output=True, text=True,
                         env={"PATH": str(bin_dir)}, check=True)
    dry = {(c.action, c.source) for c in ownership.parse_ownership_output(run.stdout)}
    assert ("would-chown", "loki") in dry and ("ok", "right") in dry
    assert ("would-create", "new/tempo") in dry and not (data / "new").exists()
    assert (data / "loki").stat().st_uid == 0  # dry changed nothing

    script = ownership.ownership_script(fixes, dry=False, base=str(data))
    run = subprocess.run([str(bin_dir / "sh"), "-c", script], capture_output=True, text=True,
                         env={"PATH": str(bin_dir)}, check=True)
    done = {(c.action, c.source) for c in ownership.parse_ownership_output(run.stdout)}
    assert {("chown", "loki"), ("chmod", "loki"), ("ok", "right"), ("created", "new/tempo"),
            ("chown", "new/tempo")} <= done
    assert (data / "loki").stat().st_uid == 10001
    assert oct((data / "loki").stat().st_mode & 0o777) == "0o700"
    assert (data / "new/tempo").stat().st_uid == 10001
    again = subprocess.run([str(bin_dir / "sh"), "-c", script], capture_output=True, text=True,
                           env={"PATH": str(bin_dir)}, check=True)
    assert {c.action for c in ownership.parse_ownership_output(again.stdout)} == {"ok"}


@pytest.mark.tools
def test_key_copies_belong_to_the_container_user_and_follow_the_original(tmp_path: Path
                                                                        ) -> None:
    """Each container's own copy of a key: written when missing or different (owner, mode,
    content), left alone otherwise; a dry run writes nothing; a missing original stops it."""
    if os.geteuid() != 0:
        pytest.skip("chown to other users needs root")
    bin_dir = _busybox_bin(tmp_path)
    data, certs = tmp_path / "data", tmp_path / "certs"
    data.mkdir()
    certs.mkdir()
    original = certs / "registry-server-key.pem"
    original.write_text("KEY-1\n")
    original.chmod(0o600)
    os.chown(original, 1000, 1000)  # the operator's file, unreadable to 65532
    copies = [ownership.KeyCopy("zot", "zot", str(original), "keys/zot/zot/registry-server-key.pem",
                                (65532, 65532))]

    def run(dry: bool) -> subprocess.CompletedProcess[str]:
        script = "\n".join([ownership.ownership_script([], dry, base=str(data)),
                            ownership.key_script(copies, [str(original)], dry)])
        return subprocess.run([str(bin_dir / "sh"), "-c", script], capture_output=True,
                              text=True, env={"PATH": str(bin_dir)})

    def actions(result: subprocess.CompletedProcess[str]) -> set[str]:
        assert result.returncode == 0, result.stdout + result.stderr
        return {c.action for c in ownership.parse_ownership_output(result.stdout)}

    copy = data / "keys/zot/zot/registry-server-key.pem"
    assert actions(run(dry=True)) == {"would-key"} and not (data / "keys").exists()
    assert actions(run(dry=False)) == {"key"}
    info = copy.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (65532, 65532, 0o400)
    assert copy.read_text() == "KEY-1\n"
    assert (data / "keys").stat().st_mode & 0o777 == 0o700  # nobody else on the host reads it
    assert actions(run(dry=False)) == {"ok"}
    original.write_text("KEY-2\n")  # renewed
    assert actions(run(dry=False)) == {"key"} and copy.read_text() == "KEY-2\n"
    os.chmod(copy, 0o644)
    assert actions(run(dry=False)) == {"key"} and copy.stat().st_mode & 0o777 == 0o400
    original.unlink()
    missing = run(dry=False)
    assert missing.returncode == 3 and "missing-key" in missing.stdout


@pytest.mark.tools
def test_probe_script_reports_each_service(tmp_path: Path) -> None:
    bin_dir = _busybox_bin(tmp_path)
    www = tmp_path / "www"
    (www / "-" / "health").mkdir(parents=True)
    (www / "-" / "health" / "index.html").write_text("ok")
    port = free_port()
    server = subprocess.Popen([shutil.which("busybox") or "busybox", "httpd", "-f", "-p",
                               f"127.0.0.1:{port}", "-h", str(www)])
    try:
        time.sleep(0.3)
        checks = [probes.HttpCheck("good", f"http://127.0.0.1:{port}/-/health/"),
                  probes.HttpCheck("bad", f"http://127.0.0.1:{port}/missing")]
        script = probes.probe_script(checks, timeout=2).replace("/tmp/err-", f"{tmp_path}/err-")
        begin = time.monotonic()
        run = subprocess.run([str(bin_dir / "sh"), "-c", script], capture_output=True,
                             text=True, env={"PATH": str(bin_dir)}, timeout=30)
        assert time.monotonic() - begin < 10  # the deadline holds
    finally:
        server.terminate()
        server.wait()
    results = {r.service: r for r in probes.parse_probe_output(run.stdout)}
    assert run.returncode == 1
    assert results["good"].healthy and not results["bad"].healthy
    assert "404" in results["bad"].detail or "Not Found" in results["bad"].detail


@pytest.mark.tools
def test_certificates_are_created_once_then_not_checked_again(tmp_path: Path) -> None:
    from invoke import Config, Context

    from infra.bringup.certificates import ensure_certificates

    require_program("cfssl")
    project = load(tmp_path)
    context = Context(Config(overrides={"run": {"in_stream": False}}))
    created = ensure_certificates(context, project, dry=False)
    assert any("root" in line for line in created)

    class NoShell:
        def run(self, command: str, **_: object) -> None:
            raise AssertionError(f"ran {command!r}: nothing changed, nothing to check")

    assert ensure_certificates(NoShell(), project, dry=False) == []
    leaf = project.config.path("CERTS_DIR") / "ingress.pem"
    os.utime(leaf, ns=(leaf.stat().st_atime_ns, leaf.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="ran"):  # a changed file is checked again
        ensure_certificates(NoShell(), project, dry=False)


def test_a_failed_pull_gets_a_hint_with_the_fix() -> None:
    pulled = schedule.ServiceFailure(
        "traefik", "could not start",
        health_output=' traefik Error Get "https://registry-1.docker.io/v2/": dial tcp: lookup '
                      "registry-1.docker.io: no such host\n traefik Pulling")
    text = "\n".join(_failure_text(
        {"traefik": schedule.StackOutcome("traefik", schedule.FAILED, failures=(pulled,))}))
    assert "IMAGE_MIRROR" in text and "docker load" in text
    unhealthy = schedule.ServiceFailure("loki", "unhealthy", health_output="ready: 503")
    text = "\n".join(_failure_text(
        {"monitoring": schedule.StackOutcome("monitoring", schedule.FAILED,
                                             failures=(unhealthy,))}))
    assert "IMAGE_MIRROR" not in text


@pytest.mark.tools
def test_a_key_copy_that_cannot_be_written_fails_the_step(tmp_path: Path) -> None:
    """A failure inside the copy stops the script (set -e alone would not, inside &&), and the
    empty folder an engine made for a missing bind source is replaced by the file."""
    if os.geteuid() != 0:
        pytest.skip("chown to other users needs root")
    bin_dir = _busybox_bin(tmp_path)
    data = tmp_path / "data"
    (data / "keys/zot/zot/k.pem").mkdir(parents=True)  # what an engine leaves
    original = tmp_path / "k.pem"
    original.write_text("KEY\n")
    copies = [ownership.KeyCopy("zot", "zot", str(original), "keys/zot/zot/k.pem", (7, 7))]

    def run() -> subprocess.CompletedProcess[str]:
        script = "\n".join([ownership.ownership_script([], False, base=str(data)),
                            ownership.key_script(copies, [str(original)], False)])
        return subprocess.run([str(bin_dir / "sh"), "-c", script], capture_output=True,
                              text=True, env={"PATH": str(bin_dir)})

    done = run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert (data / "keys/zot/zot/k.pem").read_text() == "KEY\n"
    shutil.rmtree(data / "keys/zot")
    (data / "keys/zot").write_text("a file where the service's folder goes\n")
    original.write_text("NEW\n")
    failed = run()  # its folder cannot be made: the step fails, it does not pass over it
    assert failed.returncode == 4 and "failed-key keys/zot/zot/k.pem" in failed.stdout


def test_what_a_stack_is_on_is_what_it_waits_for_longest() -> None:
    progress = schedule.Progress()
    progress.set("monitoring", schedule.STARTING)
    progress.service("monitoring", "mimir-1", "waiting for health", "waiting for health")
    time.sleep(0.01)
    progress.service("monitoring", "loki", "started", "started")
    assert progress.doing("monitoring").startswith("mimir-1: waiting for health (")
    progress.service("monitoring", "mimir-1", "healthy", "healthy")
    assert progress.doing("monitoring").startswith("loki: started (")
    progress.set("monitoring", schedule.HEALTHY)
    assert progress.doing("monitoring") == ""


def _failure_text(outcomes: dict) -> list[str]:
    """The failure report as the user reads it: its lines, then its final words."""
    failure = report.failure_report(outcomes)
    return [*failure.lines, *failure.final.splitlines()] if failure else []
