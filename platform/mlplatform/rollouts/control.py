"""Rollout commands on the store (SPEC S7.4, S7.6): start, advance, abort, the guard's rollback, and status.

The CLI and the replicas' guards call the same functions; the running app follows the store within its poll
interval. A rollback only sets the challenger's weight to 0 (state ``rolled_back``): the champion is untouched and
no other version is activated. Advancing into the last stage (weight 100) promotes the challenger through the
registry, so the old champion stays restorable with ``mlplatform models rollback``.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from mlplatform.entities.rollouts import ACTIVE, RolloutState
from mlplatform.errors import Conflict, InvalidInput, NotFound
from mlplatform.rollouts.guard import Decision, GuardPolicy
from mlplatform.rollouts.routing import DEFAULT_STAGES, validate_stages
from mlplatform.store.interfaces import MonitoringStore, RegistryStore, RolloutStore

if TYPE_CHECKING:
    from mlplatform.rollouts import Rollouts

logger = logging.getLogger(__name__)
ROLLED_BACK, ABORTED, COMPLETED = "rolled_back", "aborted", "completed"
ALERT_TYPE = "rollout"


class RolloutClient(Protocol):
    """What rollout control needs of a client (the rollouts layer sits below :mod:`mlplatform.client`): the
    registry's aliases, the audit trail and alerts, and the rollout rows."""

    @property
    def registry(self) -> RegistryStore: ...

    @property
    def monitoring(self) -> MonitoringStore: ...

    @property
    def rollouts(self) -> Rollouts: ...


def rollout_store(client: RolloutClient) -> RolloutStore:
    return client.rollouts.store


def _aliases(client: RolloutClient, name: str) -> dict[str, int]:
    return dict(client.registry.get_model(name).aliases)


def start(client: RolloutClient, name: str, *, stage: str | None = None, stages: list[dict[str, Any]] | None = None,
          policy: dict[str, Any] | None = None, actor: str = "unknown", replace_active: bool = False,
          salt: str | None = None) -> RolloutState:
    """Route between the current champion and challenger, starting at ``stage`` (default: the first). A fresh
    random ``salt`` per rollout puts a different 5 % of users in each canary."""
    aliases = _aliases(client, name)
    if "champion" not in aliases:
        raise NotFound(f"model {name} has no champion; a challenger needs one", field="alias")
    if "challenger" not in aliases:
        raise NotFound(f"model {name} has no challenger; set one with `mlplatform models alias`", field="alias")
    if aliases["challenger"] == aliases["champion"]:
        raise InvalidInput(f"challenger and champion of {name} are the same version", field="alias")
    table = validate_stages(stages or list(DEFAULT_STAGES))
    first = stage or table[0]["name"]
    if first not in {s["name"] for s in table}:
        raise InvalidInput(f"unknown stage {first!r}; stages are {[s['name'] for s in table]}", field="stage")
    if next(s for s in table if s["name"] == first)["weight"] >= 100:
        raise InvalidInput("a rollout cannot start at full traffic; use `mlplatform models promote`", field="stage")
    checked = GuardPolicy.model_validate(policy or {}).model_dump()
    state = rollout_store(client).start(
        name, replace_active=replace_active, status=ACTIVE, stage=first, stages=table,
        champion_version=aliases["champion"], challenger_version=aliases["challenger"],
        salt=salt or secrets.token_hex(8), policy=checked, actor=actor, cooldown_until=None,
        details={"history": [_event("start", actor, f"stage {first}")]})
    client.monitoring.audit(actor, "rollout_start", f"{name}:{aliases['champion']}->{aliases['challenger']}",
                            f"stage {first}")
    return state


def _event(action: str, actor: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"action": action, "actor": actor, "reason": reason, "time": datetime.now(UTC).isoformat(), **extra}


def _history(state: RolloutState, event: dict[str, Any]) -> dict[str, Any]:
    history = [*state.details.get("history", []), event][-50:]
    return {**state.details, "history": history}


def next_stage(state: RolloutState) -> dict[str, Any] | None:
    names = [s["name"] for s in state.stages]
    index = names.index(state.stage) if state.stage in names else -1
    return state.stages[index + 1] if index + 1 < len(state.stages) else None


