"""Retraining (SPEC S8.4, S8.10): the decision and its guards.

The decision: recommend when >= 3 features have PSI >= 0.2 or decay is declared, within the guards (>= 6 h
between automatic retrains, <= 2 per model per UTC day); a check records it as an audit entry and a RETRAIN alert.
The retraining itself (train, gate, challenger, rollout) is :mod:`mlplatform.loop`: monitoring never imports
training or serving.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mlplatform.config.monitor import RetrainConfig
from mlplatform.entities import AlertLevel
from mlplatform.store.interfaces import MonitoringStore

if TYPE_CHECKING:  # annotations only: the SQL store loads where a client is opened
    from mlplatform.client import Client

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


def previous_recommendations(store: MonitoringStore, model_name: str) -> list[datetime]:
    target = f"model:{model_name}:"
    return [e.created_at for e in store.audit_log(action=AUDIT_ACTION, limit=1000) if e.target.startswith(target)]


def record_recommendation(store: MonitoringStore, model_name: str, version: int | None,
                          decision: RetrainDecision) -> None:
    """The audit entry is the guard clock; the RETRAIN alert is raised by the caller through the AlertManager."""
    store.audit("monitor", AUDIT_ACTION, f"model:{model_name}:{version}", reason="; ".join(decision.reasons))
    logger.warning("retraining recommended for %s:%s: %s", model_name, version, "; ".join(decision.reasons))


# -- what calls for a retrain (the loop in mlplatform.loop acts on it)

TRIGGER_TYPES = {"decay": "decay", "estimated_decay": "decay", "retrain": "drift", "data_drift": "drift",
                 "prediction_drift": "drift"}


def find_trigger(client: Client, model_name: str, version: int | None = None) -> tuple[str | None, Any]:
    """The open RED drift/decay alert that calls for a retrain (decay first), or (None, None)."""
    alerts = [a for a in client.monitoring.alerts(model_name, status="open", limit=1000)
              if a.level == AlertLevel.RED.name and a.type in TRIGGER_TYPES
              and (version is None or a.version == version)]
    alerts.sort(key=lambda a: (a.type != "decay", a.type != "retrain"))
    return (TRIGGER_TYPES[alerts[0].type], alerts[0]) if alerts else (None, None)
