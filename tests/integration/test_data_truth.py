"""One truth for data through the CLI (issue 15): one dataset version for the same bytes, training refuses bad data
unless forced (and lineage says so), ``data validate --model`` uses the model's training profile, and lineage shows
and diffs the dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from mlplatform.datasets.synthetic import make_churn

pytestmark = [pytest.mark.slow]

MLPLATFORM = [sys.executable, "-m", "mlplatform.cli.main"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MLPLATFORM, *args], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "COLUMNS": "200"})


def cli_json(*args: str) -> Any:
    done = cli(*args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def _config(tmp_path: Path, path: Path, name: str, dataset: str = "churn_train", **data: Any) -> Path:
    config = {"experiment": "truth", "model_name": "truth", "seed": 3,
              "data": {"source": "file", "path": str(path), "name": dataset, "target": "churned", **data},
              "model": {"family": "logistic", "params": {}}, "gate": {"min_lift": 0.0, "compare_champion": False}}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_one_version_reference_and_lineage(tmp_path: Path, client: Any) -> None:
    first = tmp_path / "first.parquet"
    make_churn(1500, seed=11).to_parquet(first)
    versioned = cli_json("data", "version", str(first), "--name", "churn_train")

    trained = cli_json("train", "--config", str(_config(tmp_path, first, "a.yaml")))
    datasets = client.datasets.list("churn_train")
    assert [d.version for d in datasets] == [versioned["version"]]  # one version for the same bytes
    assert datasets[0].profile["columns"]["age"]["count"] == 1500
    version = client.registry.get_version("truth", _number(trained))
    assert version.lineage["dataset"]["version"] == versioned["version"]

    # the model's own training profile is the reference, and the report says which
    fresh = tmp_path / "fresh.parquet"
    make_churn(1000, seed=12).to_parquet(fresh)
    report = cli_json("data", "validate", str(fresh), "--model", f"truth:{version.version}")
    assert report["dataset"]["reference"].startswith(f"churn_train@{versioned['version'][:12]}")
    assert any(c["check"] == "mean_shift" for c in report["checks"])
    text = cli("data", "validate", str(fresh), "--model", f"truth:{version.version}")
    assert "reference profile: churn_train@" in text.stdout

    # a model with no recorded training data: an error naming the way out, not a silent skip
    client.registry.register("bare", _bare_artifact(tmp_path))
    missing = cli("data", "validate", str(fresh), "--model", "bare:1")
    assert missing.returncode == 2 and "no reference profile" in missing.stderr and "Traceback" not in missing.stderr
    assert cli("data", "validate", str(fresh), "--model", "bare:1", "--no-reference").returncode == 0

    # lineage shows the dataset; a second version on other data names the change
    second = tmp_path / "second.parquet"
    make_churn(1200, seed=13).to_parquet(second)
    other = cli_json("train", "--config", str(_config(tmp_path, second, "b.yaml")))
    shown = cli("models", "lineage", "show", f"truth:{version.version}")
    assert f"churn_train@{versioned['version'][:12]}" in shown.stdout and "1500 rows" in shown.stdout
    diff = cli_json("models", "lineage", "diff", f"truth:{version.version}", other["model_version"])
    data_changes = {row["key"]: (row["old"], row["new"]) for row in diff if row["section"] == "data"}
    assert data_changes["version"][0] == versioned["version"] and data_changes["rows"] == (1500, 1200)


def test_training_refuses_bad_data_unless_forced(tmp_path: Path, client: Any) -> None:
    frame = make_churn(1500, seed=21)
    frame["age"] = frame["age"].astype(object)
    frame.loc[frame.index[:40], "age"] = "unknown"  # text in a numeric column: a type error per row
    frame["age"] = frame["age"].map(lambda v: v if isinstance(v, str) else float(v))
    bad = tmp_path / "bad.parquet"
    frame.astype({"age": str}).to_parquet(bad)  # a text column, as a CSV export with a stray word would give
    config = _config(tmp_path, bad, "bad.yaml", "churn_bad", declared_schema=[{"name": "age", "dtype": "float"}])
    refused = cli("train", "--config", str(config))
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "age" in refused.stderr and "wrong_type" in refused.stderr and "Traceback" not in refused.stderr
    assert not [m for m in client.registry.list_models() if m.name == "truth"]
    run = next(r for r in client.runs.list_runs(experiment="truth") if r.parent_run_id is None)
    assert run.status == "rejected" and run.tags["validation"]["level"] == "ERROR"

    forced = cli_json("train", "--config", str(config), "--force")
    version = client.registry.get_version("truth", _number(forced))
    recorded = version.lineage["dataset"]
    assert recorded["validation"]["forced"] is True and recorded["validation"]["rows_dropped"] == 40
    assert recorded["rows"] == 1500 and recorded["rows_used"] == 1460
    assert "40 row(s) dropped" in cli("models", "lineage", "show", f"truth:{version.version}").stdout
    assert np.isfinite(version.metrics.get("roc_auc", 0.5))


def _number(outcome: dict[str, Any]) -> int:
    return int(outcome["model_version"].rsplit(":", 1)[1])


def _bare_artifact(tmp_path: Path) -> Path:
    from mlplatform.datasets.synthetic import FEATURES, TARGET
    from mlplatform.learning.sklearn_fit import fit_sklearn_artifact

    out = tmp_path / "bare"
    fit_sklearn_artifact(make_churn(400, seed=1), target=TARGET, features=FEATURES, family="logistic", out_dir=out)
    return out