def advance(client: RolloutClient, name: str, *, actor: str = "unknown", reason: str = "manual",
            expected_revision: int | None = None) -> RolloutState:
    """Next stage; the last one (weight 100) promotes the challenger to champion."""
    store = rollout_store(client)
    current = store.get(name)
    if current is None or not current.active:
        raise Conflict(f"model {name} has no active rollout to advance", field="model")
    target = next_stage(current)
    if target is None:
        raise Conflict(f"rollout of {name} is already at its last stage {current.stage!r}", field="stage")
    if target["weight"] >= 100:
        aliases = _aliases(client, name)
        if aliases.get("challenger") != current.challenger_version:
            raise Conflict(f"the challenger of {name} moved from version {current.challenger_version} to "
                           f"{aliases.get('challenger')}; start a new rollout", field="alias")
        # the revision check first, so a racing guard cannot promote twice
        state = store.update(name, lambda s: {"stage": target["name"], "status": COMPLETED,
                                              "stage_started_at": datetime.now(UTC),
                                              "details": {**_history(s, _event("promote", actor, reason)),
                                                          "probation": _probation(s)}},
                             expected_revision=expected_revision if expected_revision is not None
                             else current.revision)
        try:
            client.registry.promote(name, actor=actor, reason=f"rollout: {reason}")
        except Exception:
            # put the rollout back where it was so the operator (or the guard) can try again
            store.update(name, lambda s: {"stage": current.stage, "status": ACTIVE,
                                          "stage_started_at": current.stage_started_at})
            raise
    else:
        state = store.update(name, lambda s: {"stage": target["name"], "stage_started_at": datetime.now(UTC),
                                              "details": _history(s, _event("advance", actor, reason,
                                                                            stage=target["name"]))},
                             expected_revision=expected_revision if expected_revision is not None
                             else current.revision)
    client.monitoring.audit(actor, "rollout_advance", f"{name}->{target['name']}", reason)
    return state


def _probation(state: RolloutState) -> dict[str, Any]:
    """What the guard watches after a promotion (SPEC S7.7): until when, which versions, and the previous
    champion's last window (fleet-merged) as the reference."""
    until = datetime.now(UTC) + timedelta(seconds=float(state.policy.get("probation_s", 3600.0)))
    previous = merged_metrics(state).get(str(state.champion_version)) or {}
    return {"until": until.isoformat(), "champion": state.challenger_version,
            "previous_champion": state.champion_version, "promoted_at": datetime.now(UTC).isoformat(),
            "previous_window": {k: previous.get(k) for k in ("requests", "errors", "p50_ms", "p99_ms")}}


def in_probation(state: RolloutState, now: datetime | None = None) -> bool:
    found = state.details.get("probation")
    if state.status != COMPLETED or not found or found.get("ended") is not None:
        return False
    return (now or datetime.now(UTC)) < datetime.fromisoformat(found["until"])


def probation_rollback(client: RolloutClient, state: RolloutState, decision: Decision, *,
                       actor: str = "rollout-guard") -> RolloutState:
    """A trigger during probation moves the champion alias back to the previous champion through the registry's
    alias history (the failed version is marked rolled back), records it like a canary rollback and raises a RED
    alert. The rollout row changes first under its revision, so two replicas' guards cannot roll back twice."""
    store = rollout_store(client)
    probation = dict(state.details["probation"])
    now = datetime.now(UTC)
    record = {"model": state.model_name, "from_version": probation["champion"],
              "to_version": probation["previous_champion"], "reason": decision.reason, "metrics": decision.metrics,
              "actor": actor, "time": now.isoformat(), "stage": "probation"}
    cooldown = now + timedelta(seconds=float(state.policy.get("cooldown_s", 600.0)))
    updated = store.update(state.model_name, lambda s: {
        "status": ROLLED_BACK, "rollbacks": s.rollbacks + 1, "cooldown_until": cooldown,
        "details": {**_history(s, _event("probation_rollback", actor, decision.reason)), "last_rollback": record,
                    "probation": {**probation, "ended": "rolled_back"}}},
        expected_revision=state.revision)
    try:
        restored = client.registry.rollback(state.model_name, actor=actor, reason=f"probation: {decision.reason}")
    except Exception:
        # the alias did not move: put the rollout back so the next guard check can try again
        store.update(state.model_name, lambda s: {"status": COMPLETED, "rollbacks": state.rollbacks,
                                                  "cooldown_until": state.cooldown_until,
                                                  "details": state.details})
        raise
    record["to_version"] = restored.version
    alert(client, state, decision, record, version=probation["champion"])
    client.monitoring.audit(actor, "rollout_probation_rollback",
                            f"{state.model_name}:{probation['champion']}->{restored.version}", decision.reason)
    logger.warning("probation: rolled champion %s:%s back to %s: %s", state.model_name, probation["champion"],
                   restored.version, decision.reason)
    return updated


