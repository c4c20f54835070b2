"""Web console page times at scale (issue 21): server time for the full HTML of each page.

Leaderboards ranked by a metric are kept until a metric, run or dataset link is added; ``runs_by_metric_cold``
measures the ranking itself (a metric row is logged before each of its requests).

Seeds a store (SQLite by default, ``--store-url`` for PostgreSQL) with 10,000 runs (20 sweeps of trials, with
baselines), 200,000 metric rows, 500 versions of 10 models with alias history and rollouts, 1,000,000
prediction-log rows, 2,000 drift reports and 1,000 alerts, with bulk inserts through the ORM tables (not the
per-call API: seeding is not what is measured). Then renders each page ``BENCH_REQUESTS`` times in process
(Starlette's TestClient, so the number is the app's time, not a network's) and prints p50/p95 per page and one
JSON line per page: ``page_p95_ms_<page>`` against the target of 300 ms.

Scale down for a quick look with BENCH_SCALE=0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import emit_target, print_table

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
RUNS, METRICS, VERSIONS, PREDICTIONS = (int(n * SCALE) for n in (10_000, 200_000, 500, 1_000_000))
MODELS, SWEEPS, REQUESTS = 10, 20, int(os.environ.get("BENCH_REQUESTS", "30"))
TARGET_MS = 300.0
FEATURES = [f"f{i}" for i in range(8)]
CHUNK = 20_000


def _bulk(session_factory: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    import sqlalchemy as sa

    engine = session_factory.kw["bind"]
    if engine.dialect.name == "sqlite" and len(rows) > CHUNK:
        _bulk_sqlite(engine, table.__table__, rows)
        return
    for start in range(0, len(rows), CHUNK):
        with session_factory() as session:
            session.execute(sa.insert(table), rows[start:start + CHUNK])
            session.commit()


def _bulk_sqlite(engine: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    """Large SQLite tables through the driver's executemany (about 10x the Core path), in the value formats the
    ORM types store: JSON text, naive-UTC 'YYYY-MM-DD HH:MM:SS.ffffff' datetimes."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict | list):
            return json.dumps(value)
        if isinstance(value, datetime):
            return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return value

    columns = list(rows[0])
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for start in range(0, len(rows), 100_000):
            cursor.execute("BEGIN")
            cursor.executemany(sql, [tuple(plain(r[c]) for c in columns) for r in rows[start:start + 100_000]])
            cursor.execute("COMMIT")
    finally:
        raw.close()


