"""``mlplatform features apply|list|materialize|get`` through the real console script, with the shipped example."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from mlplatform.datasets.synthetic import make_churn
from mlplatform.features.pit_join import point_in_time_join

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "train_jobs" / "configs" / "feature_views" / "churn.yaml"
MLPLATFORM = [sys.executable, "-m", "mlplatform.cli.main"]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MLPLATFORM, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200"})


def test_apply_materialize_get_with_the_example_views(tmp_path: Path, isolated_env: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    spec = repo / "churn.yaml"
    shutil.copy(EXAMPLE, spec)
    source = make_churn(400, seed=42)
    source.to_parquet(repo / "churn_features.parquet", index=False)

    # applied from another working directory: the relative source still resolves next to the YAML file
    applied = cli("features", "apply", str(spec), "--json", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    results = {r["name"]: r for r in json.loads(applied.stdout)}
    assert set(results) == {"churn_customer", "churn_account"}
    assert all(r["status"] == "created" for r in results.values())
    assert results["churn_customer"]["source"] == str((repo / "churn_features.parquet").resolve())
    record = json.loads((isolated_env / "feature_repo" / "churn_customer.json").read_text())
    assert record["view"]["ttl"] == "P90D" and record["version"] == results["churn_customer"]["version"]
    again = cli("features", "apply", str(spec), "--json")
    assert [r["status"] for r in json.loads(again.stdout)] == ["unchanged", "unchanged"]
    listed = cli("features", "list", "--json")
    assert [r["name"] for r in json.loads(listed.stdout)] == ["churn_account", "churn_customer"]

    end = "2026-01-20T00:00:00Z"
    done = cli("features", "materialize", "churn_customer", "--end", end, "--json")
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)
    # the rows after --end are in the future, the ones more than 90 days before it would be expired
    expected_rows = int((source["event_time"] <= pd.Timestamp(end)).sum())
    assert counts["written"] == expected_rows and counts["expired_or_future"] == len(source) - expected_rows
    assert json.loads(cli("features", "materialize", "churn_customer", "--end", end, "--json").stdout)[
        "unchanged"] == expected_rows

    early, late = source.iloc[0], source.iloc[-1]  # make_churn sorts by event time
    ids = f"{early.customer_id},unknown-id,{late.customer_id}"
    got = cli("features", "get", "churn_customer", "--entity-ids", ids, "--as-of", end, "--json")
    assert got.returncode == 0, got.stderr
    rows = json.loads(got.stdout)
    assert [r["customer_id"] for r in rows] == [early.customer_id, "unknown-id", late.customer_id]
    offline = point_in_time_join(pd.DataFrame({"customer_id": [early.customer_id], "t": [pd.Timestamp(end)]}),
                                 source, entity="customer_id", features=["tenure_months", "age"], label_time="t")
    assert rows[0]["tenure_months"] == offline["tenure_months"].iloc[0] and rows[0]["age"] == offline["age"].iloc[0]
    assert rows[1]["tenure_months"] is None and rows[1]["event_time"] is None
    assert rows[2]["tenure_months"] is None  # its event is after --end: never materialized
    table = cli("features", "get", "churn_customer", "--entity-ids", early.customer_id, "--as-of", end)
    assert table.returncode == 0 and early.customer_id in table.stdout

    # --source overrides the declared file; past the TTL at read time the value is gone
    moved = tmp_path / "moved.parquet"
    source.to_parquet(moved, index=False)
    other = cli("features", "materialize", "churn_account", "--end", end, "--source", str(moved), "--json")
    assert other.returncode == 0 and json.loads(other.stdout)["written"] == expected_rows
    expired = cli("features", "get", "churn_customer", "--entity-ids", early.customer_id, "--as-of",
                  "2027-01-01T00:00:00Z", "--json")
    assert json.loads(expired.stdout)[0]["tenure_months"] is None


def test_errors_are_one_line_with_the_category_exit_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("views:\n  - name: v\n    entity: id\n    features: []\n")
    failed = cli("features", "apply", str(bad))
    assert failed.returncode == 2 and "bad.yaml" in failed.stderr and "features" in failed.stderr
    assert "Traceback" not in failed.stderr
    unknown = cli("features", "get", "nope", "--entity-ids", "a")
    assert unknown.returncode == 2 and "not applied" in unknown.stderr
    good = tmp_path / "good.yaml"
    good.write_text("- name: v\n  entity: id\n  features: [x]\n  source: v.parquet\n")
    assert cli("features", "apply", str(good)).returncode == 0
    no_source = cli("features", "materialize", "v")
    assert no_source.returncode == 2 and "does not exist" in no_source.stderr
    bad_time = cli("features", "materialize", "v", "--end", "yesterday-ish")
    assert bad_time.returncode == 2 and "--end" in bad_time.stderr
    strict = cli("features", "get", "v", "--entity-ids", "a", "--strict")
    assert strict.returncode == 2 and "no online features" in strict.stderr
