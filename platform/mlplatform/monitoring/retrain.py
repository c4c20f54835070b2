"""Retraining (SPEC S8.4, S8.10): the decision and the loop.

The decision: recommend when >= 3 features have PSI >= 0.2 or decay is declared, within the guards (>= 6 h
between automatic retrains, <= 2 per model per UTC day); a check records it as an audit entry and a RETRAIN alert.

The loop (:func:`run_retrain`): a ``retrain`` run records trigger, alert id and data window; the guards are judged
from the store (a running retrain, the cooldown, the daily cap), then the training pipeline trains on the newest
window (warm-started from the champion when the family can, the champion recorded as parent always), its gate
compares the candidate with the champion on the same holdout, and only a winner is registered as challenger and
put into a shadow rollout. It never promotes. A failed run is recorded and alerted.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mlplatform.entities import AlertLevel
from mlplatform.monitoring.config import RetrainConfig

logger = logging.getLogger(__name__)

AUDIT_ACTION = "retrain_recommended"


@dataclass(frozen=True)
class RetrainDecision:
    recommend: bool
    reasons: list[str] = field(default_factory=list)
    blocked_by: str | None = None
    drifted_features: list[str] = field(default_factory=list)
    level: str = AlertLevel.GREEN.name

    @property
    def triggered(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide_retrain(drifted_features: list[str], decay_declared: bool, previous: list[datetime], now: datetime,
                   config: RetrainConfig | None = None, drift_level: AlertLevel = AlertLevel.GREEN, *,
                   estimated_decay: bool = False) -> RetrainDecision:
    """``previous``: times of earlier automatic recommendations for this model. ``estimated_decay``: decay
    declared on the label-free estimate (before the labels arrive)."""
    config = config or RetrainConfig()
    reasons = []
    if len(drifted_features) >= config.min_drifted_features:
        reasons.append(f"{len(drifted_features)} features with PSI >= {config.psi_significant}")
    if decay_declared:
        reasons.append("decay declared")
    if estimated_decay and not decay_declared:
        reasons.append("estimated decay declared (CBPE)")
    level = max(drift_level, AlertLevel.RED if decay_declared or estimated_decay else AlertLevel.GREEN)
    if not reasons:
        return RetrainDecision(False, [], None, drifted_features, AlertLevel.GREEN.name)
    blocked = guard_verdict(previous, now, config)
    if blocked is not None:
        return RetrainDecision(False, reasons, blocked, drifted_features, level.name)
    return RetrainDecision(True, reasons, None, drifted_features, level.name)


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def guard_verdict(previous: list[datetime], now: datetime, config: RetrainConfig | None = None) -> str | None:
    """Why a retrain may not start now (cooldown, then the UTC-day cap), or None."""
    config = config or RetrainConfig()
    now = _utc(now)
    recent = [_utc(t) for t in previous]
    if any(now - t < timedelta(hours=config.min_hours_between) for t in recent):
        return f"cooldown: another retrain within {config.min_hours_between:g} h"
    today = [t for t in recent if t.date() == now.date()]
    if len(today) >= config.max_per_day:
        return f"daily cap: {len(today)} retrains today (max {config.max_per_day})"
    return None


def previous_recommendations(store: Any, model_name: str) -> list[datetime]:
    target = f"model:{model_name}:"
    return [e.created_at for e in store.audit_log(action=AUDIT_ACTION, limit=1000) if e.target.startswith(target)]


def record_recommendation(store: Any, model_name: str, version: int | None, decision: RetrainDecision) -> None:
    """The audit entry is the guard clock; the RETRAIN alert is raised by the caller through the AlertManager."""
    store.audit("monitor", AUDIT_ACTION, f"model:{model_name}:{version}", reason="; ".join(decision.reasons))
    logger.warning("retraining recommended for %s:%s: %s", model_name, version, "; ".join(decision.reasons))


# -- the retraining loop (SPEC S8.4): guard -> train on the newest window -> gate vs champion -> challenger -> shadow


RETRAIN_EXPERIMENT = "retrain"
TRIGGER_TYPES = {"decay": "decay", "estimated_decay": "decay", "retrain": "drift", "data_drift": "drift",
                 "prediction_drift": "drift"}
ABANDONED_AFTER = timedelta(hours=24)  # a "running" retrain this old died without ending its run


@dataclass
class RetrainResult:
    model: str
    status: str  # completed | rejected | failed | refused | skipped
    trigger: str
    alert_id: str | None = None
    window: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    training_run_id: str | None = None
    parent: str | None = None
    challenger: str | None = None
    gate: dict[str, Any] = field(default_factory=dict)
    rollout: dict[str, Any] | None = None
    reason: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_trigger(client: Any, model_name: str, version: int | None = None) -> tuple[str | None, Any]:
    """The open RED drift/decay alert that calls for a retrain (decay first), or (None, None)."""
    alerts = [a for a in client.monitoring.alerts(model_name, status="open", limit=1000)
              if a.level == AlertLevel.RED.name and a.type in TRIGGER_TYPES
              and (version is None or a.version == version)]
    alerts.sort(key=lambda a: (a.type != "decay", a.type != "retrain"))
    return (TRIGGER_TYPES[alerts[0].type], alerts[0]) if alerts else (None, None)


def _attempts(client: Any, model_name: str) -> list[Any]:
    """Retraining runs of this model that really started (refused triggers do not count), newest first."""
    runs = client.runs.list_runs(kind="retrain", limit=1000)
    return [r for r in runs if r.tags.get("model") == model_name and r.tags.get("outcome") != "refused"]


def _blocked(client: Any, model_name: str, mine: Any, config: RetrainConfig) -> str | None:
    """Judged after our own run row exists, against the runs created before it: of two racing triggers, the
    later one always sees the earlier and stands down, so two retrains never run at once."""
    earlier = [r for r in _attempts(client, model_name) if r.id != mine.id
               and (_utc(r.created_at), r.id) < (_utc(mine.created_at), mine.id)]
    for run in earlier:
        if run.status == "running":
            if _utc(mine.created_at) - _utc(run.created_at) < ABANDONED_AFTER:
                return f"retraining run {run.id} of {model_name} is still running"
            client.runs.end_run(run.id, "failed", error="abandoned: never ended")
    return guard_verdict([r.created_at for r in earlier], mine.created_at, config)


def _window_info(window_file: Path | None, config: Any) -> dict[str, Any]:
    if window_file is None:
        return {"source": config.data.source, "path": config.data.path, "n_rows": config.data.n_rows}
    import pyarrow.parquet as pq

    info: dict[str, Any] = {"source": "file", "path": str(window_file)}
    if str(window_file).lower().endswith((".parquet", ".pq")):
        table = pq.read_table(window_file)
        info["n_rows"] = table.num_rows
        if "event_time" in table.column_names and table.num_rows:
            times = table.column("event_time").to_pandas()
            info["start"], info["end"] = str(times.min()), str(times.max())
    return info


def _step(result: RetrainResult, client: Any, name: str, **details: Any) -> None:
    result.steps.append({"step": name, "at": datetime.now(UTC).isoformat(), **details})
    if result.run_id:
        client.runs.update_tags(result.run_id, {"steps": result.steps})


def run_retrain(client: Any, model_name: str, train_config: Any, *, trigger: str = "manual",
                alert_id: str | None = None, window_file: Path | str | None = None,
                monitor_config: Any = None, start_rollout: bool = True, actor: str = "monitor") -> RetrainResult:
    """One guarded retraining of ``model_name`` (see the module docstring). Never promotes: the best it does is
    a challenger in shadow. Expected errors of training become a failed (recorded, alerted) result."""
    from mlplatform.config.train import load_train_config, train_config_from_dict
    from mlplatform.entities import RunKind, RunStatus
    from mlplatform.errors import GateFailed, InvalidInput
    from mlplatform.monitoring.config import MonitorConfig
    from mlplatform.training.pipeline import train

    monitor_config = monitor_config or MonitorConfig()
    config = train_config if not isinstance(train_config, str | Path) else load_train_config(train_config)
    if config.model_name != model_name:
        raise InvalidInput(f"the training config registers {config.model_name!r}, not {model_name!r}",
                           field="config")
    champion = client.registry.resolve(f"{model_name}@champion")
    window_path = Path(window_file) if window_file is not None else None
    data = config.model_dump(mode="json")
    if window_path is not None:  # the newest window replaces the config's data; everything else is kept
        data["data"] = data["data"] | {"source": "file", "path": str(window_path),
                                       "name": f"{model_name}_window"}
    data["gate"] = data["gate"] | {"compare_champion": True}  # a retrain must beat the champion, always
    config = train_config_from_dict(data, source="retrain")
    from mlplatform.models.factory import default_factory

    warm = default_factory().get(config.model.family).warm_start and champion.framework == config.framework
    result = RetrainResult(model_name, "running", trigger, alert_id, _window_info(window_path, config),
                           parent=champion.ref)
    run = client.runs.start_run(RETRAIN_EXPERIMENT, RunKind.RETRAIN, name=f"retrain-{model_name}",
                                seed=config.seed, config={"trigger": trigger, "alert_id": alert_id,
                                                          "window": result.window, "champion": champion.ref,
                                                          "warm_start": warm, "train_config": data},
                                tags={"model": model_name, "trigger": trigger, "alert_id": alert_id,
                                      "champion": champion.ref})
    result.run_id = run.id
    blocked = _blocked(client, model_name, run, monitor_config.retrain)
    if blocked is not None:
        result.status, result.reason = "refused", blocked
        client.runs.update_tags(run.id, {"outcome": "refused", "blocked_by": blocked})
        _step(result, client, "refused", reason=blocked)
        client.runs.end_run(run.id, RunStatus.STOPPED, error=f"refused: {blocked}")
        client.monitoring.audit(actor, "retrain_refused", f"model:{model_name}:{champion.version}", blocked)
        logger.warning("retraining of %s refused: %s", model_name, blocked)
        return result
    _step(result, client, "started", champion=champion.ref, warm_start=warm)
    client.monitoring.audit(actor, "retrain_start", f"model:{model_name}:{champion.version}",
                            f"trigger {trigger}" + (f", alert {alert_id}" if alert_id else ""))
    try:
        outcome = train(config, client=client, warm_start=champion.ref if warm else None, parent=champion.ref)
    except GateFailed as exc:
        result.training_run_id = exc.details.get("run_id")
        if result.training_run_id:
            client.runs.update_tags(result.training_run_id, {"retrain_run_id": run.id, "trigger": trigger})
        return _finish(client, result, RunStatus.REJECTED, "rejected", f"not better than the champion: {exc}",
                       monitor_config, champion.version, actor)
    except Exception as exc:  # any failure is recorded and alerted, never silent
        logger.exception("retraining of %s failed", model_name)
        return _finish(client, result, RunStatus.FAILED, "failed", f"{type(exc).__name__}: {exc}",
                       monitor_config, champion.version, actor)
    result.training_run_id, result.challenger, result.gate = outcome.run_id, outcome.model_version, outcome.gate
    client.runs.update_tags(outcome.run_id, {"retrain_run_id": run.id, "trigger": trigger, "alert_id": alert_id})
    client.runs.update_tags(run.id, {"training_run_id": outcome.run_id, "challenger": outcome.model_version})
    _step(result, client, "challenger_registered", version=outcome.model_version, alias=outcome.alias,
          training_run_id=outcome.run_id, parent=outcome.parent)
    client.monitoring.audit(actor, "retrain_challenger", f"model:{outcome.model_version}",
                            f"parent {champion.ref}, run {run.id}")
    if start_rollout and outcome.alias == "challenger":
        result.rollout = _start_shadow(client, model_name, actor, run.id)
        _step(result, client, "rollout", **result.rollout)
    return _finish(client, result, RunStatus.COMPLETED, "completed", None, monitor_config, champion.version, actor)


def _start_shadow(client: Any, model_name: str, actor: str, run_id: str) -> dict[str, Any]:
    from mlplatform.errors import MLPlatformError

    try:
        from mlplatform.serving.rollout import control
    except ImportError:  # a platform without the rollout feature: the challenger waits for a human
        return {"started": False, "reason": "rollout is not available"}
    try:
        state = control.start(client, model_name, stage="shadow", actor=f"{actor} (retrain {run_id})")
    except MLPlatformError as exc:  # e.g. a rollout is already active: leave it alone
        logger.warning("retrained challenger of %s: rollout not started: %s", model_name, exc)
        return {"started": False, "reason": str(exc)}
    return {"started": True, "stage": state.stage, "champion_version": state.champion_version,
            "challenger_version": state.challenger_version}


def _finish(client: Any, result: RetrainResult, status: Any, label: str, reason: str | None, monitor_config: Any,
            version: int, actor: str) -> RetrainResult:
    from mlplatform.monitoring.alerts import AlertCheck, AlertManager, AlertType

    result.status, result.reason = label, reason
    _step(result, client, label, **({"reason": reason} if reason else {}))
    client.runs.update_tags(result.run_id, {"outcome": label, "training_run_id": result.training_run_id})
    client.runs.end_run(result.run_id, status, error=reason[:2000] if reason else None)
    if label != "completed":
        client.monitoring.audit(actor, f"retrain_{label}", f"model:{result.model}:{version}", reason)
        # a failure pages (ORANGE); a candidate that lost to the champion is worth a look (YELLOW)
        level = AlertLevel.ORANGE if label == "failed" else AlertLevel.YELLOW
        AlertManager(client.monitoring, monitor_config).record(AlertCheck(
            AlertType.RETRAIN, level, result.model, version, f"retrain_{label}",
            f"retraining run {result.run_id} {label}: {reason}", method="retrain_loop"))
    return result
