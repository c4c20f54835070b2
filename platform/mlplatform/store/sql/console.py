"""Read-only, paginated page queries for the web console (issue 21).

Each query reads one page (``limit + 1`` rows, so "next" is known without a COUNT over large tables) and touches
only indexed columns for its filters and orderings: the console stays fast with 10,000 runs, 200,000 metric rows
and 1,000,000 prediction-log rows (``benchmarks/console.py``). Writes never happen here: the console's actions call
the registry and rollout functions the CLI calls.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from mlplatform.entities import AlertLevel
from mlplatform.errors import InvalidInput, NotFound
from mlplatform.store.sql.models import (
    AlertRow,
    AliasHistoryRow,
    AliasRow,
    DatasetRow,
    DriftReportRow,
    ExperimentRow,
    MetricRow,
    ModelRow,
    ModelVersionRow,
    PredictionLogRow,
    RunDatasetRow,
    RunRow,
)
from mlplatform.store.sql.runs import _metric, _run
from mlplatform.store.sql.session import SessionScope

T = TypeVar("T")
MAX_PAGE = 200
MAX_TOUCHED = 1000  # runs with new metric rows re-read one by one; more than this re-ranks from scratch
LOOKBACK = 1000  # metric ids re-read behind the newest one seen, for rows whose transaction committed late
KEY_METRICS = ("accuracy", "f1", "roc_auc", "rmse", "mae", "r2", "log_loss")


@dataclass
class Page(Generic[T]):
    items: list[T]
    offset: int
    limit: int
    has_next: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.has_next else None

    @property
    def prev_offset(self) -> int | None:
        return max(self.offset - self.limit, 0) if self.offset > 0 else None


def page_bounds(offset: int, limit: int) -> tuple[int, int]:
    if offset < 0:
        raise InvalidInput("offset must be >= 0", field="offset")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    return offset, limit


def _page(rows: list[Any], offset: int, limit: int) -> Page[Any]:
    return Page(items=rows[:limit], offset=offset, limit=limit, has_next=len(rows) > limit)


def key_metrics(metrics: dict[str, Any], n: int = 3) -> dict[str, Any]:
    """The headline metrics of a version: the known quality metrics first, else the first ``n`` keys."""
    chosen = {k: metrics[k] for k in KEY_METRICS if k in metrics}
    return dict(list(chosen.items())[:n]) or dict(list(metrics.items())[:n])


class SqlConsoleQueries:
    RANKINGS_KEPT = 32

    def __init__(self, scope: SessionScope) -> None:
        self._scope = scope
        # Leaderboards ranked by a metric, kept while nothing they depend on changed (see _fingerprint)
        self._rankings: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()  # key -> kept ranking state
        self._rankings_lock = threading.Lock()

    @staticmethod
    def _fingerprint(session: Session) -> tuple[Any, tuple[Any, ...]]:
        """What a metric ranking depends on, in four index lookups: the newest metric row (metrics are only ever
        added), and the number and newest creation of runs (a run's kind and sweep never change) with the number
        of run-dataset links."""
        newest_metric, *rest = session.execute(sa.select(
            sa.select(sa.func.max(MetricRow.id)).scalar_subquery(),
            sa.select(sa.func.count()).select_from(RunRow).scalar_subquery(),
            sa.select(sa.func.max(RunRow.created_at)).scalar_subquery(),
            sa.select(sa.func.count()).select_from(RunDatasetRow).scalar_subquery())).one()
        return newest_metric, tuple(rest)

    def _ranking(self, session: Session, query: Any, metric: str, key: tuple[Any, ...],
                 descending: bool) -> list[tuple[str, float | None]]:
        """Run ids with their last ``metric`` value, ranked (missing values last, then newest run, then id).

        Ranking reads one value per run (an index seek each) before it can sort. The values are kept per filter
        set: while only metric rows were added since, just the runs those rows belong to are read again (what a
        view costs while a sweep is training); a new run or dataset link reads them all again."""
        newest_metric, rest = self._fingerprint(session)
        with self._rankings_lock:
            kept = self._rankings.get(key)
        values: dict[str, tuple[float | None, Any]] | None = None
        if kept is not None and kept["rest"] == rest:
            if kept["newest_metric"] == newest_metric:
                values = kept["values"]
            else:
                # LOOKBACK: on PostgreSQL a transaction can commit a smaller id after a larger one was seen
                since = (kept["newest_metric"] or 0) - LOOKBACK
                touched = set(session.scalars(sa.select(MetricRow.run_id).distinct().where(
                    MetricRow.key == metric, MetricRow.id > since).limit(MAX_TOUCHED + 1)))
                if len(touched) <= MAX_TOUCHED:
                    values = dict(kept["values"])
                    for run_id, created, value in session.execute(query.where(RunRow.id.in_(touched))):
                        values[run_id] = (value, created)
        by_age = kept["by_age"] if values is not None and kept is not None else None
        if values is None:
            values = {run_id: (value, created) for run_id, created, value in session.execute(query)}
        if by_age is None:  # the same runs keep their age order: sorted once per run set
            by_age = sorted(values, key=lambda r: (-values[r][1].timestamp(), r))  # newest first, then id
        if kept is None or values is not kept["values"]:
            kept = {"newest_metric": newest_metric, "rest": rest, "values": values, "orders": {}, "by_age": by_age}
            with self._rankings_lock:
                self._rankings[key] = kept
                while len(self._rankings) > self.RANKINGS_KEPT:
                    self._rankings.popitem(last=False)
        order = kept["orders"].get(descending)
        if order is None:
            sign = -1.0 if descending else 1.0
            order = sorted(by_age, key=lambda r: (values[r][0] is None, sign * (values[r][0] or 0.0)))  # stable
            order = kept["orders"][descending] = [(r, values[r][0]) for r in order]
        return order

    # -- models ------------------------------------------------------------------------------------------------
    def models_page(self, offset: int = 0, limit: int = 50) -> Page[dict[str, Any]]:
        """Models with champion/challenger versions and metrics, the latest monitoring level and open alerts."""
        offset, limit = page_bounds(offset, limit)
        with self._scope.session() as session:
            models = list(session.scalars(sa.select(ModelRow).order_by(ModelRow.name).offset(offset)
                                          .limit(limit + 1)))
            page = _page(models, offset, limit)
            ids = [m.id for m in page.items]
            names = [m.name for m in page.items]
            roles: dict[str, dict[str, Any]] = {i: {} for i in ids}
            for model_id, alias, version, metrics in session.execute(
                sa.select(AliasRow.model_id, AliasRow.alias, ModelVersionRow.version, ModelVersionRow.metrics)
                .join(ModelVersionRow, ModelVersionRow.id == AliasRow.version_id)
                .where(AliasRow.model_id.in_(ids), AliasRow.alias.in_(("champion", "challenger")))
            ):
                roles[model_id][alias] = {"version": version, "metrics": key_metrics(metrics or {})}
            latest = dict(session.execute(
                sa.select(ModelVersionRow.model_id, sa.func.max(ModelVersionRow.version))
                .where(ModelVersionRow.model_id.in_(ids)).group_by(ModelVersionRow.model_id)).all())
            levels = self._latest_levels(session, names)
            alerts = self._open_alert_levels(session, names)
            page.items = [{
                "name": m.name, "task": m.task, "latest_version": latest.get(m.id),
                "champion": roles[m.id].get("champion"), "challenger": roles[m.id].get("challenger"),
                "level": levels.get(m.name), "open_alerts": alerts.get(m.name, {}).get("count", 0),
                "alert_level": alerts.get(m.name, {}).get("level"),
            } for m in page.items]
            return page

    @staticmethod
    def _latest_levels(session: Session, names: list[str]) -> dict[str, str]:
        """The level of each model's newest drift report (one indexed lookup per model on the page)."""
        levels = {}
        for name in names:
            level = session.scalar(sa.select(DriftReportRow.level).where(DriftReportRow.model_name == name)
                                   .order_by(DriftReportRow.created_at.desc()).limit(1))
            if level is not None:
                levels[name] = level
        return levels

    @staticmethod
    def _open_alert_levels(session: Session, names: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, level in session.execute(sa.select(AlertRow.model_name, AlertRow.level).where(
                AlertRow.model_name.in_(names), AlertRow.status == "open")):
            entry = out.setdefault(str(name), {"count": 0, "level": None})  # never NULL: filtered by IN
            entry["count"] += 1
            rank = AlertLevel[level].value if level in AlertLevel.__members__ else 0
            if entry["level"] is None or rank > AlertLevel[entry["level"]].value:
                entry["level"] = level if level in AlertLevel.__members__ else entry["level"]
        return out

    def model_id(self, session: Session, name: str) -> str:
        model_id = session.scalar(sa.select(ModelRow.id).where(ModelRow.name == name))
        if model_id is None:
            raise NotFound(f"model {name!r} is not registered", field="model")
        return model_id

    def versions_page(self, name: str, offset: int = 0, limit: int = 20) -> Page[dict[str, Any]]:
        """Versions newest first, with aliases, parent version number and source run."""
        offset, limit = page_bounds(offset, limit)
        with self._scope.session() as session:
            model_id = self.model_id(session, name)
            parent = aliased(ModelVersionRow)
            rows = session.execute(
                sa.select(ModelVersionRow, parent.version)
                .outerjoin(parent, parent.id == ModelVersionRow.parent_version_id)
                .where(ModelVersionRow.model_id == model_id)
                .order_by(ModelVersionRow.version.desc()).offset(offset).limit(limit + 1)).all()
            page = _page(list(rows), offset, limit)
            ids = [r.id for r, _ in page.items]
            aliases: dict[str, list[str]] = {}
            for version_id, alias in session.execute(sa.select(AliasRow.version_id, AliasRow.alias)
                                                     .where(AliasRow.version_id.in_(ids))):
                aliases.setdefault(version_id, []).append(alias)
            page.items = [{"version": r.version, "status": r.status, "framework": r.framework,
                           "metrics": r.metrics or {}, "lineage": r.lineage or {}, "parent_version": parent_v,
                           "source_run_id": r.source_run_id, "artifact_sha256": r.artifact_sha256,
                           "created_at": r.created_at, "aliases": sorted(aliases.get(r.id, []))}
                          for r, parent_v in page.items]
            return page

    def alias_history_page(self, name: str, offset: int = 0, limit: int = 50,
                           alias: str | None = None) -> Page[dict[str, Any]]:
        """Alias moves newest first (who, when, why)."""
        offset, limit = page_bounds(offset, limit)
        with self._scope.session() as session:
            model_id = self.model_id(session, name)
            query = sa.select(AliasHistoryRow).where(AliasHistoryRow.model_id == model_id)
            if alias:
                query = query.where(AliasHistoryRow.alias == alias)
            rows = list(session.scalars(query.order_by(AliasHistoryRow.id.desc()).offset(offset).limit(limit + 1)))
            page = _page(rows, offset, limit)
            page.items = [{"alias": r.alias, "from_version": r.from_version, "to_version": r.to_version,
                           "actor": r.actor, "reason": r.reason, "created_at": r.created_at} for r in page.items]
            return page

    def alias_holder_at(self, name: str, alias: str, when: datetime) -> dict[str, Any] | None:
        """Which version held ``alias`` at ``when``: the newest move at or before it (None: nobody held it)."""
        with self._scope.session() as session:
            model_id = self.model_id(session, name)
            row = session.scalar(sa.select(AliasHistoryRow).where(
                AliasHistoryRow.model_id == model_id, AliasHistoryRow.alias == alias,
                AliasHistoryRow.created_at <= when).order_by(AliasHistoryRow.id.desc()).limit(1))
            if row is None:
                return None
            return {"version": row.to_version, "since": row.created_at, "actor": row.actor, "reason": row.reason}

    def alias_segments(self, name: str, alias: str = "champion", limit: int = 200) -> list[dict[str, Any]]:
        """The newest ``limit`` tenures of an alias as (version, start, end) for the timeline chart."""
        with self._scope.session() as session:
            model_id = self.model_id(session, name)
            rows = list(session.scalars(sa.select(AliasHistoryRow).where(
                AliasHistoryRow.model_id == model_id, AliasHistoryRow.alias == alias)
                .order_by(AliasHistoryRow.id.desc()).limit(limit)))
        rows.reverse()
        segments = []
        for i, row in enumerate(rows):
            end = rows[i + 1].created_at if i + 1 < len(rows) else None
            if row.to_version is not None:
                segments.append({"version": row.to_version, "start": row.created_at, "end": end,
                                 "actor": row.actor, "reason": row.reason})
        return segments

    # -- runs --------------------------------------------------------------------------------------------------
    def runs_page(self, *, metric: str | None = None, descending: bool = True, kind: str | None = None,
                  dataset_version: str | None = None, parent_run_id: str | None = None,
                  offset: int = 0, limit: int = 50) -> Page[dict[str, Any]]:
        """The leaderboard: runs (sweeps, trials, trainings, baselines) with the last value of ``metric``, ranked
        on it (runs lacking it last, never read as 0), filtered by kind, dataset version and parent sweep."""
        offset, limit = page_bounds(offset, limit)
        with self._scope.session() as session:
            # Step 1 ranks ids only (a narrow sort, even deep in the pages); step 2 loads the page's rows.
            value = None
            if metric:
                value = (sa.select(MetricRow.value).where(MetricRow.run_id == RunRow.id, MetricRow.key == metric)
                         .order_by(MetricRow.step.desc(), MetricRow.id.desc()).limit(1)
                         .correlate(RunRow).scalar_subquery().label("value"))
            query = sa.select(RunRow.id, RunRow.created_at, *([value] if value is not None else []))
            if kind:
                query = query.where(RunRow.kind == kind)
            if parent_run_id:
                query = query.where(RunRow.parent_run_id == parent_run_id)
            if dataset_version:
                dataset_ids = list(session.scalars(sa.select(DatasetRow.id).where(
                    DatasetRow.version == dataset_version if len(dataset_version) >= 64
                    else DatasetRow.version.startswith(dataset_version)).limit(1000)))
                query = query.where(RunRow.id.in_(sa.select(RunDatasetRow.run_id)
                                                  .where(RunDatasetRow.dataset_id.in_(dataset_ids))))
            ranked: list[tuple[str, float | None]]
            if value is None:
                ranked = [(r[0], None) for r in session.execute(
                    query.order_by(RunRow.created_at.desc(), RunRow.id).offset(offset).limit(limit + 1))]
            else:
                assert metric is not None
                ranked = self._ranking(session, query, metric, (metric, kind, dataset_version, parent_run_id),
                                       descending)[offset:offset + limit + 1]
            loaded = {run.id: (run, experiment) for run, experiment in session.execute(
                sa.select(RunRow, ExperimentRow.name).join(ExperimentRow, ExperimentRow.id == RunRow.experiment_id)
                .where(RunRow.id.in_([r[0] for r in ranked])))}
            rows = [(*loaded[run_id], run_value) for run_id, run_value in ranked]
            page = _page(list(rows), offset, limit)
            ids = [r[0].id for r in page.items]
            registered: dict[str, list[str]] = {}
            for run_id, model, version in session.execute(
                    sa.select(ModelVersionRow.source_run_id, ModelRow.name, ModelVersionRow.version)
                    .join(ModelRow, ModelRow.id == ModelVersionRow.model_id)
                    .where(ModelVersionRow.source_run_id.in_(ids))):
                registered.setdefault(str(run_id), []).append(f"{model}:{version}")  # never NULL: filtered by IN
            page.items = [{"run": _run(r[0]), "experiment": r[1], "value": r[2],
                           "baseline": bool((r[0].tags or {}).get("baseline")),
                           "registered": registered.get(r[0].id, [])} for r in page.items]
            return page

    def metric_keys(self, limit: int = 100) -> list[str]:
        """Distinct metric keys by skipping along ``ix_metrics_key`` (one index seek per key, not a scan of every
        metric row); a recursive CTE that SQLite and PostgreSQL both run."""
        skip = sa.text(
            "WITH RECURSIVE k(key) AS (SELECT MIN(key) FROM metrics UNION ALL "
            "SELECT (SELECT MIN(key) FROM metrics WHERE metrics.key > k.key) FROM k WHERE k.key IS NOT NULL) "
            "SELECT key FROM k WHERE key IS NOT NULL LIMIT :limit")
        with self._scope.session() as session:
            return list(session.scalars(skip, {"limit": limit}))

    def run_detail(self, run_id: str) -> dict[str, Any]:
        """A run with its metric curves per (key, split), datasets, registered versions and checkpoints."""
        with self._scope.session() as session:
            row = session.get(RunRow, run_id)
            if row is None:
                raise NotFound(f"run {run_id} does not exist", field="run_id")
            experiment = session.scalar(sa.select(ExperimentRow.name).where(ExperimentRow.id == row.experiment_id))
            metrics = [_metric(m) for m in session.scalars(
                sa.select(MetricRow).where(MetricRow.run_id == run_id)
                .order_by(MetricRow.key, MetricRow.step, MetricRow.id))]
            datasets = [{"role": role, "name": d.name, "version": d.version, "row_count": d.row_count}
                        for role, d in session.execute(
                            sa.select(RunDatasetRow.role, DatasetRow)
                            .join(DatasetRow, DatasetRow.id == RunDatasetRow.dataset_id)
                            .where(RunDatasetRow.run_id == run_id))]
            registered = [f"{n}:{v}" for n, v in session.execute(
                sa.select(ModelRow.name, ModelVersionRow.version)
                .join(ModelRow, ModelRow.id == ModelVersionRow.model_id)
                .where(ModelVersionRow.source_run_id == run_id))]
            children = session.scalar(sa.select(sa.func.count()).select_from(RunRow)
                                      .where(RunRow.parent_run_id == run_id))
        curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
        last: dict[str, float] = {}
        for m in metrics:
            curves.setdefault(m.key, {}).setdefault(m.split or "value", []).append((m.step, m.value))
            last[m.key if not m.split else f"{m.key} ({m.split})"] = m.value
        tags = row.tags or {}
        checkpoints = list(tags.get("kept_checkpoints") or [])
        return {"run": _run(row), "experiment": experiment, "curves": curves, "last": last, "datasets": datasets,
                "registered": registered, "children": int(children or 0), "checkpoints": checkpoints,
                "best_checkpoint": tags.get("best_checkpoint")}

    # -- datasets ----------------------------------------------------------------------------------------------
    def datasets_page(self, name: str | None = None, offset: int = 0, limit: int = 50) -> Page[dict[str, Any]]:
        offset, limit = page_bounds(offset, limit)
        with self._scope.session() as session:
            query = sa.select(DatasetRow.id, DatasetRow.name, DatasetRow.version, DatasetRow.row_count,
                              DatasetRow.uri, DatasetRow.created_at)
            if name:
                query = query.where(DatasetRow.name == name)
            rows = session.execute(query.order_by(DatasetRow.created_at.desc(), DatasetRow.id)
                                   .offset(offset).limit(limit + 1)).all()
            page = _page([dict(r._mapping) for r in rows], offset, limit)
            return page

    def dataset_detail(self, dataset_id: str, runs_limit: int = 50) -> dict[str, Any]:
        with self._scope.session() as session:
            row = session.get(DatasetRow, dataset_id)
            if row is None:
                raise NotFound(f"dataset {dataset_id} does not exist", field="dataset")
            runs = session.execute(
                sa.select(RunRow.id, RunRow.name, RunRow.kind, RunRow.status, RunDatasetRow.role, RunRow.tags)
                .join(RunDatasetRow, RunDatasetRow.run_id == RunRow.id)
                .where(RunDatasetRow.dataset_id == dataset_id)
                .order_by(RunRow.created_at.desc()).limit(runs_limit)).all()
            return {"id": row.id, "name": row.name, "version": row.version, "uri": row.uri, "schema": row.schema,
                    "row_count": row.row_count, "profile": row.profile or {}, "created_at": row.created_at,
                    "runs": [_run_with_validation(r._mapping) for r in runs]}

    # -- monitoring --------------------------------------------------------------------------------------------
    def drift_history(self, name: str, limit: int = 30) -> list[dict[str, Any]]:
        """The newest ``limit`` checks, oldest first: level, n, per-feature PSI and realized metrics."""
        with self._scope.session() as session:
            rows = list(session.scalars(sa.select(DriftReportRow).where(DriftReportRow.model_name == name)
                                        .order_by(DriftReportRow.created_at.desc()).limit(limit)))
        out = []
        for r in reversed(rows):
            summary = r.summary or {}
            features = ((summary.get("drift") or {}).get("features") or {})
            out.append({"time": r.created_at, "version": r.version, "level": r.level, "n": r.n,
                        "psi": {f: v.get("psi") for f, v in features.items() if v.get("psi") is not None},
                        "metrics": (summary.get("evaluation") or {}).get("metrics") or {},
                        "estimated": (summary.get("evaluation") or {}).get("estimated") or {}})
        return out

    def alerts_page(self, name: str | None = None, status: str | None = None, offset: int = 0,
                    limit: int = 50) -> Page[dict[str, Any]]:
        offset, limit = page_bounds(offset, limit)
        with self._scope.session() as session:
            query = sa.select(AlertRow)
            if name is not None:
                query = query.where(AlertRow.model_name == name)
            if status:
                query = query.where(AlertRow.status == status)
            rows = list(session.scalars(query.order_by(AlertRow.created_at.desc(), AlertRow.id)
                                        .offset(offset).limit(limit + 1)))
            page = _page(rows, offset, limit)
            page.items = [{"id": a.id, "model": a.model_name, "version": a.version, "type": a.type,
                           "metric": a.metric, "level": a.level, "status": a.status, "value": a.value,
                           "threshold": a.threshold, "message": a.message, "first_seen": a.created_at,
                           "resolved_at": a.updated_at if a.status == "resolved" else None,
                           "runbook_url": a.runbook_url} for a in page.items]
            return page

    def prediction_activity(self, name: str, hours: int = 1) -> dict[str, Any]:
        """Newest logged prediction and the count in the last ``hours`` before it (an index range, not a scan)."""
        with self._scope.session() as session:
            newest = session.scalar(sa.select(PredictionLogRow.timestamp).where(PredictionLogRow.model_name == name)
                                    .order_by(PredictionLogRow.timestamp.desc()).limit(1))
            if newest is None:
                return {"newest": None, "recent": 0, "hours": hours}
            recent = session.scalar(sa.select(sa.func.count()).select_from(PredictionLogRow).where(
                PredictionLogRow.model_name == name,
                PredictionLogRow.timestamp > newest - timedelta(hours=hours)))
            return {"newest": newest, "recent": int(recent or 0), "hours": hours}


def _run_with_validation(row: Any) -> dict[str, Any]:
    """A run that used a dataset, with the report of training's data check when it ran one (kept in the run's
    tags: level, what it was checked against, errors, and whether --force trained past it)."""
    out = {k: v for k, v in row.items() if k != "tags"}
    out["validation"] = (row["tags"] or {}).get("validation")
    return out