def abort(client: RolloutClient, name: str, *, actor: str = "unknown",
          reason: str = "aborted by operator") -> RolloutState:
    """Challenger weight to 0 at once; champion untouched."""
    store = rollout_store(client)
    current = store.get(name)
    if current is None or not current.active:
        raise Conflict(f"model {name} has no active rollout to abort", field="model")
    state = store.update(name, lambda s: {"status": ABORTED,
                                          "details": _history(s, _event("abort", actor, reason))})
    client.monitoring.audit(actor, "rollout_abort", f"{name}:{current.challenger_version}", reason)
    return state


def rollback(client: RolloutClient, state: RolloutState, decision: Decision, *,
             actor: str = "rollout-guard") -> RolloutState:
    """The guard's automatic rollback: weight 0, state ``rolled_back``, a RED alert with the measured values."""
    store = rollout_store(client)
    now = datetime.now(UTC)
    record = {"model": state.model_name, "from_version": state.champion_version,
              "to_version": state.challenger_version, "reason": decision.reason, "metrics": decision.metrics,
              "actor": actor, "time": now.isoformat(), "stage": state.stage}
    cooldown = now + timedelta(seconds=float(state.policy.get("cooldown_s", 600.0)))
    updated = store.update(state.model_name, lambda s: {
        "status": ROLLED_BACK, "rollbacks": s.rollbacks + 1, "cooldown_until": cooldown,
        "details": {**_history(s, _event("rollback", actor, decision.reason)), "last_rollback": record}},
        expected_revision=state.revision)
    alert(client, state, decision, record)
    client.monitoring.audit(actor, "rollout_rollback", f"{state.model_name}:{state.challenger_version}",
                            decision.reason)
    logger.warning("rolled back challenger %s:%s: %s", state.model_name, state.challenger_version, decision.reason)
    return updated


def alert(client: RolloutClient, state: RolloutState, decision: Decision, record: dict[str, Any] | None = None, *,
          version: int | None = None) -> None:
    """A RED alert with the measured values, about ``version`` (default: the challenger, or the champion for the
    champion alarm)."""
    if version is None:
        version = state.challenger_version if decision.metric != "champion_error_rate" else state.champion_version
    try:
        client.monitoring.upsert_alert(
            type=ALERT_TYPE, level="red", source="rollout-guard", model_name=state.model_name, version=version,
            metric=decision.metric, value=decision.value, threshold=decision.threshold,
            message=f"rollout of {state.model_name}: {decision.reason}",
            details=record or {"reason": decision.reason, "metrics": decision.metrics})
    except Exception:  # the rollback itself is already recorded; a failed alert write must not undo it
        logger.error("could not write the rollout alert for %s", state.model_name, exc_info=True)


def merged_metrics(state: RolloutState) -> dict[str, dict[str, Any]]:
    """Per-version counters summed over replicas; p50/p99 are the worst replica's (conservative)."""
    out: dict[str, dict[str, Any]] = {}
    for snapshot in (state.metrics or {}).values():
        for version, stats in (snapshot.get("versions") or {}).items():
            into = out.setdefault(version, {"requests": 0, "errors": 0, "total_requests": 0, "total_errors": 0,
                                            "p50_ms": None, "p99_ms": None, "roles": set()})
            for key in ("requests", "errors", "total_requests", "total_errors"):
                into[key] += int(stats.get(key) or 0)
            for key in ("p50_ms", "p99_ms"):
                if stats.get(key) is not None:
                    into[key] = max(into[key] or 0.0, float(stats[key]))
            into["roles"] |= set(stats.get("roles") or ())
    for stats in out.values():
        stats["error_rate"] = stats["errors"] / stats["requests"] if stats["requests"] else 0.0
        stats["roles"] = sorted(stats["roles"])
    return out


def status(client: RolloutClient, name: str) -> dict[str, Any]:
    state = rollout_store(client).get(name)
    aliases = _aliases(client, name)
    if state is None:
        raise NotFound(f"model {name} has no rollout; start one with `mlplatform rollout start`", field="model")
    weight = state.challenger_weight
    return {"model": name, "status": state.status, "stage": state.stage,
            "split": {"champion": 100.0 - weight, "challenger": weight},
            "mirror_challenger": state.mirror_challenger, "champion_version": state.champion_version,
            "challenger_version": state.challenger_version, "aliases": aliases, "rollbacks": state.rollbacks,
            "revision": state.revision, "stage_started_at": state.stage_started_at.isoformat(),
            "cooldown_until": state.cooldown_until.isoformat() if state.cooldown_until else None,
            "stages": state.stages, "policy": state.policy, "versions": merged_metrics(state),
            "last_rollback": state.details.get("last_rollback"), "history": state.details.get("history", []),
            "probation": state.details.get("probation"), "in_probation": in_probation(state),
            "replicas": sorted(state.metrics or {})}
