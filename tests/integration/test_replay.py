"""`mlplatform runs replay RUN_ID` through the CLI in a subprocess, on a real SQLite store (sklearn: no Ray)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from mlplatform.datasets.synthetic import make_churn
from mlplatform.training import pipeline


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLPLATFORM_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "mlplatform.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=180)


def _file_config(tmp_path: Path, data: Path) -> Path:
    config: dict[str, Any] = {
        "experiment": "replay", "model_name": "churn", "seed": 11,
        "data": {"source": "file", "path": str(data)},
        "model": {"family": "hist_gbdt", "params": {"max_iter": 30}},
        "slices": ["plan"],
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_replay_matches_records_a_linked_run_and_detects_changes(
        client: Any, tmp_path: Path, isolated_env: Path) -> None:
    data = tmp_path / "churn.parquet"
    make_churn(1500, seed=3).to_parquet(data)
    original = pipeline.train_from_file(_file_config(tmp_path, data), client=client)
    assert original.status == "completed" and original.test_metrics["roc_auc"] > 0.5

    done = _cli(isolated_env, "runs", "replay", original.run_id, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["match"] is True and report["tolerance"]["mode"] == "exact" and report["mismatches"] == []
    names = {(m["key"], m["slice"]) for m in report["metrics"]}
    assert {("roc_auc", None), ("accuracy", None)} <= names
    assert any(s and s.startswith("plan=") for _, s in names)  # per-slice test metrics are compared too
    for check in report["metrics"]:
        assert abs(check["replay"] - check["original"]) <= 1e-5 * abs(check["original"]) + 1e-12
    replayed = client.runs.get_run(report["replay_run_id"])
    assert (replayed.kind, replayed.parent_run_id, replayed.status) == ("replay", original.run_id, "completed")
    assert replayed.id != original.run_id and replayed.tags["replay"]["match"] is True
    assert client.registry.get_version("churn", 1) and len(client.registry.list_versions("churn")) == 1
    assert [d.version for _, d in client.datasets.for_run(replayed.id)] == \
        [d.version for _, d in client.datasets.for_run(original.run_id)]

    # A recorded metric that the replay cannot reproduce: exit 3 and a failed replay run naming the metric.
    client.runs.log_metrics(original.run_id, {"roc_auc": original.test_metrics["roc_auc"] - 0.2}, step=1,
                            split="test")
    done = _cli(isolated_env, "runs", "replay", original.run_id, "--json")
    assert done.returncode == 3, done.stderr
    report = json.loads(done.stdout)
    assert report["match"] is False and report["mismatches"] == ["roc_auc"]
    assert "does not match" in done.stderr and "roc_auc" in done.stderr
    failed = client.runs.get_run(report["replay_run_id"])
    assert failed.status == "failed" and "roc_auc" in failed.error

    # Changed data: the content hash no longer matches the recorded dataset version; nothing is trained.
    frame = pd.read_parquet(data)
    frame.loc[0, "tenure_months"] = frame.loc[0, "tenure_months"] + 1
    frame.to_parquet(data)
    before = len(client.runs.list_runs(experiment="replay"))
    done = _cli(isolated_env, "runs", "replay", original.run_id)
    assert done.returncode == 2 and "changed" in done.stderr and "dataset version" in done.stderr
    runs = client.runs.list_runs(experiment="replay")
    assert len(runs) == before + 1 and runs[0].status == "failed"  # the attempt is recorded, with the reason


def test_replay_refuses_a_run_that_is_not_training(client: Any, isolated_env: Path) -> None:
    run = client.runs.start_run("other", "batch")
    done = _cli(isolated_env, "runs", "replay", run.id)
    assert done.returncode == 2 and "not a training run" in done.stderr
