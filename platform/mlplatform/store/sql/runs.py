"""Experiments, runs, params, metrics and dataset links (SPEC S1.3-S1.5)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mlplatform.entities import Experiment, Metric, Run, RunKind, RunStatus
from mlplatform.errors import InvalidInput, MLPlatformError, NotFound
from mlplatform.store.sql.models import ExperimentRow, MetricRow, ParamRow, RunDatasetRow, RunRow, utcnow
from mlplatform.store.sql.session import SessionScope, insert_if_absent

STALE_RUN_SECONDS = 600
HEARTBEAT_SECONDS = 60.0
logger = logging.getLogger(__name__)


def config_hash(config: Mapping[str, Any]) -> str:
    """Groups runs with equal configs; never used as an id (reruns must not overwrite each other)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _experiment(row: ExperimentRow) -> Experiment:
    return Experiment(id=row.id, name=row.name, created_at=row.created_at)


def _run(row: RunRow) -> Run:
    return Run(
        id=row.id, experiment_id=row.experiment_id, kind=row.kind, status=row.status, name=row.name,
        parent_run_id=row.parent_run_id, config=row.config, config_hash=row.config_hash, seed=row.seed,
        tags=row.tags, error=row.error, created_at=row.created_at, started_at=row.started_at,
        ended_at=row.ended_at, heartbeat_at=row.heartbeat_at,
    )


def _metric(row: MetricRow) -> Metric:
    return Metric(run_id=row.run_id, key=row.key, value=row.value, step=row.step, timestamp=row.timestamp,
                  split=row.split, fold=row.fold, slice=row.slice)


