"""Plain dataclasses that cross the store boundary; ORM rows never leave the store."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


class RunKind(enum.StrEnum):
    TRAIN = "train"
    TUNE = "tune"
    TUNE_TRIAL = "tune_trial"
    EVALUATION = "evaluation"
    BATCH = "batch"
    REPLAY = "replay"
    MONITOR = "monitor"
    RETRAIN = "retrain"


class RunStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    REJECTED = "rejected"

    @property
    def is_terminal(self) -> bool:
        return self in {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.STOPPED, RunStatus.REJECTED}


class VersionStatus(enum.StrEnum):
    REGISTERED = "registered"  # never served
    CHAMPION = "champion"
    CHALLENGER = "challenger"
    SHADOW = "shadow"
    ROLLED_BACK = "rolled_back"
    ARCHIVED = "archived"


class AlertLevel(enum.IntEnum):
    """Ordered by rank so that ``max()`` and ``>=`` compare severity, never names."""

    GREEN = 0
    YELLOW = 1
    ORANGE = 2
    RED = 3


class _Entity:
    def to_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}  # type: ignore[call-overload]


@dataclass(frozen=True)
class Experiment(_Entity):
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class Run(_Entity):
    id: str
    experiment_id: str
    kind: str
    status: str
    name: str | None
    parent_run_id: str | None
    config: dict[str, Any]
    config_hash: str | None
    seed: int | None
    tags: dict[str, Any]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    heartbeat_at: datetime | None


@dataclass(frozen=True)
class Metric(_Entity):
    run_id: str
    key: str
    value: float
    step: int
    timestamp: datetime
    split: str | None = None
    fold: int | None = None
    slice: str | None = None


@dataclass(frozen=True)
class DatasetVersion(_Entity):
    id: str
    name: str
    version: str
    uri: str | None
    schema: dict[str, Any]
    row_count: int
    profile: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class RegisteredModel(_Entity):
    id: str
    name: str
    task: str | None
    description: str | None
    created_at: datetime
    aliases: dict[str, int] = field(default_factory=dict)
    latest_version: int | None = None


@dataclass(frozen=True)
class ModelVersion(_Entity):
    id: str
    model_name: str
    version: int
    status: str
    framework: str
    artifact_uri: str
    artifact_sha256: str
    files: dict[str, dict[str, Any]]
    input_schema: list[dict[str, Any]]
    metrics: dict[str, float]
    lineage: dict[str, Any]
    source_run_id: str | None
    parent_version: int | None
    created_at: datetime
    aliases: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.model_name}:{self.version}"


@dataclass(frozen=True)
class AliasChange(_Entity):
    model_name: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str | None
    created_at: datetime


@dataclass(frozen=True)
class Evaluation(_Entity):
    model_name: str
    version: int
    dataset_version: str | None
    slice: str
    metric: str
    value: float
    n: int | None
    created_at: datetime


@dataclass(frozen=True)
class PredictionRecord(_Entity):
    request_id: str
    model_name: str
    version: int
    features: dict[str, Any]
    prediction: Any
    confidence: float | None
    latency_ms: float | None
    timestamp: datetime
    instance_index: int = 0
    entity_id: str | None = None
    variant: str | None = None
    # class probabilities in the model's class order: monitoring reads the true score from them (the logged
    # label and maximum probability cannot give it back under a tuned threshold)
    probabilities: list[float] | None = None
    # an error answer is logged too (SPEC S6.10): its HTTP status and a short reason; monitoring reads skip it
    status: int = 200
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status < 400


@dataclass(frozen=True)
class Label(_Entity):
    label: Any
    timestamp: datetime
    request_id: str | None = None
    instance_index: int = 0
    entity_id: str | None = None
    event_time: datetime | None = None


@dataclass(frozen=True)
class DriftReport(_Entity):
    id: str
    model_name: str
    version: int | None
    window_start: datetime | None
    window_end: datetime | None
    n: int
    level: str
    summary: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Alert(_Entity):
    id: str
    type: str
    level: str
    source: str
    model_name: str | None
    version: int | None
    metric: str | None
    value: float | None
    threshold: float | None
    message: str
    status: str
    created_at: datetime
    updated_at: datetime
    acknowledged: bool
    runbook_url: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry(_Entity):
    actor: str
    action: str
    target: str
    reason: str | None
    created_at: datetime
    request_id: str | None = None
