"""Alert lifecycle and notification sinks (SPEC S8.8, S8.9).

One open alert per (model, version, type, metric), kept in the store's alert table. A re-check updates it; a
higher level notifies at once; the same (or a lower) level re-notifies only after ``renotify_minutes``; three
consecutive GREEN checks resolve it. The notification state (last notified time and level, GREEN streak) lives in
the alert's ``details`` JSON, so the decision survives restarts of the monitor.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from mlplatform._internal.retry import REQUEST_POLICY, call_with_retry
from mlplatform.config.monitor import MonitorConfig, SinkConfig
from mlplatform.entities import Alert, AlertLevel
from mlplatform.entities.levels import parse_level
from mlplatform.errors import MLPlatformError, Unavailable
from mlplatform.store.interfaces import MonitoringStore

logger = logging.getLogger(__name__)


class AlertType:
    DATA_DRIFT = "data_drift"
    PREDICTION_DRIFT = "prediction_drift"
    CONCEPT_DRIFT = "concept_drift"
    DECAY = "decay"
    ESTIMATED_DECAY = "estimated_decay"  # label-free (CBPE) estimate; sees covariate shift, not concept drift
    DATA_QUALITY = "data_quality"
    FAIRNESS = "fairness"
    RETRAIN = "retrain"


@dataclass(frozen=True)
class AlertCheck:
    """One metric's outcome of one check; GREEN checks count towards resolving an open alert."""

    type: str
    level: AlertLevel
    model_name: str
    version: int | None
    metric: str
    message: str
    value: float | None = None
    threshold: float | None = None
    method: str | None = None
    baseline: float | None = None
    n: int | None = None
    window: dict[str, Any] | None = None


@dataclass
class AlertOutcome:
    check: AlertCheck
    alert: Alert | None
    action: str  # created | updated | resolved | recovering | none
    notified: list[str] = field(default_factory=list)
    failed_sinks: list[str] = field(default_factory=list)


# -- sinks ---------------------------------------------------------------------------------------------------------
def alert_payload(alert: Alert, event: str) -> dict[str, Any]:
    data = alert.to_dict()
    return {"event": event, **data}


class Sink:
    def __init__(self, name: str, config: SinkConfig) -> None:
        self.name = name
        self.config = config

    def send(self, payload: dict[str, Any]) -> None:
        raise NotImplementedError


class LogSink(Sink):
    _LOG_LEVEL = {"GREEN": logging.INFO, "YELLOW": logging.WARNING, "ORANGE": logging.WARNING, "RED": logging.ERROR}

    def send(self, payload: dict[str, Any]) -> None:
        logger.log(self._LOG_LEVEL.get(payload.get("level", ""), logging.WARNING), "alert %s %s %s/%s %s: %s",
                   payload.get("event"), payload.get("level"), payload.get("model_name"), payload.get("version"),
                   payload.get("metric"), payload.get("message"))


class StdoutSink(Sink):
    def send(self, payload: dict[str, Any]) -> None:
        # an explicitly configured sink: the user asked for alerts as JSON lines on stdout
        sys.stdout.write(json.dumps(payload, default=str, sort_keys=True) + "\n")
        sys.stdout.flush()


class WebhookSink(Sink):
    def send(self, payload: dict[str, Any]) -> None:
        url, timeout = str(self.config.url), self.config.timeout_seconds

        def post() -> None:
            try:
                response = httpx.post(url, json=payload, timeout=timeout)
            except httpx.TransportError as exc:  # connect/read errors and timeouts: retryable
                raise Unavailable(f"webhook {self.name} unreachable: {type(exc).__name__}") from exc
            response.raise_for_status()  # 429/502/503/504 are retried by the policy, other 4xx/5xx are not

        call_with_retry(post, REQUEST_POLICY, what=f"webhook {self.name}")


_SINK_TYPES: dict[str, type[Sink]] = {"log": LogSink, "stdout": StdoutSink, "webhook": WebhookSink}


def build_sinks(config: MonitorConfig) -> dict[str, Sink]:
    return {name: _SINK_TYPES[sink.type](name, sink) for name, sink in config.sinks.items()}


# -- lifecycle -----------------------------------------------------------------------------------------------------
def _utcnow() -> datetime:
    return datetime.now(UTC)