class SqlRunStore:
    def __init__(self, scope: SessionScope) -> None:
        self._scope = scope

    # -- experiments -------------------------------------------------------------------------------------------
    def get_or_create_experiment(self, name: str) -> Experiment:
        if not name or len(name) > 255:
            raise InvalidInput("experiment name must be 1-255 characters", field="experiment")

        def work(session: Session) -> Experiment:
            query = sa.select(ExperimentRow).where(ExperimentRow.name == name)
            row = session.scalar(query)
            if row is None:
                insert_if_absent(session, ExperimentRow, {"id": str(uuid.uuid4()), "name": name,
                                                          "created_at": utcnow()}, ["name"])
                row = session.scalars(query).one()
            return _experiment(row)

        return self._scope.run(work, what="create experiment")

    def get_experiment(self, name_or_id: str) -> Experiment:
        with self._scope.session() as session:
            row = session.scalar(
                sa.select(ExperimentRow).where(
                    sa.or_(ExperimentRow.name == name_or_id, ExperimentRow.id == name_or_id)
                )
            )
            if row is None:
                raise NotFound(f"experiment {name_or_id!r} does not exist", field="experiment")
            return _experiment(row)

    # -- runs --------------------------------------------------------------------------------------------------
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
        kind = RunKind(kind)
        exp = self.get_or_create_experiment(experiment)
        config = dict(config or {})
        run_id = run_id or str(uuid.uuid4())
        try:
            uuid.UUID(run_id)
        except ValueError:
            raise InvalidInput(f"run id {run_id!r} is not a UUID", field="run_id") from None

        def work(session: Session) -> Run:
            existing = session.get(RunRow, run_id)
            if existing is not None:
                return _run(existing)
            if parent_run_id is not None and session.get(RunRow, parent_run_id) is None:
                raise NotFound(f"parent run {parent_run_id} does not exist", field="parent_run_id")
            now = utcnow()
            values = dict(
                id=run_id, experiment_id=exp.id, kind=kind.value, status=RunStatus(status).value, name=name,
                parent_run_id=parent_run_id, config=json.loads(json.dumps(config, default=str)),
                config_hash=config_hash(config), seed=seed, tags=dict(tags or {}), error=None, created_at=now,
                started_at=now if status == RunStatus.RUNNING else None, ended_at=None, heartbeat_at=now,
            )
            inserted = insert_if_absent(session, RunRow, values, ["id"])
            row = session.get(RunRow, run_id, populate_existing=True)
            assert row is not None  # inserted here or by a concurrent caller with the same id
            params = flatten(config)
            if inserted and params:
                session.execute(
                    sa.insert(ParamRow),
                    [{"run_id": run_id, "key": k, "value": json.dumps(v, default=str), "value_num": _as_number(v)}
                     for k, v in params.items()],
                )
            return _run(row)

        return self._scope.run(work, what="start run")

    def end_run(self, run_id: str, status: RunStatus | str = RunStatus.COMPLETED, error: str | None = None) -> Run:
        status = RunStatus(status)

        def work(session: Session) -> Run:
            row = self._require(session, run_id)
            row.status = status.value
            row.error = error
            row.ended_at = utcnow() if status.is_terminal else None
            if status == RunStatus.RUNNING and row.started_at is None:
                row.started_at = utcnow()
            return _run(row)

        return self._scope.run(work, what="end run")

    set_status = end_run

    def heartbeat(self, run_id: str) -> None:
        def work(session: Session) -> None:
            self._require(session, run_id).heartbeat_at = utcnow()

        self._scope.run(work, what="heartbeat")

    def update_tags(self, run_id: str, tags: Mapping[str, Any]) -> Run:
        def work(session: Session) -> Run:
            row = self._require(session, run_id)
            row.tags = {**row.tags, **tags}
            return _run(row)

        return self._scope.run(work, what="update tags")

    def fail_stale_runs(self, older_than_seconds: int = STALE_RUN_SECONDS, now: datetime | None = None) -> int:
        """``running`` runs without a heartbeat for 600 s become ``failed`` (a crashed driver never ends them)."""
        return len(self.fail_stale(older_than_seconds, now))

    def fail_stale(self, older_than_seconds: int = STALE_RUN_SECONDS, now: datetime | None = None) -> list[str]:
        """Like :meth:`fail_stale_runs`, returning the ids it failed (``mlplatform runs gc`` lists them)."""
        cutoff = (now or utcnow()) - timedelta(seconds=older_than_seconds)
        stale = sa.and_(RunRow.status == RunStatus.RUNNING.value,
                        sa.or_(RunRow.heartbeat_at < cutoff,
                               sa.and_(RunRow.heartbeat_at.is_(None), RunRow.created_at < cutoff)))

        def work(session: Session) -> list[str]:
            ids = sorted(session.scalars(sa.select(RunRow.id).where(stale)))
            if ids:
                session.execute(
                    sa.update(RunRow).where(RunRow.id.in_(ids), stale)
                    .values(status=RunStatus.FAILED.value, ended_at=utcnow(),
                            error=f"no heartbeat for {older_than_seconds} s (the process running it is gone)")
                )
            return ids

        return self._scope.run(work, what="fail stale runs")

    @contextmanager
    def keep_alive(self, run_id: str, every_s: float = HEARTBEAT_SECONDS) -> Iterator[None]:
        """Heartbeat ``run_id`` from a daemon thread while the block runs, so a long step (a sklearn fit, a batch
        job) is never failed as stale, and a crashed process stops beating and is."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every_s):
                try:
                    self.heartbeat(run_id)
                except MLPlatformError as exc:  # a busy or unreachable store must not kill the run it watches
                    logger.warning("heartbeat of run %s failed: %s", run_id, exc)

        thread = threading.Thread(target=beat, name=f"heartbeat-{run_id[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    def get_run(self, run_id: str) -> Run:
        with self._scope.session() as session:
            return _run(self._require(session, run_id))

    def list_runs(
        self, experiment: str | None = None, kind: str | None = None, status: str | None = None,
        parent_run_id: str | None = None, limit: int = 100,
    ) -> list[Run]:
        with self._scope.session() as session:
            query = sa.select(RunRow).order_by(RunRow.created_at.desc(), RunRow.id).limit(limit)
            if experiment is not None:
                exp = session.scalar(
                    sa.select(ExperimentRow).where(
                        sa.or_(ExperimentRow.name == experiment, ExperimentRow.id == experiment)
                    )
                )
                if exp is None:
                    raise NotFound(f"experiment {experiment!r} does not exist", field="experiment")
                query = query.where(RunRow.experiment_id == exp.id)
            if kind is not None:
                query = query.where(RunRow.kind == RunKind(kind).value)
            if status is not None:
                query = query.where(RunRow.status == RunStatus(status).value)
            if parent_run_id is not None:
                query = query.where(RunRow.parent_run_id == parent_run_id)
            return [_run(row) for row in session.scalars(query)]

    # -- metrics -----------------------------------------------------------------------------------------------
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
        now = timestamp or utcnow()
        rows: list[dict[str, Any]]
        if isinstance(metrics, Mapping):
            rows = [{"key": k, "value": v} for k, v in metrics.items()]
        else:
            rows = [dict(r) for r in metrics]
        if not rows:
            return 0
        records = []
        for row in rows:
            value = row["value"]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidInput(f"metric {row['key']!r} must be a finite number, got {value!r}",
                                   field=str(row["key"]))
            records.append({
                "run_id": run_id, "key": str(row["key"]), "value": float(value),
                "step": int(row.get("step", step)), "split": row.get("split", split),
                "fold": row.get("fold", fold), "slice": row.get("slice", slice),
                "timestamp": row.get("timestamp", now),
            })

        def work(session: Session) -> int:
            run_ids = {r["run_id"] for r in records}
            found = set(session.scalars(sa.select(RunRow.id).where(RunRow.id.in_(run_ids))))
            if found != run_ids:
                raise NotFound(f"run {sorted(run_ids - found)[0]} does not exist", field="run_id")
            session.execute(sa.insert(MetricRow), records)
            return len(records)

        return self._scope.run(work, what="log metrics")

    def get_metrics(self, run_id: str, key: str | None = None) -> list[Metric]:
        with self._scope.session() as session:
            self._require(session, run_id)
            query = sa.select(MetricRow).where(MetricRow.run_id == run_id).order_by(MetricRow.key, MetricRow.step,
                                                                                      MetricRow.id)
            if key is not None:
                query = query.where(MetricRow.key == key)
            return [_metric(row) for row in session.scalars(query)]

    def latest_metrics(self, run_id: str) -> dict[str, float]:
        """The last value of each key (highest step, then newest row)."""
        latest: dict[str, float] = {}
        for metric in self.get_metrics(run_id):
            latest[metric.key] = metric.value
        return latest

    def count_metrics(self, run_id: str | None = None) -> int:
        with self._scope.session() as session:
            query = sa.select(sa.func.count()).select_from(MetricRow)
            if run_id is not None:
                query = query.where(MetricRow.run_id == run_id)
            return int(session.scalar(query) or 0)

    def best_run(
        self, metric: str, mode: str = "max", *, experiment: str | None = None, dataset_version: str | None = None,
        split: str | None = None, kind: str | None = None,
    ) -> tuple[Run, float]:
        """Best run by a metric. Rows lacking the metric are skipped (never read as 0); ties go to the earliest
        run, then the smallest id; only runs linked to ``dataset_version`` compete when it is given."""
        if mode not in {"max", "min"}:
            raise InvalidInput("mode must be 'max' or 'min'", field="mode")
        # heavy: the SQL stack loads only where the store is opened, not in every Ray worker
        from mlplatform.store.sql.models import DatasetRow

        with self._scope.session() as session:
            # The last logged value of the metric per run (the highest step).
            last_step = (
                sa.select(MetricRow.run_id, sa.func.max(MetricRow.step).label("step"))
                .where(MetricRow.key == metric)
                .group_by(MetricRow.run_id)
            )
            if split is not None:
                last_step = last_step.where(MetricRow.split == split)
            last = last_step.subquery()
            value_query = (
                sa.select(MetricRow.run_id, sa.func.max(MetricRow.value).label("value"))
                .join(last, sa.and_(MetricRow.run_id == last.c.run_id, MetricRow.step == last.c.step))
                .where(MetricRow.key == metric)
                .group_by(MetricRow.run_id)
            )
            if split is not None:
                value_query = value_query.where(MetricRow.split == split)
            values = value_query.subquery()
            order = values.c.value.desc() if mode == "max" else values.c.value.asc()
            query = sa.select(RunRow, values.c.value).join(values, values.c.run_id == RunRow.id)
            if experiment is not None:
                query = query.join(ExperimentRow, ExperimentRow.id == RunRow.experiment_id).where(
                    sa.or_(ExperimentRow.name == experiment, ExperimentRow.id == experiment)
                )
            if kind is not None:
                query = query.where(RunRow.kind == kind)
            if dataset_version is not None:
                query = (
                    query.join(RunDatasetRow, RunDatasetRow.run_id == RunRow.id)
                    .join(DatasetRow, DatasetRow.id == RunDatasetRow.dataset_id)
                    .where(DatasetRow.version == dataset_version)
                )
            row = session.execute(query.order_by(order, RunRow.created_at, RunRow.id).limit(1)).first()
            if row is None:
                raise NotFound(f"no run has metric {metric!r}" + (
                    f" on dataset version {dataset_version[:12]}" if dataset_version else ""), field="metric")
            return _run(row[0]), float(row[1])

    def search_runs(self, param: str, *, equals: Any = None, low: float | None = None,
                    high: float | None = None) -> list[Run]:
        """Runs whose flattened config has ``param`` equal to a value (``1 == 1.0``) or within ``[low, high]``."""
        with self._scope.session() as session:
            query = sa.select(RunRow).join(ParamRow, ParamRow.run_id == RunRow.id).where(ParamRow.key == param)
            if equals is not None:
                number = _as_number(equals)
                if number is not None:
                    query = query.where(ParamRow.value_num == number)
                else:
                    query = query.where(ParamRow.value == json.dumps(equals, default=str))
            if low is not None:
                query = query.where(ParamRow.value_num >= low)
            if high is not None:
                query = query.where(ParamRow.value_num <= high)
            return [_run(r) for r in session.scalars(query.order_by(RunRow.created_at, RunRow.id))]

    def compare(self, run_ids: Iterable[str]) -> tuple[list[dict[str, Any]], list[str]]:
        """One row per known run with ``params.*`` and ``metrics.*`` columns; unknown ids are returned, not dropped."""
        ids = list(dict.fromkeys(run_ids))
        with self._scope.session() as session:
            runs = {r.id: r for r in session.scalars(sa.select(RunRow).where(RunRow.id.in_(ids)))}
            rows = []
            for run_id in ids:
                if run_id not in runs:
                    continue
                run = runs[run_id]
                row: dict[str, Any] = {"run_id": run.id, "kind": run.kind, "status": run.status}
                row.update({f"params.{k}": v for k, v in flatten(run.config).items()})
                for metric in session.scalars(
                    sa.select(MetricRow).where(MetricRow.run_id == run_id).order_by(MetricRow.step, MetricRow.id)
                ):
                    row[f"metrics.{metric.key}"] = metric.value
                rows.append(row)
        return rows, [i for i in ids if i not in runs]

    def link_dataset(self, run_id: str, dataset_id: str, role: str = "train") -> None:
        def work(session: Session) -> None:
            self._require(session, run_id)
            exists = session.get(RunDatasetRow, (run_id, dataset_id, role))
            if exists is None:
                session.add(RunDatasetRow(run_id=run_id, dataset_id=dataset_id, role=role))

        self._scope.run(work, what="link dataset")

    @staticmethod
    def _require(session: Session, run_id: str) -> RunRow:
        row = session.get(RunRow, run_id)
        if row is None:
            raise NotFound(f"run {run_id} does not exist", field="run_id")
        return row
