"""ORM rows. They never leave the store: ``store.sql.*`` turns them into :mod:`mlplatform.entities`.

Schema changes go through Alembic only (``migrations/versions``); a test keeps this metadata equal to the
migrated schema.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python; naive UTC in SQLite (which has no time zones), aware in PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType, datetime: UTCDateTime()}


class ExperimentRow(Base):
    __tablename__ = "experiments"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    created_at: Mapped[datetime]


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (sa.Index("ix_runs_created_at", "created_at"),)
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(sa.ForeignKey("experiments.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(32), index=True)
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    name: Mapped[str | None] = mapped_column(sa.String(255))
    parent_run_id: Mapped[str | None] = mapped_column(sa.ForeignKey("runs.id"), index=True)
    config: Mapped[dict[str, Any]]
    config_hash: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    seed: Mapped[int | None]
    tags: Mapped[dict[str, Any]]
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]


class ParamRow(Base):
    """Flattened run config for SQL search; ``value_num`` lets ``1 == 1.0`` and ranges match."""

    __tablename__ = "params"
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)
    value_num: Mapped[float | None] = mapped_column(sa.Float, index=True)


class MetricRow(Base):
    __tablename__ = "metrics"
    __table_args__ = (sa.Index("ix_metrics_run_key_step", "run_id", "key", "step"),)
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(255), index=True)
    value: Mapped[float] = mapped_column(sa.Float)
    step: Mapped[int] = mapped_column(sa.Integer, default=0)
    split: Mapped[str | None] = mapped_column(sa.String(32))
    fold: Mapped[int | None]
    slice: Mapped[str | None] = mapped_column(sa.String(255))
    timestamp: Mapped[datetime]


class DatasetRow(Base):
    __tablename__ = "datasets"
    __table_args__ = (sa.UniqueConstraint("name", "version"),)
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), index=True)
    version: Mapped[str] = mapped_column(sa.String(64), index=True)
    uri: Mapped[str | None] = mapped_column(sa.Text)
    schema: Mapped[dict[str, Any]]
    row_count: Mapped[int]
    profile: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class RunDatasetRow(Base):
    __tablename__ = "run_datasets"
    __table_args__ = (sa.Index("ix_run_datasets_dataset_id", "dataset_id"),)
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(sa.ForeignKey("datasets.id"), primary_key=True)
    role: Mapped[str] = mapped_column(sa.String(32), primary_key=True)


class ModelRow(Base):
    __tablename__ = "models"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    task: Mapped[str | None] = mapped_column(sa.String(32))
    description: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime]


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (sa.UniqueConstraint("model_id", "version"),
                      sa.Index("ix_model_versions_source_run_id", "source_run_id"))
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    model_id: Mapped[str] = mapped_column(sa.ForeignKey("models.id"), index=True)
    version: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(16))
    framework: Mapped[str] = mapped_column(sa.String(32))
    artifact_uri: Mapped[str] = mapped_column(sa.Text)
    artifact_sha256: Mapped[str] = mapped_column(sa.String(64))
    files: Mapped[dict[str, Any]]
    input_schema: Mapped[list[Any]]
    metrics: Mapped[dict[str, Any]]
    lineage: Mapped[dict[str, Any]]
    source_run_id: Mapped[str | None] = mapped_column(sa.ForeignKey("runs.id"))
    parent_version_id: Mapped[str | None] = mapped_column(sa.ForeignKey("model_versions.id"))
    created_at: Mapped[datetime]


class AliasRow(Base):
    __tablename__ = "aliases"
    model_id: Mapped[str] = mapped_column(sa.ForeignKey("models.id"), primary_key=True)
    alias: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    version_id: Mapped[str] = mapped_column(sa.ForeignKey("model_versions.id"))
    updated_at: Mapped[datetime]


class AliasHistoryRow(Base):
    __tablename__ = "alias_history"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(sa.ForeignKey("models.id"), index=True)
    alias: Mapped[str] = mapped_column(sa.String(64))
    from_version: Mapped[int | None]
    to_version: Mapped[int | None]
    actor: Mapped[str] = mapped_column(sa.String(255))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime]


class EvaluationRow(Base):
    __tablename__ = "evaluations"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    version_id: Mapped[str] = mapped_column(sa.ForeignKey("model_versions.id"), index=True)
    dataset_version: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    slice: Mapped[str] = mapped_column(sa.String(255))
    metric: Mapped[str] = mapped_column(sa.String(255))
    value: Mapped[float] = mapped_column(sa.Float)
    n: Mapped[int | None]
    created_at: Mapped[datetime]


class PredictionLogRow(Base):
    __tablename__ = "prediction_log"
    __table_args__ = (sa.Index("ix_prediction_log_model_time", "model_name", "timestamp"),)
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    request_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    instance_index: Mapped[int] = mapped_column(sa.Integer, default=0)
    model_name: Mapped[str] = mapped_column(sa.String(255))
    version: Mapped[int]
    variant: Mapped[str | None] = mapped_column(sa.String(32))
    entity_id: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    features: Mapped[dict[str, Any]]
    prediction: Mapped[dict[str, Any]]
    confidence: Mapped[float | None] = mapped_column(sa.Float)
    latency_ms: Mapped[float | None] = mapped_column(sa.Float)
    timestamp: Mapped[datetime]
    # HTTP status of the answer: NULL (rows logged before revision 0006) and 2xx are answers; >= 400 an error
    status: Mapped[int | None] = mapped_column(sa.Integer)


class LabelRow(Base):
    __tablename__ = "labels"
    __table_args__ = (sa.UniqueConstraint("request_id", "instance_index"),)
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    request_id: Mapped[str | None] = mapped_column(sa.String(64))
    instance_index: Mapped[int] = mapped_column(sa.Integer, default=0)
    entity_id: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    event_time: Mapped[datetime | None]
    label: Mapped[dict[str, Any]]
    timestamp: Mapped[datetime]


class DriftReportRow(Base):
    __tablename__ = "drift_reports"
    __table_args__ = (sa.Index("ix_drift_reports_model_created", "model_name", "created_at"),)
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    model_name: Mapped[str] = mapped_column(sa.String(255), index=True)
    version: Mapped[int | None]
    window_start: Mapped[datetime | None]
    window_end: Mapped[datetime | None]
    n: Mapped[int]
    level: Mapped[str] = mapped_column(sa.String(16))
    summary: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class AlertRow(Base):
    __tablename__ = "alerts"
    __table_args__ = (sa.Index("ix_alerts_model_created", "model_name", "created_at"),)
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(64))
    level: Mapped[str] = mapped_column(sa.String(16))
    source: Mapped[str] = mapped_column(sa.String(255))
    model_name: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    version: Mapped[int | None]
    metric: Mapped[str | None] = mapped_column(sa.String(255))
    value: Mapped[float | None] = mapped_column(sa.Float)
    threshold: Mapped[float | None] = mapped_column(sa.Float)
    message: Mapped[str] = mapped_column(sa.Text)
    runbook_url: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    details: Mapped[dict[str, Any]]
    acknowledged: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AuditRow(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    actor: Mapped[str] = mapped_column(sa.String(255))
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    target: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    request_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]


class RolloutRow(Base):
    """One staged rollout per model (champion -> challenger): the routing state every replica follows."""

    __tablename__ = "rollouts"
    model_name: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    stage: Mapped[str] = mapped_column(sa.String(32))
    stages: Mapped[list[Any]]
    champion_version: Mapped[int | None]
    challenger_version: Mapped[int | None]
    salt: Mapped[str] = mapped_column(sa.String(64))
    policy: Mapped[dict[str, Any]]
    revision: Mapped[int] = mapped_column(sa.Integer)
    rollbacks: Mapped[int] = mapped_column(sa.Integer)
    details: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    actor: Mapped[str] = mapped_column(sa.String(255))
    stage_started_at: Mapped[datetime]
    cooldown_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ScheduleRow(Base):
    """A cron schedule (SPEC S9.3). ``lease_owner``/``lease_until`` is the lease a scheduler takes (a conditional
    update) before it runs the schedule's due slots, so two schedulers never run one job at once."""

    __tablename__ = "schedules"
    name: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    cron: Mapped[str] = mapped_column(sa.String(128))
    command: Mapped[list[Any]]
    status: Mapped[str] = mapped_column(sa.String(16))
    next_run_at: Mapped[datetime]
    last_run_at: Mapped[datetime | None]
    last_status: Mapped[str | None] = mapped_column(sa.String(16))
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    consecutive_failures: Mapped[int] = mapped_column(sa.Integer)
    lease_owner: Mapped[str | None] = mapped_column(sa.String(255))
    lease_until: Mapped[datetime | None]
    timeout_s: Mapped[float] = mapped_column(sa.Float)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ScheduleRunRow(Base):
    """One slot of a schedule: run, failed or skipped. The unique (schedule, slot) pair is what makes a slot run
    at most once, whatever the schedulers do."""

    __tablename__ = "schedule_runs"
    __table_args__ = (sa.UniqueConstraint("schedule_name", "scheduled_for", name="uq_schedule_runs_slot"),)
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    schedule_name: Mapped[str] = mapped_column(sa.String(255), index=True)
    scheduled_for: Mapped[datetime]
    status: Mapped[str] = mapped_column(sa.String(16))
    owner: Mapped[str] = mapped_column(sa.String(255))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(sa.Text)
    details: Mapped[dict[str, Any]]


class LoopDecisionRow(Base):
    """One decision of the automatic loop (issue 18): what fired, the numbers, the retrain job and how it ended.
    ``status`` moves no_action | blocked | retraining -> rejected | failed | rolling_out -> promoted | rolled_back;
    ``details.timeline`` keeps every step with its time."""

    __tablename__ = "loop_decisions"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    model_name: Mapped[str] = mapped_column(sa.String(255), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    trigger: Mapped[str | None] = mapped_column(sa.String(32))
    action: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    champion_version: Mapped[int | None] = mapped_column(sa.Integer)
    challenger_version: Mapped[int | None] = mapped_column(sa.Integer)
    job_id: Mapped[str | None] = mapped_column(sa.String(255))
    evidence: Mapped[dict[str, Any]]
    details: Mapped[dict[str, Any]]
