"""The same bodies run on SQLite and on PostgreSQL (``store_url`` is parametrized)."""

from __future__ import annotations

import math
import multiprocessing as mp
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlplatform.client import Client
from mlplatform.errors import Conflict, InvalidInput, NotFound
from mlplatform.store.sql import migrate
from mlplatform.store.sql.models import Base
from mlplatform.store.sql.session import create_store_engine


def test_migrations_from_empty_and_upgrade_twice_is_noop(store_url: str) -> None:
    engine = create_store_engine(store_url)
    assert migrate.current_revision(engine) is None
    before, after = migrate.upgrade(engine)
    assert before is None and after == migrate.head_revision()
    assert migrate.upgrade(engine) == (after, after)
    tables = set(sa.inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    engine.dispose()


def test_orm_metadata_equals_migrated_schema(store_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = create_store_engine(store_url)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    engine.dispose()
    assert diff == [], f"ORM models and migrations disagree: {diff}"


def test_runs_metrics_best_and_compare(store_url: str) -> None:
    client = Client()
    a = client.runs.start_run("exp", "train", config={"lr": 1, "family": "mlp"}, seed=1)
    b = client.runs.start_run("exp", "train", config={"lr": 0.5, "family": "mlp"}, seed=1)
    c = client.runs.start_run("exp", "train", config={"lr": 2.0})  # never logs the metric
    client.runs.log_metrics(a.id, {"val_loss": 0.5, "accuracy": 0.8}, step=1)
    client.runs.log_metrics(b.id, {"val_loss": 0.3, "accuracy": 0.7}, step=1)
    client.runs.log_metrics(c.id, {"other": 1.0})
    run, value = client.runs.best_run("accuracy", "max", experiment="exp")
    assert (run.id, value) == (a.id, 0.8)
    run, value = client.runs.best_run("val_loss", "min", experiment="exp")
    assert (run.id, value) == (b.id, 0.3)  # min really minimises: the best loss is the lowest
    with pytest.raises(NotFound):
        client.runs.best_run("missing_metric")
    assert [r.id for r in client.runs.search_runs("lr", equals=1.0)] == [a.id]  # 1 == 1.0
    assert {r.id for r in client.runs.search_runs("lr", low=0.4, high=1.5)} == {a.id, b.id}
    rows, unknown = client.runs.compare([a.id, "00000000-0000-0000-0000-000000000000"])
    assert rows[0]["params.lr"] == 1 and rows[0]["metrics.accuracy"] == 0.8
    assert unknown == ["00000000-0000-0000-0000-000000000000"]
    client.close()


def test_metric_values_must_be_finite_and_runs_must_exist(store_url: str) -> None:
    client = Client()
    run = client.runs.start_run("exp", "train")
    for bad in (math.nan, math.inf, "0.9"):
        with pytest.raises(InvalidInput):
            client.runs.log_metrics(run.id, {"accuracy": bad})
    with pytest.raises(NotFound):
        client.runs.log_metrics("00000000-0000-0000-0000-000000000000", {"accuracy": 0.5})
    assert client.runs.count_metrics(run.id) == 0
    client.close()


def test_caller_supplied_run_id_is_idempotent_and_reruns_get_new_ids(store_url: str) -> None:
    client = Client()
    run_id = "5d0f3a43-5d47-4a49-9df5-2a2b6d1d1c11"
    first = client.runs.start_run("exp", "tune_trial", run_id=run_id, config={"x": 1})
    again = client.runs.start_run("exp", "tune_trial", run_id=run_id, config={"x": 1})
    assert first.id == again.id == run_id
    other = client.runs.start_run("exp", "tune_trial", config={"x": 1})
    assert other.id != run_id and other.config_hash == first.config_hash
    client.close()


def test_stale_running_runs_become_failed(store_url: str) -> None:
    from datetime import timedelta

    from mlplatform.store.sql.models import utcnow

    client = Client()
    run = client.runs.start_run("exp", "train")
    assert client.runs.fail_stale_runs(now=utcnow() + timedelta(seconds=601)) == 1
    assert client.runs.get_run(run.id).status == "failed"
    client.close()


def _write_metrics(store_url: str, run_id: str, worker: int, rows: int) -> None:
    from mlplatform.client import Client

    client = Client(store_url=store_url)
    for start in range(0, rows, 50):
        client.runs.log_metrics(run_id, [{"key": f"w{worker}", "value": float(i), "step": i}
                                         for i in range(start, start + 50)])
    client.close()


def test_eight_processes_writing_at_once_lose_no_row(store_url: str) -> None:
    client = Client()
    run = client.runs.start_run("concurrency", "train")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_write_metrics, args=(store_url, run.id, w, 500)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 8
    assert client.runs.count_metrics(run.id) == 4000
    client.close()


def test_registry_versions_aliases_promote_rollback_archive(store_url: str, model_artifact_dir: Path) -> None:
    client = Client()
    reg = client.registry
    v1 = reg.register("churn", model_artifact_dir, alias="champion")
    v2 = reg.register("churn", model_artifact_dir, alias="challenger")
    v3 = reg.register("churn", model_artifact_dir)
    assert (v1.version, v2.version, v3.version) == (1, 2, 3)
    assert v1.files["model.json"]["sha256"] and v1.artifact_sha256 == v2.artifact_sha256
    assert reg.get_version("churn", 3).status == "registered"
    promoted = reg.promote("churn", actor="tester", reason="better")
    assert promoted.version == 2 and promoted.status == "champion"
    assert reg.get_version("churn", 1).status == "standby"  # served before, restorable
    assert reg.resolve("churn").version == 2
    restored = reg.rollback("churn", reason="regression")
    assert restored.version == 1 and reg.get_version("churn", 2).status == "rolled_back"
    with pytest.raises(Conflict):
        reg.rollback("churn")  # v2 was rolled back, v3 never served: nothing to go back to
    with pytest.raises(Conflict):
        reg.archive("churn", 1)  # the champion cannot be archived
    archived = reg.archive("churn", 3)
    assert archived.status == "archived"
    with pytest.raises(Conflict):
        reg.set_alias("churn", "champion", 3)
    history = reg.alias_history("churn", "champion")
    assert [(h.from_version, h.to_version) for h in history] == [(None, 1), (1, 2), (2, 1)]
    assert history[-1].reason == "regression"
    with pytest.raises(NotFound):
        reg.resolve("churn@shadow")
    with pytest.raises(NotFound):
        reg.resolve("churn:99")
    with pytest.raises(NotFound):
        reg.resolve("nope")
    client.close()


def test_leaderboard_ranks_on_one_dataset_version(store_url: str, model_artifact_dir: Path) -> None:
    client = Client()
    reg = client.registry
    for _ in range(3):
        reg.register("lb", model_artifact_dir)
    reg.add_evaluation("lb", 1, {"accuracy": 0.80, "log_loss": 0.40}, dataset_version="d1", n=100)
    reg.add_evaluation("lb", 2, {"accuracy": 0.85, "log_loss": 0.50}, dataset_version="d1", n=100)
    reg.add_evaluation("lb", 3, {"accuracy": 0.99}, dataset_version="d2", n=100)
    board = reg.leaderboard("lb", "accuracy", dataset_version="d1")
    assert [(r["rank"], r["version"]) for r in board] == [(1, 2), (2, 1)]
    assert [r["version"] for r in reg.leaderboard("lb", "log_loss", dataset_version="d1", mode="min")] == [1, 2]
    with pytest.raises(InvalidInput):
        reg.leaderboard("lb", "accuracy")  # spans two dataset versions
    client.close()


def test_prediction_log_labels_alerts(store_url: str) -> None:
    from mlplatform.entities import PredictionRecord
    from mlplatform.store.sql.models import utcnow

    client = Client()
    mon = client.monitoring
    now = utcnow()
    records = [PredictionRecord(request_id=f"r{i}", model_name="m", version=1, features={"x": i}, prediction=i % 2,
                                confidence=0.9, latency_ms=1.5, timestamp=now) for i in range(250)]
    assert mon.log_predictions(records) == 250
    assert len(mon.predictions("m", limit=100)) == 100
    assert mon.add_label(1, request_id="r1") is True
    assert mon.add_label(1, request_id="r1") is False  # identical duplicate: no-op
    with pytest.raises(Conflict):
        mon.add_label(0, request_id="r1")
    assert mon.add_label(0, request_id="r1", overwrite=True) is True
    alert, created = mon.upsert_alert(type="drift", level="YELLOW", source="test", message="psi", model_name="m",
                                      version=1, metric="psi", value=0.12, threshold=0.1)
    again, created_again = mon.upsert_alert(type="drift", level="RED", source="test", message="psi", model_name="m",
                                            version=1, metric="psi", value=0.3, threshold=0.25)
    assert created and not created_again and again.id == alert.id and again.level == "RED"
    assert len(mon.alerts("m")) == 1
    client.close()


def test_error_answers_are_logged_with_status_and_left_out_of_monitoring_reads(store_url: str) -> None:
    """Error answers have a row with their status (issue 16); reads that compute metrics never see them, and the
    guard's labelled answers are answers only."""
    from mlplatform.entities import PredictionRecord
    from mlplatform.store.sql.models import utcnow

    client = Client()
    mon = client.monitoring
    now = utcnow()
    answers = [PredictionRecord(request_id=f"ok{i}", model_name="m", version=1 + i % 2, features={"x": i},
                                prediction=i % 2, confidence=0.9, latency_ms=1.0, timestamp=now) for i in range(6)]
    errors = [PredictionRecord(request_id="bad", model_name="m", version=2, features={}, prediction=None,
                               confidence=None, latency_ms=2.0, timestamp=now, status=500,
                               error="InternalError: internal error")]
    assert mon.log_predictions(answers + errors) == 7
    assert {r.request_id for r in mon.predictions("m")} == {f"ok{i}" for i in range(6)}
    logged = mon.predictions("m", include_errors=True, request_id="bad")
    assert [(r.status, r.error, r.ok) for r in logged] == [(500, "InternalError: internal error", False)]
    for i in range(6):
        mon.add_label(1, request_id=f"ok{i}")
    mon.add_label(1, request_id="bad")
    outcomes = sorted(mon.labelled_outcomes("m", [1, 2], start=now))
    assert outcomes == [(1, 0, 1), (1, 0, 1), (1, 0, 1), (2, 1, 1), (2, 1, 1), (2, 1, 1)]
    assert mon.labelled_outcomes("m", [1], start=now, end=now) == []
    client.close()