def seed(client: Any) -> dict[str, Any]:
    """Bulk rows that look like what training, tuning, registration, serving and monitoring write."""
    from sqlalchemy.orm import sessionmaker

    from mlplatform.store.sql import models as m

    rng = random.Random(21)
    factory = sessionmaker(client.engine)
    now = datetime.now(UTC)
    exp_id = str(uuid.uuid4())
    _bulk(factory, m.ExperimentRow, [{"id": exp_id, "name": "bench", "created_at": now}])
    datasets = [{"id": str(uuid.uuid4()), "name": f"data{i % 5}", "version": uuid.uuid4().hex * 2, "uri": None,
                 "schema": {f: "float" for f in FEATURES}, "row_count": 10_000,
                 "profile": {"columns": {f: {"mean": 0.5} for f in FEATURES}},
                 "created_at": now - timedelta(days=50 - i)} for i in range(50)]
    _bulk(factory, m.DatasetRow, datasets)

    sweeps = [str(uuid.uuid4()) for _ in range(SWEEPS)]
    runs = []
    for i in range(RUNS):
        sweep = i < SWEEPS
        run_id = sweeps[i] if sweep else str(uuid.uuid4())
        kind = "tune" if sweep else ("train" if i % 10 == 0 else "tune_trial")
        runs.append({"id": run_id, "experiment_id": exp_id, "kind": kind, "status": "completed",
                     "name": f"run-{i}", "parent_run_id": None if sweep or kind == "train" else sweeps[i % SWEEPS],
                     "config": {"lr": rng.random(), "hidden": 64}, "config_hash": None, "seed": i,
                     "tags": {"baseline": True} if i % 97 == 0 else {}, "error": None,
                     "created_at": now - timedelta(seconds=RUNS - i), "started_at": None, "ended_at": None,
                     "heartbeat_at": None})
    _bulk(factory, m.RunRow, runs)
    _bulk(factory, m.RunDatasetRow, [{"run_id": r["id"], "dataset_id": datasets[j % 50]["id"], "role": "train"}
                                     for j, r in enumerate(runs)])
    per_run = max(METRICS // max(RUNS, 1), 1)
    metrics = []
    for run in runs:
        for step in range(per_run):
            key = ("loss", "val_loss", "accuracy", "f1")[step % 4]
            metrics.append({"run_id": run["id"], "key": key, "value": rng.random(), "step": step // 4,
                            "split": "val", "fold": None, "slice": None, "timestamp": now})
        if len(metrics) >= METRICS:
            break
    _bulk(factory, m.MetricRow, metrics[:METRICS])

    model_ids = [str(uuid.uuid4()) for _ in range(MODELS)]
    _bulk(factory, m.ModelRow, [{"id": mid, "name": f"model{k}", "task": "classification", "description": None,
                                 "created_at": now} for k, mid in enumerate(model_ids)])
    versions, history, aliases = [], [], []
    per_model = max(VERSIONS // MODELS, 2)
    for k, mid in enumerate(model_ids):
        ids = []
        for v in range(1, per_model + 1):
            vid = str(uuid.uuid4())
            ids.append(vid)
            versions.append({"id": vid, "model_id": mid, "version": v, "status": "standby", "framework": "torch",
                             "artifact_uri": "file:///none", "artifact_sha256": "a" * 64, "files": {},
                             "input_schema": [{"name": f, "dtype": "float"} for f in FEATURES],
                             "metrics": {"accuracy": rng.random(), "f1": rng.random()},
                             "lineage": {"datasets": [{"name": "data0", "version": datasets[v % 50]["version"]}],
                                         "git": {"commit": uuid.uuid4().hex}, "config": {"lr": 0.01}},
                             "source_run_id": runs[(k * per_model + v) % RUNS]["id"],
                             "parent_version_id": ids[-2] if v > 1 else None,
                             "created_at": now - timedelta(days=per_model - v)})
            history.append({"model_id": mid, "alias": "champion", "from_version": v - 1 or None, "to_version": v,
                            "actor": "bench", "reason": f"promote v{v}",
                            "created_at": now - timedelta(days=per_model - v)})
        aliases += [{"model_id": mid, "alias": "champion", "version_id": ids[-2], "updated_at": now},
                    {"model_id": mid, "alias": "challenger", "version_id": ids[-1], "updated_at": now}]
    _bulk(factory, m.ModelVersionRow, versions)
    _bulk(factory, m.AliasHistoryRow, history)
    _bulk(factory, m.AliasRow, aliases)

    reports, alerts = [], []
    for k in range(MODELS):
        for d in range(200):
            reports.append({"id": str(uuid.uuid4()), "model_name": f"model{k}", "version": per_model - 1,
                            "window_start": None, "window_end": None, "n": 1000, "level": "GREEN",
                            "summary": {"drift": {"features": {f: {"psi": rng.random() / 5} for f in FEATURES}},
                                        "evaluation": {"metrics": {"accuracy": 0.8 + rng.random() / 10}}},
                            "created_at": now - timedelta(hours=200 - d)})
        for a in range(100):
            alerts.append({"id": str(uuid.uuid4()), "type": "data_drift", "level": "YELLOW", "source": "monitor",
                           "model_name": f"model{k}", "version": per_model - 1, "metric": FEATURES[a % 8],
                           "value": 0.12, "threshold": 0.1, "message": "drift", "runbook_url": None,
                           "status": "resolved" if a < 95 else "open", "details": {}, "acknowledged": False,
                           "created_at": now - timedelta(hours=100 - a), "updated_at": now})
    _bulk(factory, m.DriftReportRow, reports)
    _bulk(factory, m.AlertRow, alerts)

    start = now - timedelta(days=30)
    step = timedelta(days=30) / max(PREDICTIONS, 1)
    batch: list[dict[str, Any]] = []
    for i in range(PREDICTIONS):
        batch.append({"request_id": f"r{i}", "instance_index": 0, "model_name": f"model{i % MODELS}",
                      "version": per_model - 1, "variant": None, "entity_id": None,
                      "features": {"f0": 0.5, "f1": 1.5}, "prediction": {"value": i % 2}, "confidence": 0.7,
                      "latency_ms": 3.0, "timestamp": start + step * i})
        if len(batch) == 100_000:
            _bulk(factory, m.PredictionLogRow, batch)
            batch = []
    _bulk(factory, m.PredictionLogRow, batch)
    return {"run": runs[SWEEPS + 5]["id"], "sweep": sweeps[0], "dataset": datasets[0]["id"],
            "dataset_version": datasets[0]["version"], "version": per_model - 1}


def pages(facts: dict[str, Any]) -> dict[str, str]:
    return {
        "models": "/models", "model": "/models/model3", "model_at_date": "/models/model3?at=2026-01-01",
        "model_page2": "/models/model3?voffset=20&hoffset=50",
        "version": f"/models/model3/versions/{facts['version']}", "rollout": "/models/model3/rollout",
        "runs": "/runs", "runs_by_metric": "/runs?metric=accuracy",
        "runs_by_dataset": f"/runs?metric=accuracy&dataset_version={facts['dataset_version']}",
        "runs_sweep": f"/runs?parent={facts['sweep']}&metric=loss&order=asc",
        "runs_deep_page": "/runs?metric=accuracy&offset=5000", "run": f"/runs/{facts['run']}",
        "datasets": "/datasets", "dataset": f"/datasets/{facts['dataset']}", "monitoring": "/monitoring",
        "monitoring_model": "/monitoring/model3",
        # the same leaderboard while training logs metrics: a row lands before every request (outside the timed
        # part), so the kept ranking is always stale and each view ranks all 10,000 runs again
        "runs_by_metric_cold": "/runs?metric=accuracy&order=asc",
    }


COLD = {"runs_by_metric_cold"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store-url", help="store to seed (default: a fresh SQLite file)")
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from mlplatform.client import Client
    from mlplatform.console.app import create_app
    from mlplatform.rollouts import control

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLPLATFORM_HOME"] = tmp
        client = Client(store_url=args.store_url or f"sqlite:///{tmp}/store.db")
        started = time.perf_counter()
        facts = seed(client)
        control.start(client, "model3", actor="bench")
        seconds = time.perf_counter() - started
        print(f"seeded {RUNS} runs, {METRICS} metric rows, {VERSIONS} versions, {PREDICTIONS} predictions in "
              f"{seconds:.1f} s")
        rows, ok = [], True
        with TestClient(create_app(client=client)) as http:
            for name, path in pages(facts).items():
                assert http.get(path).status_code == 200, path  # warm-up, and the page must render
                times = []
                for _ in range(REQUESTS):
                    if name in COLD:
                        client.runs.log_metrics(facts["run"], {"accuracy": random.random()}, step=10_000)
                    t0 = time.perf_counter()
                    response = http.get(path)
                    times.append((time.perf_counter() - t0) * 1000)
                    assert response.status_code == 200, path
                times.sort()
                p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
                rows.append({"page": name, "p50_ms": statistics.median(times), "p95_ms": p95,
                             "kb": len(response.content) / 1024})
        client.close()
        print_table(f"console pages ({REQUESTS} requests each, server time for the full HTML)", rows)
        for row in rows:
            ok &= emit_target("console", f"page_p95_ms_{row['page']}", row["p95_ms"], TARGET_MS,
                              higher_is_better=False)
        print(json.dumps({"benchmark": "console", "metric": "seed_seconds", "value": round(seconds, 1)}))
        # the machine is shared: say how busy it was, so a miss can be told from a slow page
        print(json.dumps({"benchmark": "console", "metric": "load_average_1m", "value": os.getloadavg()[0]}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
