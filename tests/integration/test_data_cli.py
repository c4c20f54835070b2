"""``mlplatform data version|profile|validate`` through the real console script against a real SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mlplatform.datasets.synthetic import make_churn
from mlplatform.features.datasets import content_hash

MLPLATFORM = [sys.executable, "-m", "mlplatform.cli.main"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    # a wide terminal so that rich does not shorten table cells
    return subprocess.run([*MLPLATFORM, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


def test_version_profile_and_validate(tmp_path: Path, model_artifact_dir: Path, client: object) -> None:
    reference = make_churn(3000, seed=7)
    train = tmp_path / "train.parquet"
    reference.to_parquet(train)
    versioned = cli("data", "version", str(train), "--name", "churn-train", "--json")
    assert versioned.returncode == 0, versioned.stderr
    record = json.loads(versioned.stdout)
    assert record["version"] == content_hash(reference) and record["row_count"] == 3000
    assert client.datasets.get("churn-train").version == record["version"]  # type: ignore[attr-defined]
    table = cli("data", "version", str(train), "--name", "churn-train")
    assert table.returncode == 0 and record["version"][:12] in table.stdout

    csv = tmp_path / "train.csv"
    reference.to_csv(csv, index=False)
    profile = cli("data", "profile", str(csv), "--json")
    assert profile.returncode == 0, profile.stderr
    assert json.loads(profile.stdout)["columns"]["age"]["count"] == 3000

    client.registry.register("churn", model_artifact_dir, alias="champion")  # type: ignore[attr-defined]
    clean = tmp_path / "clean.parquet"
    make_churn(1000, seed=8).to_parquet(clean)
    ok = cli("data", "validate", str(clean), "--model", "churn", "--reference", "churn-train", "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads(ok.stdout)
    assert report["level"] != "ERROR" and report["dataset"]["reference"].startswith("churn-train@")
    assert any(c["check"] == "mean_shift" for c in report["checks"])

    drifted = tmp_path / "drifted.parquet"
    make_churn(1000, seed=9, drift=0.8).to_parquet(drifted)
    failed = cli("data", "validate", str(drifted), "--model", "churn@champion", "--reference", "churn-train")
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "FAILED (ERROR)" in failed.stdout and "mean_shift" in failed.stdout

    broken = tmp_path / "broken.csv"
    make_churn(50, seed=1).drop(columns=["age"]).to_csv(broken, index=False)
    missing_column = cli("data", "validate", str(broken), "--model", "churn", "--no-reference", "--json")
    assert missing_column.returncode == 3
    assert any(c["check"] == "required_column" and c["column"] == "age"
               for c in json.loads(missing_column.stdout)["checks"])

    nothing = cli("data", "validate", str(tmp_path / "nope.parquet"), "--model", "churn")
    assert nothing.returncode == 2 and "does not exist" in nothing.stderr and "Traceback" not in nothing.stderr
