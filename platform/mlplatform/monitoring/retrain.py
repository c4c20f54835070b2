"""The retraining decision (SPEC S8.4, S8.10): recommend when >= 3 features have PSI >= 0.2 or decay is declared,
within the guards (>= 6 h between automatic retrains, <= 2 per model per UTC day).

No retraining entrypoint exists in the platform yet, so the decision is *recorded*: an audit entry
(``retrain_recommended``, the guard clock) and a RETRAIN alert that routes to the sinks. It never touches the
live model; whatever runs the retrain must register a challenger, not promote.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
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
                   config: RetrainConfig | None = None, drift_level: AlertLevel = AlertLevel.GREEN) -> RetrainDecision:
    """``previous``: times of earlier automatic recommendations for this model."""
    config = config or RetrainConfig()
    reasons = []
    if len(drifted_features) >= config.min_drifted_features:
        reasons.append(f"{len(drifted_features)} features with PSI >= {config.psi_significant}")
    if decay_declared:
        reasons.append("decay declared")
    level = max(drift_level, AlertLevel.RED if decay_declared else AlertLevel.GREEN)
    if not reasons:
        return RetrainDecision(False, [], None, drifted_features, AlertLevel.GREEN.name)
    now = now.astimezone(UTC)
    recent = [t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC) for t in previous]
    if any(now - t < timedelta(hours=config.min_hours_between) for t in recent):
        blocked = f"cooldown: another retrain within {config.min_hours_between:g} h"
        return RetrainDecision(False, reasons, blocked, drifted_features, level.name)
    today = [t for t in recent if t.date() == now.date()]
    if len(today) >= config.max_per_day:
        blocked = f"daily cap: {len(today)} retrains today (max {config.max_per_day})"
        return RetrainDecision(False, reasons, blocked, drifted_features, level.name)
    return RetrainDecision(True, reasons, None, drifted_features, level.name)


def previous_recommendations(store: Any, model_name: str) -> list[datetime]:
    target = f"model:{model_name}:"
    return [e.created_at for e in store.audit_log(action=AUDIT_ACTION, limit=1000) if e.target.startswith(target)]


def record_recommendation(store: Any, model_name: str, version: int | None, decision: RetrainDecision) -> None:
    """The audit entry is the guard clock; the RETRAIN alert is raised by the caller through the AlertManager."""
    store.audit("monitor", AUDIT_ACTION, f"model:{model_name}:{version}", reason="; ".join(decision.reasons))
    logger.warning("retraining recommended for %s:%s: %s", model_name, version, "; ".join(decision.reasons))