class AlertManager:
    """Applies checks to the alert table and notifies the sinks routed for each level."""

    def __init__(self, store: MonitoringStore, config: MonitorConfig | None = None, *,
                 now: Callable[[], datetime] = _utcnow, sinks: dict[str, Sink] | None = None) -> None:
        self.store = store
        self.config = config or MonitorConfig()
        self.now = now
        self.sinks = sinks if sinks is not None else build_sinks(self.config)

    def find_open(self, model_name: str, version: int | None, type: str, metric: str) -> Alert | None:
        for alert in self.store.alerts(model_name, status="open", limit=10_000):
            if alert.type == type and alert.version == version and alert.metric == metric:
                return alert
        return None

    def record(self, check: AlertCheck) -> AlertOutcome:
        existing = self.find_open(check.model_name, check.version, check.type, check.metric)
        if check.level is AlertLevel.GREEN:
            return self._green(check, existing)
        now = self.now()
        details = dict(existing.details) if existing else {}
        notified_level = parse_level(details["notified_level"]) if details.get("notified_level") else None
        last = datetime.fromisoformat(details["last_notified_at"]) if details.get("last_notified_at") else None
        escalated = notified_level is None or check.level > notified_level
        stale = last is None or now - last >= timedelta(minutes=self.config.renotify_minutes)
        notify = existing is None or escalated or stale
        runbook = self.config.runbook_url if check.level >= AlertLevel.ORANGE else None
        new_details: dict[str, Any] = {
            "green_streak": 0, "method": check.method, "baseline": check.baseline, "n": check.n,
            "window": check.window, "checks": int(details.get("checks", 0)) + 1,
        }
        if notify:
            new_details |= {"notified_level": check.level.name, "last_notified_at": now.isoformat()}
        alert, created = self.store.upsert_alert(
            type=check.type, level=check.level.name, source="monitor", message=check.message,
            model_name=check.model_name, version=check.version, metric=check.metric, value=check.value,
            threshold=check.threshold, runbook_url=runbook, details=new_details)
        outcome = AlertOutcome(check, alert, "created" if created else "updated")
        if notify:
            event = "created" if created else "escalated" if escalated else "reminder"
            self._notify(outcome, alert, event, check.level)
        return outcome

    def _green(self, check: AlertCheck, existing: Alert | None) -> AlertOutcome:
        if existing is None:
            return AlertOutcome(check, None, "none")
        streak = int(existing.details.get("green_streak", 0)) + 1
        alert, _ = self.store.upsert_alert(
            type=check.type, level=AlertLevel.GREEN.name, source="monitor", message=check.message,
            model_name=check.model_name, version=check.version, metric=check.metric, value=check.value,
            threshold=check.threshold, runbook_url=existing.runbook_url,
            details={"green_streak": streak, "n": check.n, "window": check.window})
        if streak < self.config.resolve_after_green:
            return AlertOutcome(check, alert, "recovering")
        self.store.resolve_alert(alert.id)
        outcome = AlertOutcome(check, alert, "resolved")
        # tell whoever was paged that it is over, through the sinks of the level they were told about
        notified = existing.details.get("notified_level")
        self._notify(outcome, alert, "resolved", parse_level(notified) if notified else AlertLevel.YELLOW)
        return outcome

    def _notify(self, outcome: AlertOutcome, alert: Alert, event: str, level: AlertLevel) -> None:
        payload = alert_payload(alert, event)
        for name in self.config.sinks_for(level):
            try:
                self.sinks[name].send(payload)
                outcome.notified.append(name)
            except (MLPlatformError, httpx.HTTPError, OSError) as exc:
                # a broken sink must not stop the check: the alert row is stored either way
                logger.error("alert sink %s failed for alert %s: %s", name, alert.id, exc)
                outcome.failed_sinks.append(name)


def current_levels(store: MonitoringStore, model_name: str | None = None) -> dict[tuple[str, int | None], AlertLevel]:
    """The highest level of the open alerts per (model, version)."""
    levels: dict[tuple[str, int | None], AlertLevel] = {}
    for alert in store.alerts(model_name, status="open", limit=10_000):
        key = (alert.model_name or "-", alert.version)
        levels[key] = max(levels.get(key, AlertLevel.GREEN), parse_level(alert.level))
    return levels

