"""From the spec and the facts on disk to the steps that converge them (pure)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from ..errors import Problem
from .constants import INTERMEDIATE, INTERMEDIATE_REPLACE_WARNING, ROOT, ROOT_REPLACE_WARNING
from .facts import CertFacts, CertState
from .spec import PkiSpec, item_files


@dataclass(frozen=True)
class Step:
    item: str
    action: str  # create | reissue | replace
    reason: str


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...] = ()
    kept: tuple[tuple[str, str], ...] = ()  # (item, why it stays)
    problems: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()
    protect: tuple[str, ...] = ()  # key files others may read: made 0600 first

    def step(self, item: str) -> Step | None:
        return next((s for s in self.steps if s.item == item), None)

    @property
    def empty(self) -> bool:
        """Nothing to do (every planner's word for a converged state)."""
        return not self.steps


def _days_left(facts: CertFacts, now: datetime) -> float:
    return (facts.not_after - now).total_seconds() / 86400


def plan_certs(spec: PkiSpec, states: Mapping[str, CertState], scope: Collection[str], *,
               replace: str | None = None, renew_days: int | None = None,
               force_leaves: bool = False, now: datetime | None = None) -> Plan:
    """Decide what to create, reissue or replace; existing CAs stay unless ``replace`` names one.

    ``scope`` lists the items the caller asked for; a replaced CA also reissues every leaf that
    exists (leaves under the old CA would no longer validate).
    """
    now = now or datetime.now(UTC)
    steps: list[Step] = []
    kept: list[tuple[str, str]] = []
    problems: list[Problem] = []
    warnings: list[str] = []
    d = spec.certs_dir
    root, inter = states[ROOT], states[INTERMEDIATE]
    protect = tuple(str(item_files(d, item)[1]) for item, state in states.items()
                    if state.key_present and state.key_mode & 0o077)
    for item, state in states.items():
        if state.key_present and not state.key_valid:
            again = (f"`invoke certs.{'ca' if item == ROOT else item} --replace`"
                     if item in (ROOT, INTERMEDIATE) else
                     "moving the certificate and the key away, then `invoke certs`")
            problems.append(Problem(f"{item_files(d, item)[1]} is not a readable private key",
                                    key="CERTS_DIR",
                                    fix=f"restore it from backup, or start it again: {again}"))

    root_action = None
    if replace == ROOT:
        root_action = "replace" if root.cert else "create"
        warnings.append(ROOT_REPLACE_WARNING)
    elif root.cert is None:
        if root.key_present:
            problems.append(Problem(f"{d / 'ca-key.pem'} exists without ca.pem", key="CERTS_DIR",
                                    fix="restore ca.pem from backup, or run "
                                        "`invoke certs.ca --replace` to start a new CA"))
        elif inter.cert is not None:
            problems.append(Problem("ca.pem is missing but the intermediate signed by it exists",
                                    key="CERTS_DIR",
                                    fix="restore ca.pem and ca-key.pem from backup, or run "
                                        "`invoke certs.ca --replace` to build a new hierarchy"))
        else:
            root_action = "create"
    if root_action:
        steps.append(Step(ROOT, root_action, "--replace given" if root_action == "replace"
                          and replace == ROOT else "missing"))
    elif root.cert:
        kept.append((ROOT, f"valid until {root.cert.not_after:%Y-%m-%d}"))

    inter_action = None
    if root_action == "replace" or replace == INTERMEDIATE or (root_action and inter.cert):
        inter_action = "replace" if inter.cert else "create"
        if replace == INTERMEDIATE:
            warnings.append(INTERMEDIATE_REPLACE_WARNING)
        reason = "--replace given" if replace == INTERMEDIATE else "the root CA is new"
    elif inter.cert is None and INTERMEDIATE in scope:
        if inter.key_present:
            problems.append(Problem(f"{d / 'intermediate_ca-key.pem'} exists without "
                                    "intermediate_ca.pem", key="CERTS_DIR",
                                    fix="restore intermediate_ca.pem from backup, or run "
                                        "`invoke certs.intermediate --replace`"))
        else:
            inter_action, reason = "create", "missing"
    elif inter.cert and root.cert and inter.cert.authority_key_id != root.cert.subject_key_id:
        problems.append(Problem("intermediate_ca.pem was not issued by ca.pem", key="CERTS_DIR",
                                fix="restore the matching pair from backup, or run "
                                    "`invoke certs.intermediate --replace`"))
    if inter_action:
        steps.append(Step(INTERMEDIATE, inter_action, reason))
        if not root_action and not root.key_present:
            problems.append(Problem(f"{d / 'ca-key.pem'} is missing, so the intermediate cannot "
                                    "be signed", key="CERTS_DIR",
                                    fix="put the offline root key back for this run"))
    elif inter.cert:
        kept.append((INTERMEDIATE, f"valid until {inter.cert.not_after:%Y-%m-%d}"))

    leaf_steps = []
    for leaf in spec.leaves:
        state = states[leaf.name]
        cert = state.cert
        action, why = None, ""
        if inter_action and (cert or leaf.name in scope):
            action, why = ("reissue" if cert else "create"), "the intermediate CA is new"
        elif leaf.name not in scope:
            continue
        elif cert is None:
            action, why = "create", "missing"
        elif not state.key_present:
            action, why = "reissue", "its key is missing"
        elif inter.cert and cert.authority_key_id != inter.cert.subject_key_id:
            action, why = "reissue", "not issued by the current intermediate CA"
        elif set(cert.sans) != set(leaf.hosts):
            added = sorted(set(leaf.hosts) - set(cert.sans))
            removed = sorted(set(cert.sans) - set(leaf.hosts))
            action, why = "reissue", f"names changed (added {added}, removed {removed})"
        elif _days_left(cert, now) < 0:
            action, why = "reissue", f"expired on {cert.not_after:%Y-%m-%d}"
        elif force_leaves:
            action, why = "reissue", "--force given"
        elif renew_days is not None and _days_left(cert, now) <= renew_days:
            action, why = "reissue", f"expires in {_days_left(cert, now):.0f} days"
        if action:
            leaf_steps.append(Step(leaf.name, action, why))
        elif cert:
            kept.append((leaf.name, f"valid until {cert.not_after:%Y-%m-%d}"))
    for ca_name, ca in ((INTERMEDIATE, inter), (ROOT, root)):
        if leaf_steps and not inter_action and not root_action and ca.cert \
                and _days_left(ca.cert, now) < 0:
            problems.append(Problem(
                f"the {'intermediate' if ca_name == INTERMEDIATE else 'root'} CA expired on "
                f"{ca.cert.not_after:%Y-%m-%d}: a certificate issued under it would not "
                "validate", key="CERTS_DIR",
                fix=f"replace it: `invoke certs.{'ca' if ca_name == ROOT else ca_name} "
                    "--replace`"))
    if leaf_steps and not inter_action and inter.cert and not inter.key_present:
        problems.append(Problem(f"{d / 'intermediate_ca-key.pem'} is missing, so no leaf can be "
                                "issued", key="CERTS_DIR",
                                fix="restore it from backup, or run "
                                    "`invoke certs.intermediate --replace`"))
    if leaf_steps and not inter_action and inter.cert is None:
        problems.append(Problem("there is no intermediate CA to issue leaves", key="CERTS_DIR",
                                fix="run `invoke certs` (or `invoke certs.intermediate`) first"))
    steps += leaf_steps

    threshold = renew_days if renew_days is not None else spec.renew_days
    for item in spec.items:
        cert = states[item].cert
        if cert and not any(s.item == item for s in steps) and _days_left(cert, now) <= threshold:
            days = _days_left(cert, now)
            state_text = "has expired" if days < 0 else f"expires in {days:.0f} days"
            hint = ("run `invoke certs.renew`" if item not in (ROOT, INTERMEDIATE)
                    else f"plan its replacement (`invoke certs.{'ca' if item == ROOT else item}"
                         " --replace`)")
            warnings.append(f"{item} {state_text}: {hint}")
    return Plan(tuple(steps), tuple(kept), tuple(problems), tuple(warnings), protect)


