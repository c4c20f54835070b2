"""The store's interfaces: one Protocol per aggregate (runs, registry, datasets, monitoring, rollouts, the loop's
decisions, schedules).

The client types its attributes with these and assigns the SQL implementations (``store/sql``), so mypy checks
that the SQL store keeps every promise, and code that needs one aggregate can say so instead of taking a client.
They are Protocols rather than ABCs: a second backend (or a test's in-memory store) satisfies them by shape,
without inheriting from the store package. They import no SQL, so a module that only names an interface (the
features' dataset versioning, which Ray workers load) does not pull SQLAlchemy in. A default shown as ``...`` is the
implementation's own (the run-liveness intervals of :mod:`mlplatform.store.sql.runs`).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from mlplatform.entities import (
    Alert,
    AliasChange,
    AuditEntry,
    DatasetVersion,
    DriftReport,
    Evaluation,
    Experiment,
    Label,
    Metric,
    ModelVersion,
    PredictionRecord,
    RegisteredModel,
    Run,
    RunKind,
    RunStatus,
)
from mlplatform.entities.loop import LoopDecision
from mlplatform.entities.rollouts import RolloutState
from mlplatform.entities.schedules import Schedule, ScheduleRun


class RunStore(Protocol):
    """The runs aggregate; :class:`~mlplatform.store.sql.runs.SqlRunStore` implements it."""
    def get_or_create_experiment(self, name: str) -> Experiment:
        ...

    def get_experiment(self, name_or_id: str) -> Experiment:
        ...

    def start_run(
        self,
        experiment: str,
        kind: RunKind | str,
        *,
        config: Mapping[str, Any] | None = None,
        seed: int | None = None,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        run_id: str | None = None,
        name: str | None = None,
        status: RunStatus = RunStatus.RUNNING,
    ) -> Run:
        """Create a run. A caller-supplied ``run_id`` makes this idempotent: the existing run is returned."""

    def end_run(self, run_id: str, status: RunStatus | str = RunStatus.COMPLETED, error: str | None = None) -> Run:
        ...

    def heartbeat(self, run_id: str) -> None:
        ...

    def update_tags(self, run_id: str, tags: Mapping[str, Any]) -> Run:
        ...

    def fail_stale_runs(self, older_than_seconds: int = ..., now: datetime | None = None) -> int:
        """``running`` runs without a heartbeat for 600 s become ``failed`` (a crashed driver never ends them)."""

    def fail_stale(self, older_than_seconds: int = ..., now: datetime | None = None) -> list[str]:
        """Like :meth:`fail_stale_runs`, returning the ids it failed (``mlplatform runs gc`` lists them)."""

    def keep_alive(self, run_id: str, every_s: float = ...) -> AbstractContextManager[None]:
        """Heartbeat ``run_id`` from a daemon thread while the block runs, so a long step (a sklearn fit, a batch
        job) is never failed as stale, and a crashed process stops beating and is."""

    def get_run(self, run_id: str) -> Run:
        ...

    def list_runs(
        self, experiment: str | None = None, kind: str | None = None, status: str | None = None,
        parent_run_id: str | None = None, limit: int = 100,
    ) -> list[Run]:
        ...

    def log_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, float] | Sequence[Mapping[str, Any]],
        step: int = 0,
        *,
        split: str | None = None,
        fold: int | None = None,
        slice: str | None = None,
        timestamp: datetime | None = None,
    ) -> int:
        """Insert metric rows in one batched statement. Accepts ``{key: value}`` or row dicts
        (``key``, ``value``, optional ``step``, ``split``, ``fold``, ``slice``, ``timestamp``)."""

    def get_metrics(self, run_id: str, key: str | None = None) -> list[Metric]:
        ...

    def latest_metrics(self, run_id: str) -> dict[str, float]:
        """The last value of each key (highest step, then newest row)."""

    def count_metrics(self, run_id: str | None = None) -> int:
        ...

    def best_run(
        self, metric: str, mode: str = "max", *, experiment: str | None = None, dataset_version: str | None = None,
        split: str | None = None, kind: str | None = None,
    ) -> tuple[Run, float]:
        """Best run by a metric. Rows lacking the metric are skipped (never read as 0); ties go to the earliest
        run, then the smallest id; only runs linked to ``dataset_version`` compete when it is given."""

    def search_runs(self, param: str, *, equals: Any = None, low: float | None = None,
                    high: float | None = None) -> list[Run]:
        """Runs whose flattened config has ``param`` equal to a value (``1 == 1.0``) or within ``[low, high]``."""

    def compare(self, run_ids: Iterable[str]) -> tuple[list[dict[str, Any]], list[str]]:
        """One row per known run with ``params.*`` and ``metrics.*`` columns; unknown ids are returned, not dropped."""

    def link_dataset(self, run_id: str, dataset_id: str, role: str = "train") -> None:
        ...


class RegistryStore(Protocol):
    """The registry aggregate; :class:`~mlplatform.store.sql.registry.SqlRegistryStore` implements it."""
    def list_models(self) -> list[RegisteredModel]:
        ...

    def get_model(self, name: str) -> RegisteredModel:
        ...

    def list_versions(self, name: str) -> list[ModelVersion]:
        ...

    def get_version(self, name: str, version: int | None = None, alias: str | None = None) -> ModelVersion:
        """By number, by alias, or (neither) the champion."""

    def in_service(self, since: datetime) -> set[tuple[str, int]]:
        """Versions being served: in an active rollout, or that answered a logged prediction since ``since``."""

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasChange]:
        ...

    def create_version(
        self, name: str, *, framework: str, task: str | None, artifact_uri: str, artifact_sha256: str,
        files: dict[str, dict[str, Any]], input_schema: list[dict[str, Any]], metrics: dict[str, float],
        lineage: dict[str, Any], source_run_id: str | None = None, parent: tuple[str, int] | None = None,
        actor: str = "unknown",
    ) -> ModelVersion:
        ...

    def set_alias(self, name: str, alias: str, version: int, *, actor: str = "unknown",
                  reason: str | None = None) -> ModelVersion:
        ...

    def delete_alias(self, name: str, alias: str, *, actor: str = "unknown", reason: str | None = None) -> None:
        ...

    def promote(self, name: str, *, actor: str = "unknown", reason: str | None = None) -> ModelVersion:
        """Challenger becomes champion; the old champion stays restorable (status ``standby``)."""

    def rollback(self, name: str, *, actor: str = "unknown", reason: str | None = None) -> ModelVersion:
        """Champion goes back to its previous holder: never a never-served or archived version."""

    def archive(self, name: str, version: int, *, actor: str = "unknown", reason: str | None = None) -> ModelVersion:
        ...

    def add_evaluation(self, name: str, version: int, metrics: dict[str, float], *, dataset_version: str | None,
                       slice: str = "all", n: int | None = None) -> None:
        ...

    def evaluations(self, name: str, version: int | None = None) -> list[Evaluation]:
        ...

    def leaderboard(self, name: str, metric: str, *, dataset_version: str | None = None, mode: str = "max",
                    slice: str = "all") -> list[dict[str, Any]]:
        """Versions ranked on one metric of one dataset version; versions lacking it are left out, never 0."""


class DatasetStore(Protocol):
    """The datasets aggregate; :class:`~mlplatform.store.sql.datasets.SqlDatasetStore` implements it."""
    def register(self, name: str, version: str, *, uri: str | None, schema: dict[str, Any], row_count: int,
                 profile: dict[str, Any] | None = None) -> DatasetVersion:
        """Idempotent: the same name and content hash return the existing record."""

    def get(self, name: str, version: str | None = None) -> DatasetVersion:
        """A version by name and hash (a unique prefix of 8+ characters works), or the newest of a name."""

    def list(self, name: str | None = None, limit: int = 100) -> list[DatasetVersion]:
        ...

    def for_run(self, run_id: str) -> builtins.list[tuple[str, DatasetVersion]]:
        ...


class MonitoringStore(Protocol):
    """The monitoring aggregate; :class:`~mlplatform.store.sql.monitoring.SqlMonitoringStore` implements it."""
    def log_predictions(self, records: Sequence[PredictionRecord]) -> int:
        """One batched insert for many records (serving flushes its buffer through here)."""

    def predictions(self, model_name: str | None = None, *, version: int | None = None,
                    start: datetime | None = None, end: datetime | None = None, request_id: str | None = None,
                    limit: int | None = None, include_errors: bool = False) -> list[PredictionRecord]:
        """Logged predictions in the half-open window ``[start, end)``, oldest first. Error answers (status >= 400)
        only with ``include_errors``: drift, performance and replay compute on answers, never on errors."""

    def labelled_outcomes(self, model_name: str, versions: Sequence[int], *, start: datetime,
                          end: datetime | None = None, limit: int = 20_000) -> list[tuple[int, Any, Any]]:
        """``(version, prediction, label)`` of the answers of ``versions`` logged in ``[start, end)`` that have a
        label by request id and instance index (the rollout guard's accuracy trigger, SPEC S7.5): one SQL join,
        error rows left out, at most ``limit`` rows (the newest)."""

    def add_label(self, label: Any, *, request_id: str | None = None, instance_index: int = 0,
                  entity_id: str | None = None, event_time: datetime | None = None,
                  overwrite: bool = False) -> bool:
        """Store a delayed label. An identical duplicate is a no-op (returns False); a conflicting one is a
        Conflict unless ``overwrite``."""

    def add_labels(self, labels: Sequence[dict[str, Any]], *, overwrite: bool = False) -> int:
        """Many labels (keys as :meth:`add_label`'s arguments) in one transaction, by the same rules; a conflict
        rolls back the whole batch. Returns how many were stored or changed."""

    def labels(self, *, request_ids: Sequence[str] | None = None, start: datetime | None = None,
               end: datetime | None = None, entity_ids: Sequence[str] | None = None) -> list[Label]:
        """Labels by request id, or (``entity_ids``) the labels keyed by entity only, or both (either matches)."""

    def save_drift_report(self, model_name: str, version: int | None, *, n: int, level: str,
                          summary: dict[str, Any], window_start: datetime | None = None,
                          window_end: datetime | None = None) -> DriftReport:
        ...

    def drift_reports(self, model_name: str, limit: int = 50) -> list[DriftReport]:
        ...

    def upsert_alert(self, *, type: str, level: str, source: str, message: str, model_name: str | None = None,
                     version: int | None = None, metric: str | None = None, value: float | None = None,
                     threshold: float | None = None, runbook_url: str | None = None,
                     details: dict[str, Any] | None = None) -> tuple[Alert, bool]:
        """One open alert per (model, version, type, metric): a re-check updates it. Returns (alert, created)."""

    def resolve_alert(self, alert_id: str) -> None:
        ...

    def acknowledge_alert(self, alert_id: str) -> None:
        ...

    def alerts(self, model_name: str | None = None, *, status: str | None = None, limit: int = 200) -> list[Alert]:
        ...

    def audit(self, actor: str, action: str, target: str, reason: str | None = None,
              request_id: str | None = None) -> None:
        ...

    def audit_log(self, action: str | None = None, limit: int = 200) -> list[AuditEntry]:
        ...


class RolloutStore(Protocol):
    """The rollouts aggregate; :class:`~mlplatform.store.sql.rollouts.SqlRolloutStore` implements it."""
    def get(self, model_name: str) -> RolloutState | None:
        ...

    def list(self) -> list[RolloutState]:
        ...

    def start(self, model_name: str, *, replace_active: bool = False, **values: Any) -> RolloutState:
        """Create (or replace a finished) rollout; an active one is a Conflict unless ``replace_active``."""

    def update(self, model_name: str, change: Callable[[RolloutState], dict[str, Any]], *,
               expected_revision: int | None = None) -> RolloutState:
        """Apply ``change(current) -> {field: value}`` atomically; Conflict when the revision moved on."""

    def report_metrics(self, model_name: str, replica: str, snapshot: dict[str, Any], *,
                       stale_after_s: float = 120.0) -> None:
        """Merge one replica's window snapshot; snapshots of replicas gone quiet are dropped."""


class LoopStore(Protocol):
    """The loop aggregate; :class:`~mlplatform.store.sql.loop.SqlLoopStore` implements it."""
    def add(self, model_name: str, *, action: str, status: str, trigger: str | None, reason: str | None,
            champion_version: int | None, evidence: dict[str, Any], details: dict[str, Any] | None = None,
            created_at: datetime | None = None) -> LoopDecision:
        ...

    def get(self, decision_id: str) -> LoopDecision:
        ...

    def update(self, decision_id: str, *, step: dict[str, Any] | None = None, **values: Any) -> LoopDecision:
        """Set columns and append ``step`` (with its time) to the timeline, in one transaction."""

    def list(self, model_name: str | None = None, *, limit: int = 100,
             statuses: tuple[str, ...] | None = None, action: str | None = None) -> list[LoopDecision]:
        """Newest first."""


class ScheduleStore(Protocol):
    """The schedules aggregate; :class:`~mlplatform.store.sql.schedules.SqlScheduleStore` implements it."""
    def add(self, name: str, *, kind: str, cron: str, command: list[str], next_run_at: datetime,
            timeout_s: float) -> Schedule:
        ...

    def get(self, name: str) -> Schedule:
        ...

    def list(self) -> list[Schedule]:
        ...

    def due(self, now: datetime) -> builtins.list[str]:
        ...

    def update(self, name: str, **values: Any) -> Schedule:
        ...

    def remove(self, name: str) -> None:
        ...

    def acquire(self, name: str, owner: str, now: datetime, until: datetime) -> bool:
        """Take the schedule's lease when it is free or expired (one conditional UPDATE: atomic on SQLite and
        PostgreSQL alike). True when this owner now holds it."""

    def release(self, name: str, owner: str) -> None:
        ...

    def claim_slot(self, name: str, slot: datetime, owner: str, *, status: str = "running",
                   error: str | None = None, finished: bool = False) -> str | None:
        """Record the run of one slot; None when the slot was already claimed (ran, runs or was skipped)."""

    def finish_run(self, run_id: str, status: str, *, error: str | None = None,
                   details: dict[str, Any] | None = None) -> None:
        ...

    def abandon_running(self, name: str, reason: str) -> int:
        """Runs left "running" by a scheduler whose lease expired (it died): failed, with the reason."""

    def runs(self, name: str | None = None, *, limit: int = 100) -> builtins.list[ScheduleRun]:
        ...
