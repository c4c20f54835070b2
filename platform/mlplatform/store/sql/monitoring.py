"""Prediction log, labels, drift reports, alerts and the audit trail (SPEC S6.7, S8, S9.7)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mlplatform.entities import Alert, AuditEntry, DriftReport, Label, PredictionRecord
from mlplatform.errors import Conflict, NotFound
from mlplatform.store.sql.models import AlertRow, AuditRow, DriftReportRow, LabelRow, PredictionLogRow, utcnow
from mlplatform.store.sql.session import SessionScope


def _prediction(row: PredictionLogRow) -> PredictionRecord:
    return PredictionRecord(
        request_id=row.request_id, model_name=row.model_name, version=row.version, features=row.features,
        prediction=row.prediction.get("value"), confidence=row.confidence, latency_ms=row.latency_ms,
        timestamp=row.timestamp, instance_index=row.instance_index, entity_id=row.entity_id, variant=row.variant,
        probabilities=row.prediction.get("probabilities"), status=200 if row.status is None else row.status,
        error=row.prediction.get("error"),
    )


def _prediction_json(record: PredictionRecord) -> dict[str, Any]:
    """The JSON ``prediction`` column: the answer, plus the class probabilities when the model gave them (kept in
    the same column, so logging them needed no migration)."""
    out: dict[str, Any] = {"value": record.prediction}
    if record.probabilities is not None:
        out["probabilities"] = [float(p) for p in record.probabilities]
    if record.error is not None:  # an error answer's reason, beside its status column
        out["error"] = record.error
    return out


def _answered() -> Any:
    """Rows that are answers, not errors (rows from before revision 0006 have no status: they were answers)."""
    return sa.or_(PredictionLogRow.status.is_(None), PredictionLogRow.status < 400)


def _label(row: LabelRow) -> Label:
    return Label(label=row.label.get("value"), timestamp=row.timestamp, request_id=row.request_id,
                 instance_index=row.instance_index, entity_id=row.entity_id, event_time=row.event_time)


def _alert(row: AlertRow) -> Alert:
    return Alert(
        id=row.id, type=row.type, level=row.level, source=row.source, model_name=row.model_name, version=row.version,
        metric=row.metric, value=row.value, threshold=row.threshold, message=row.message, status=row.status,
        created_at=row.created_at, updated_at=row.updated_at, acknowledged=row.acknowledged,
        runbook_url=row.runbook_url, details=row.details,
    )


class SqlMonitoringStore:
    def __init__(self, scope: SessionScope) -> None:
        self._scope = scope

    # -- prediction log ----------------------------------------------------------------------------------------
    def log_predictions(self, records: Sequence[PredictionRecord]) -> int:
        """One batched insert for many records (serving flushes its buffer through here)."""
        if not records:
            return 0
        rows = [{
            "request_id": r.request_id, "instance_index": r.instance_index, "model_name": r.model_name,
            "version": r.version, "variant": r.variant, "entity_id": r.entity_id, "features": r.features,
            "prediction": _prediction_json(r), "confidence": r.confidence, "latency_ms": r.latency_ms,
            "timestamp": r.timestamp, "status": r.status,
        } for r in records]
        return self._scope.run(lambda s: _insert(s, PredictionLogRow, rows), what="log predictions")

    def predictions(self, model_name: str | None = None, *, version: int | None = None,
                    start: datetime | None = None, end: datetime | None = None, request_id: str | None = None,
                    limit: int | None = None, include_errors: bool = False) -> list[PredictionRecord]:
        """Logged predictions in the half-open window ``[start, end)``, oldest first. Error answers (status >= 400)
        only with ``include_errors``: drift, performance and replay compute on answers, never on errors."""
        with self._scope.session() as session:
            query = sa.select(PredictionLogRow)
            if not include_errors:
                query = query.where(_answered())
            if model_name is not None:
                query = query.where(PredictionLogRow.model_name == model_name)
            if version is not None:
                query = query.where(PredictionLogRow.version == version)
            if start is not None:
                query = query.where(PredictionLogRow.timestamp >= start)
            if end is not None:
                query = query.where(PredictionLogRow.timestamp < end)
            if request_id is not None:
                query = query.where(PredictionLogRow.request_id == request_id)
            if limit is not None:
                # the newest ``limit`` rows, returned oldest first
                query = query.order_by(PredictionLogRow.timestamp.desc(), PredictionLogRow.id.desc()).limit(limit)
                return [_prediction(r) for r in reversed(list(session.scalars(query)))]
            query = query.order_by(PredictionLogRow.timestamp, PredictionLogRow.id)
            return [_prediction(r) for r in session.scalars(query)]

    def labelled_outcomes(self, model_name: str, versions: Sequence[int], *, start: datetime,
                          end: datetime | None = None, limit: int = 20_000) -> list[tuple[int, Any, Any]]:
        """``(version, prediction, label)`` of the answers of ``versions`` logged in ``[start, end)`` that have a
        label by request id and instance index (the rollout guard's accuracy trigger, SPEC S7.5): one SQL join,
        error rows left out, at most ``limit`` rows (the newest)."""
        with self._scope.session() as session:
            query = (sa.select(PredictionLogRow.version, PredictionLogRow.prediction, LabelRow.label)
                     .join(LabelRow, sa.and_(LabelRow.request_id == PredictionLogRow.request_id,
                                             LabelRow.instance_index == PredictionLogRow.instance_index))
                     .where(PredictionLogRow.model_name == model_name,
                            PredictionLogRow.version.in_(list(versions)), PredictionLogRow.timestamp >= start,
                            _answered()))
            if end is not None:
                query = query.where(PredictionLogRow.timestamp < end)
            query = query.order_by(PredictionLogRow.id.desc()).limit(limit)
            return [(int(v), (p or {}).get("value"), (lbl or {}).get("value")) for v, p, lbl in session.execute(query)]

    # -- labels ------------------------------------------------------------------------------------------------
    def add_label(self, label: Any, *, request_id: str | None = None, instance_index: int = 0,
                  entity_id: str | None = None, event_time: datetime | None = None,
                  overwrite: bool = False) -> bool:
        """Store a delayed label. An identical duplicate is a no-op (returns False); a conflicting one is a
        Conflict unless ``overwrite``."""
        item = {"label": label, "request_id": request_id, "instance_index": instance_index,
                "entity_id": entity_id, "event_time": event_time}
        _check_label(item)
        return self._scope.run(lambda s: _add_label(s, item, overwrite), what="add label")

    def add_labels(self, labels: Sequence[dict[str, Any]], *, overwrite: bool = False) -> int:
        """Many labels (keys as :meth:`add_label`'s arguments) in one transaction, by the same rules; a conflict
        rolls back the whole batch. Returns how many were stored or changed."""
        for item in labels:
            _check_label(item)
        return self._scope.run(lambda s: sum(_add_label(s, item, overwrite) for item in labels),
                               what="add labels")

    def labels(self, *, request_ids: Sequence[str] | None = None, start: datetime | None = None,
               end: datetime | None = None, entity_ids: Sequence[str] | None = None) -> list[Label]:
        """Labels by request id, or (``entity_ids``) the labels keyed by entity only, or both (either matches)."""
        with self._scope.session() as session:
            query = sa.select(LabelRow).order_by(LabelRow.id)
            if request_ids is not None and entity_ids is not None:
                query = query.where(sa.or_(LabelRow.request_id.in_(list(request_ids)), sa.and_(
                    LabelRow.request_id.is_(None), LabelRow.entity_id.in_(list(entity_ids)))))
            elif request_ids is not None:
                query = query.where(LabelRow.request_id.in_(list(request_ids)))
            elif entity_ids is not None:
                query = query.where(LabelRow.request_id.is_(None), LabelRow.entity_id.in_(list(entity_ids)))
            if start is not None:
                query = query.where(LabelRow.timestamp >= start)
            if end is not None:
                query = query.where(LabelRow.timestamp < end)
            return [_label(r) for r in session.scalars(query)]

    # -- drift reports -----------------------------------------------------------------------------------------
    def save_drift_report(self, model_name: str, version: int | None, *, n: int, level: str,
                          summary: dict[str, Any], window_start: datetime | None = None,
                          window_end: datetime | None = None) -> DriftReport:
        def work(session: Session) -> DriftReport:
            row = DriftReportRow(id=str(uuid.uuid4()), model_name=model_name, version=version,
                                 window_start=window_start, window_end=window_end, n=n, level=level,
                                 summary=summary, created_at=utcnow())
            session.add(row)
            session.flush()
            return DriftReport(id=row.id, model_name=model_name, version=version, window_start=window_start,
                               window_end=window_end, n=n, level=level, summary=summary, created_at=row.created_at)

        return self._scope.run(work, what="save drift report")

    def drift_reports(self, model_name: str, limit: int = 50) -> list[DriftReport]:
        with self._scope.session() as session:
            rows = session.scalars(sa.select(DriftReportRow).where(DriftReportRow.model_name == model_name)
                                   .order_by(DriftReportRow.created_at.desc()).limit(limit))
            return [DriftReport(id=r.id, model_name=r.model_name, version=r.version, window_start=r.window_start,
                                window_end=r.window_end, n=r.n, level=r.level, summary=r.summary,
                                created_at=r.created_at) for r in rows]

    # -- alerts ------------------------------------------------------------------------------------------------
    def upsert_alert(self, *, type: str, level: str, source: str, message: str, model_name: str | None = None,
                     version: int | None = None, metric: str | None = None, value: float | None = None,
                     threshold: float | None = None, runbook_url: str | None = None,
                     details: dict[str, Any] | None = None) -> tuple[Alert, bool]:
        """One open alert per (model, version, type, metric): a re-check updates it. Returns (alert, created)."""

        def work(session: Session) -> tuple[Alert, bool]:
            row = session.scalar(sa.select(AlertRow).where(
                AlertRow.status == "open", AlertRow.type == type, AlertRow.model_name == model_name,
                AlertRow.version == version if version is not None else AlertRow.version.is_(None),
                AlertRow.metric == metric if metric is not None else AlertRow.metric.is_(None),
            ))
            now = utcnow()
            created = row is None
            if row is None:
                row = AlertRow(id=str(uuid.uuid4()), type=type, source=source, model_name=model_name,
                               version=version, metric=metric, status="open", acknowledged=False, created_at=now,
                               details={}, message=message, level=level)
                session.add(row)
            row.level, row.value, row.threshold, row.message = level, value, threshold, message
            row.runbook_url, row.updated_at = runbook_url, now
            row.details = {**(row.details or {}), **(details or {})}
            session.flush()
            return _alert(row), created

        return self._scope.run(work, what="upsert alert")

    def resolve_alert(self, alert_id: str) -> None:
        def work(session: Session) -> None:
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise NotFound(f"alert {alert_id} does not exist", field="alert")
            row.status, row.updated_at = "resolved", utcnow()

        self._scope.run(work, what="resolve alert")

    def acknowledge_alert(self, alert_id: str) -> None:
        def work(session: Session) -> None:
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise NotFound(f"alert {alert_id} does not exist", field="alert")
            row.acknowledged, row.updated_at = True, utcnow()

        self._scope.run(work, what="acknowledge alert")

    def alerts(self, model_name: str | None = None, *, status: str | None = None, limit: int = 200) -> list[Alert]:
        with self._scope.session() as session:
            query = sa.select(AlertRow).order_by(AlertRow.created_at.desc()).limit(limit)
            if model_name is not None:
                query = query.where(AlertRow.model_name == model_name)
            if status is not None:
                query = query.where(AlertRow.status == status)
            return [_alert(r) for r in session.scalars(query)]

    # -- audit -------------------------------------------------------------------------------------------------
    def audit(self, actor: str, action: str, target: str, reason: str | None = None,
              request_id: str | None = None) -> None:
        self._scope.run(lambda s: s.add(AuditRow(actor=actor, action=action, target=target, reason=reason,
                                                 request_id=request_id, created_at=utcnow())), what="audit")

    def audit_log(self, action: str | None = None, limit: int = 200) -> list[AuditEntry]:
        with self._scope.session() as session:
            query = sa.select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
            if action is not None:
                query = query.where(AuditRow.action == action)
            return [AuditEntry(actor=r.actor, action=r.action, target=r.target, reason=r.reason,
                               created_at=r.created_at, request_id=r.request_id) for r in session.scalars(query)]


def _check_label(item: dict[str, Any]) -> None:
    if item.get("request_id") is None and item.get("entity_id") is None:
        raise NotFound("a label needs a request_id or an entity_id", field="request_id")


def _add_label(session: Session, item: dict[str, Any], overwrite: bool) -> bool:
    label, request_id = item["label"], item.get("request_id")
    instance_index = item.get("instance_index", 0)
    existing = None
    if request_id is not None:
        existing = session.scalar(sa.select(LabelRow).where(
            LabelRow.request_id == request_id, LabelRow.instance_index == instance_index))
    if existing is not None:
        if existing.label.get("value") == label:
            return False
        if not overwrite:
            raise Conflict(f"request {request_id} already has label {existing.label.get('value')!r}",
                           field="label")
        existing.label = {"value": label}
        existing.timestamp = utcnow()
        return True
    session.add(LabelRow(request_id=request_id, instance_index=instance_index, entity_id=item.get("entity_id"),
                         event_time=item.get("event_time"), label={"value": label}, timestamp=utcnow()))
    return True


def _insert(session: Session, table: Any, rows: list[dict[str, Any]]) -> int:
    session.execute(sa.insert(table), rows)
    return len(rows)
