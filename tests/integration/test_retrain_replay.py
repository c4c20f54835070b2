"""The retraining loop end to end (drift -> RED -> guarded retrain -> challenger with its parent -> shadow rollout;
a second trigger inside the cooldown is refused and recorded; a failure is recorded and alerted) and offline
replay of logged requests. Real SQLite store and artifacts; sklearn families keep it driver-only and fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from mlplatform.datasets.synthetic import make_churn

ROOT = Path(__file__).resolve().parents[2]
TRAIN_YAML = """experiment: churn
model_name: churn
task: classification
seed: 7
data: {source: synthetic_churn, n_rows: 2000, target: churned}
split: {method: random, train: 0.6, validation: 0.2, test: 0.2, stratify: true}
model: {family: logistic}
gate: {metric: log_loss, min_lift: 0.01}
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "mlplatform.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=180, check=False)


@pytest.fixture
def champion(client, model_artifact_dir) -> int:
    return client.registry.register("churn", model_artifact_dir, alias="champion").version


@pytest.fixture
def train_yaml(tmp_path) -> Path:
    path = tmp_path / "retrain.yaml"
    path.write_text(TRAIN_YAML)
    return path


@pytest.mark.slow
def test_red_drift_retrains_a_challenger_from_the_champion_then_the_cooldown_refuses(
        client, champion, train_yaml, tmp_path) -> None:
    from mlplatform.loop import run_retrain
    from mlplatform.monitoring.check import run_check
    from mlplatform.monitoring.retrain import find_trigger

    window = tmp_path / "recent.parquet"
    make_churn(3000, seed=21, drift=1.0).to_parquet(window)
    check = run_check(client, "churn@champion", window_file=window)
    assert check.level.name == "RED" and check.retrain.recommend
    trigger, alert = find_trigger(client, "churn", champion)
    assert trigger == "drift" and alert.level == "RED"

    done = _cli("monitor", "retrain", "--model", "churn", "--config", str(train_yaml), "--window-file",
                str(window), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["trigger"] == "drift" and result["alert_id"] == alert.id
    challenger = client.registry.resolve("churn@challenger")
    assert result["challenger"] == challenger.ref and challenger.parent_version == champion
    assert client.registry.resolve("churn@champion").version == champion  # nothing replaced by itself
    gate = result["gate"]
    assert gate["passed"] and gate["champion_version"] == champion and gate["champion"] > gate["candidate"]
    assert result["window"]["path"] == str(window) and result["window"]["n_rows"] == 3000
    assert [s["step"] for s in result["steps"]] == ["started", "challenger_registered", "rollout", "completed"]
    assert result["rollout"]["started"] and result["rollout"]["stage"] == "shadow"
    from mlplatform.rollouts import control

    state = control.rollout_store(client).get("churn")
    assert state.active and state.stage == "shadow" and state.challenger_version == challenger.version
    # lineage: retrain run -> training run -> version, both ways
    run = client.runs.get_run(result["run_id"])
    assert run.kind == "retrain" and run.status == "completed" and run.config["alert_id"] == alert.id
    assert run.tags["training_run_id"] == challenger.source_run_id
    assert client.runs.get_run(challenger.source_run_id).tags["retrain_run_id"] == run.id
    assert {"retrain_start", "retrain_challenger"} <= {e.action for e in client.monitoring.audit_log()}

    again = run_retrain(client, "churn", train_yaml, trigger="drift", window_file=window)
    assert again.status == "refused" and again.reason.startswith("cooldown")
    refused = client.runs.get_run(again.run_id)
    assert refused.status == "stopped" and refused.tags["outcome"] == "refused"
    assert client.monitoring.audit_log(action="retrain_refused")
    assert client.registry.resolve("churn@challenger").version == challenger.version  # nothing new


def test_a_failed_retrain_is_recorded_and_alerted(client, champion, train_yaml, tmp_path) -> None:
    from mlplatform.loop import run_retrain

    broken = tmp_path / "unlabelled.parquet"
    make_churn(500, seed=3).drop(columns=["churned"]).to_parquet(broken)
    result = run_retrain(client, "churn", train_yaml, window_file=broken)
    assert result.status == "failed" and "churned" in result.reason
    assert client.runs.get_run(result.run_id).status == "failed"
    alert = next(a for a in client.monitoring.alerts("churn") if a.metric == "retrain_failed")
    assert alert.level == "ORANGE" and alert.type == "retrain" and result.run_id in alert.message
    # a failed attempt counts for the guards: the next trigger waits for the cooldown
    assert run_retrain(client, "churn", train_yaml, window_file=broken).status == "refused"


def test_guard_verdict_cooldown_and_daily_cap() -> None:
    from mlplatform.config.monitor import RetrainConfig
    from mlplatform.monitoring.retrain import guard_verdict

    day = datetime(2026, 3, 1, tzinfo=UTC)
    config = RetrainConfig()
    assert guard_verdict([], day, config) is None
    assert guard_verdict([day + timedelta(hours=1)], day + timedelta(hours=6, minutes=59), config).startswith("cool")
    two = [day + timedelta(minutes=30), day + timedelta(hours=7)]
    assert guard_verdict(two, day + timedelta(hours=13, minutes=30), config).startswith("daily cap")
    assert guard_verdict(two, day + timedelta(days=1, hours=1), config) is None  # a new UTC day


def _log_traffic(client, version, n: int) -> list[datetime]:
    from mlplatform.entities import PredictionRecord

    predictor = client.registry.load(f"churn:{version}")
    frame = make_churn(n, seed=31)
    features = frame[predictor.feature_names]
    scored = predictor.predict(features)
    times = [datetime(2026, 2, 1, tzinfo=UTC) + timedelta(minutes=i) for i in range(n)]
    client.monitoring.log_predictions([PredictionRecord(
        request_id=f"r{i}", model_name="churn", version=version,
        features={k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()},
        prediction=scored.predictions[i], confidence=float(scored.confidence[i]), latency_ms=1.0, timestamp=times[i])
        for i, row in enumerate(features.to_dict("records"))])
    for i in range(0, n, 2):
        client.monitoring.add_label(int(frame["churned"].iloc[i]), request_id=f"r{i}")
    return times


def test_replay_compares_a_candidate_on_logged_traffic_without_side_effects(client, champion, churn_df,
                                                                             tmp_path) -> None:
    from mlplatform.datasets.synthetic import FEATURES, TARGET
    from mlplatform.learning.sklearn_fit import fit_sklearn_artifact
    from mlplatform.monitoring.replay import run_replay

    times = _log_traffic(client, champion, 400)
    other = tmp_path / "tree"
    fit_sklearn_artifact(churn_df.iloc[:1500], target=TARGET, features=FEATURES, family="random_forest",
                         out_dir=other, params={"n_estimators": 10, "max_depth": 3})
    candidate = client.registry.register("churn", other).version

    same = run_replay(client, "churn@champion", f"churn:{champion}")
    assert same["n"] == 400 and same["agreement_rate"] == 1.0 and same["disagreements"] == 0
    assert same["score_diff"]["above_tolerance"] == 0 and same["score_diff"]["max"] <= 1e-6
    assert same["labelled"]["n"] == 200
    assert same["labelled"]["logged_accuracy"] == same["labelled"]["candidate_accuracy"]

    first = run_replay(client, "churn@champion", f"churn:{candidate}", start=times[100], end=times[300])
    second = run_replay(client, "churn@champion", f"churn:{candidate}", start=times[100], end=times[300])
    assert first["n"] == 200 and first["labelled"]["n"] == 100
    assert 0.5 < first["agreement_rate"] < 1.0 and first["disagreements"] > 0
    assert len(first["disagreement_sample"]) == min(20, first["disagreements"])
    assert first["score_diff"]["above_tolerance"] > 0
    assert {k: v for k, v in first.items() if k != "run_id"} == {k: v for k, v in second.items() if k != "run_id"}
    run = client.runs.get_run(first["run_id"])
    assert run.kind == "replay" and run.status == "completed"
    assert client.runs.latest_metrics(run.id)["agreement_rate"] == pytest.approx(first["agreement_rate"])
    # read-only on the live side: no new log rows, no alerts
    assert len(client.monitoring.predictions("churn")) == 400 and client.monitoring.alerts("churn") == []

    cli = _cli("monitor", "replay", "--model", "churn@champion", "--candidate", f"churn:{candidate}",
               "--start", times[100].isoformat(), "--end", times[300].isoformat(), "--json")
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert json.loads(cli.stdout)["agreement_rate"] == first["agreement_rate"]
