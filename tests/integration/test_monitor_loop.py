"""Monitoring defects reproduced through ``run_check`` / ``monitor check`` on a real SQLite store (no Ray):
decay without significance, scores under a tuned threshold, labels keyed by entity, label-free estimates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from mlplatform.artifacts.model_format import ModelManifest
from mlplatform.datasets.synthetic import FEATURES, make_churn
from mlplatform.entities import PredictionRecord

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _register(client, artifact: Path, tmp_path: Path, **manifest_changes) -> str:
    copy = tmp_path / "artifact"
    shutil.copytree(artifact, copy)
    manifest = ModelManifest.read(copy)
    for key, value in manifest_changes.items():
        setattr(manifest, key, value)
    manifest.write(copy)
    client.registry.register("churn", copy, alias="champion")
    return "churn@champion"


def _log(client, ref: str, n: int, *, seed: int, entity: bool = False, probabilities: bool = True) -> list:
    version = client.registry.resolve(ref)
    predictor = client.registry.load(version)
    frame = make_churn(n, seed=seed)[FEATURES]
    result = predictor.predict(frame)
    records = [PredictionRecord(
        request_id=f"req-{i}", model_name="churn", version=version.version,
        features={k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()},
        prediction=result.predictions[i], confidence=float(result.confidence[i]), latency_ms=1.0,
        timestamp=T0 + timedelta(seconds=i), entity_id=f"cust-{i}" if entity else None,
        probabilities=[float(p) for p in result.probabilities[i]] if probabilities else None)
        for i, row in enumerate(frame.to_dict("records"))]
    client.monitoring.log_predictions(records)
    return records


def test_an_insignificant_drop_is_no_decay_alert_and_no_retrain(client, model_artifact_dir, tmp_path) -> None:
    from mlplatform.monitoring.check import run_check

    ref = _register(client, model_artifact_dir, tmp_path, metrics={"accuracy": 0.5})
    records = _log(client, ref, 100, seed=21)
    for i, record in enumerate(records):  # 44 of 100 right against a 0.5 baseline: a 12 % drop, p = 0.136
        label = record.prediction if i < 44 else 1 - record.prediction
        client.monitoring.add_label(label, request_id=record.request_id)
    result = run_check(client, ref, last_n=100)
    decay = result.evaluation["decay"]
    assert decay["k"] == 44 and decay["p_value"] == pytest.approx(0.1356, abs=1e-3) and not decay["decayed"]
    alert = next(c for c in result.checks if c.type == "decay")
    assert alert.level.name == "GREEN"  # was RED (drop alone), which started a retrain
    assert not result.retrain.recommend
    assert not any(c.type == "concept_drift" and c.level.name != "GREEN" for c in result.checks)


def test_logged_probabilities_give_the_true_score_under_a_tuned_threshold(client, model_artifact_dir,
                                                                           tmp_path) -> None:
    from mlplatform.monitoring.window import window_from_log

    ref = _register(client, model_artifact_dir, tmp_path, threshold=0.4)
    version = client.registry.resolve(ref)
    records = _log(client, ref, 300, seed=22)
    window = window_from_log(client, version, last_n=300, classes=[0, 1], threshold=0.4)
    expected = np.array([r.probabilities[1] for r in records])
    assert window.scores is not None and np.allclose(window.scores, expected, atol=1e-12)
    # p1 in [0.4, 0.5) is "positive, confidence 1 - p1": rebuilding from the maximum read it as 1 - p1
    assert np.any((expected >= 0.4) & (expected < 0.5))


def test_labels_keyed_by_entity_reach_monitoring(client, model_artifact_dir, tmp_path) -> None:
    from mlplatform.monitoring.check import run_check

    ref = _register(client, model_artifact_dir, tmp_path)
    records = _log(client, ref, 150, seed=23, entity=True)
    for record in records[:120]:
        client.monitoring.add_label(record.prediction, entity_id=record.entity_id,
                                    event_time=record.timestamp + timedelta(minutes=5))
    result = run_check(client, ref, last_n=150)
    assert result.evaluation["metrics"]["n"] == 120  # was 0: only request ids were looked up
    assert result.evaluation["metrics"]["accuracy"] == 1.0


def test_monitor_check_shows_the_label_free_estimate_beside_realized_metrics(client, model_artifact_dir,
                                                                            tmp_path) -> None:
    ref = _register(client, model_artifact_dir, tmp_path)
    window = tmp_path / "window.parquet"
    make_churn(1500, seed=24).to_parquet(window)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)])}
    out = subprocess.run([sys.executable, "-m", "mlplatform.cli.main", "monitor", "check", "--model", ref,
                          "--window-file", str(window), "--json"], capture_output=True, text=True, env=env,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    evaluation = json.loads(out.stdout)["evaluation"]
    estimated, realized = evaluation["estimated"], evaluation["metrics"]
    assert estimated["status"] == "ok" and estimated["n"] == 1500
    assert abs(estimated["accuracy"] - realized["accuracy"]) <= 0.04
    assert 0 < estimated["f1"] < 1 and 0.5 < estimated["roc_auc"] < 1
    from typer.testing import CliRunner

    from mlplatform.cli.main import app

    text = CliRunner().invoke(app, ["monitor", "check", "--model", ref, "--window-file", str(window)])
    assert text.exit_code == 0 and "estimated" in text.stdout and "realized" in text.stdout
