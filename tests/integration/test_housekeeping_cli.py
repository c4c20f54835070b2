"""Housekeeping through the real ``mlplatform`` console script: stale runs failed by ``runs gc``, and
``gc --keep-last`` removing old checkpoints and unaliased artifacts, never an aliased or served version, with a dry
run that deletes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mlplatform.client import Client
from mlplatform.entities import PredictionRecord
from mlplatform.store.sql.models import RunRow, utcnow

MLPLATFORM = [sys.executable, "-m", "mlplatform.cli.main"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MLPLATFORM, *args], capture_output=True, text=True, timeout=120, env=dict(os.environ))


def cli_json(*args: str) -> Any:
    result = cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_runs_gc_fails_only_runs_whose_heartbeat_is_stale(client: Client) -> None:
    stale = client.runs.start_run("exp", "train")
    alive = client.runs.start_run("exp", "train")
    done = client.runs.start_run("exp", "train")
    client.runs.end_run(done.id)
    with client.engine.begin() as conn:  # the driver of `stale` crashed 11 minutes ago
        conn.execute(sa.update(RunRow).where(RunRow.id.in_([stale.id, done.id]))
                     .values(heartbeat_at=utcnow() - timedelta(seconds=660)))
    assert cli_json("runs", "gc") == {"failed": [stale.id], "older_than_s": 600}
    assert [client.runs.get_run(r.id).status for r in (stale, alive, done)] == ["failed", "running", "completed"]
    assert "no heartbeat for 600 s" in client.runs.get_run(stale.id).error
    bad = cli("runs", "gc", "--older-than", "0")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "older_than" in bad.stderr


def test_a_running_run_keeps_its_heartbeat_fresh(client: Client) -> None:
    run = client.runs.start_run("exp", "train")
    before = client.runs.get_run(run.id).heartbeat_at
    with client.runs.keep_alive(run.id, every_s=0.05):
        time.sleep(0.3)
    assert client.runs.get_run(run.id).heartbeat_at > before


def _checkpoints(folder: Path, count: int) -> None:
    for i in range(count):
        (folder / f"checkpoint_{i:06d}").mkdir(parents=True)
        (folder / f"checkpoint_{i:06d}" / "state.pt").write_bytes(b"x" * 10)


def test_gc_keep_last_spares_aliased_served_and_recent_champion_versions(client: Client, model_artifact_dir: Path,
                                                                        isolated_env: Path) -> None:
    reg = client.registry
    versions = [reg.register("churn", model_artifact_dir) for _ in range(7)]
    reg.set_alias("churn", "champion", 1)
    reg.set_alias("churn", "challenger", 2)
    reg.promote("churn")  # 2 champion, 1 standby (a recent champion: stays deployable)
    reg.set_alias("churn", "shadow", 3)
    client.monitoring.log_predictions([PredictionRecord(  # 4 answered a prediction: it is being served (pinned)
        request_id="r1", model_name="churn", version=4, features={}, prediction=1, confidence=None,
        latency_ms=None, timestamp=utcnow())])
    # 5 is old, unaliased, never served; 6 and 7 are the newest two.
    storage = isolated_env / "checkpoints"
    finished = client.runs.start_run("exp", "train", tags={"storage_path": str(storage / "ray_train")})
    client.runs.end_run(finished.id)
    running = client.runs.start_run("exp", "train", tags={"storage_path": str(storage / "ray_train")})
    sweep = client.runs.start_run("exp", "tune", tags={"storage_path": str(storage / "ray_tune"),
                                                       "tune_name": "sweep-1"})
    client.runs.end_run(sweep.id)
    _checkpoints(storage / "ray_train" / finished.id, 4)
    _checkpoints(storage / "ray_train" / running.id, 4)
    _checkpoints(storage / "ray_tune" / "sweep-1" / "trial_a", 3)
    _checkpoints(storage / "ray_tune" / "sweep-1" / "trial_b", 1)

    assert cli("gc").returncode == 2  # default retention keeps everything: say so, do nothing
    dry = cli_json("gc", "--keep-last", "2")
    assert dry["applied"] is False
    planned = {(i["kind"], i["target"]) for i in dry["items"]}
    assert planned == {("model_version", "churn:5"),
                       ("train_checkpoint", finished.id), ("train_checkpoint", finished.id),
                       ("trial_checkpoint", f"{sweep.id}/trial_a")}
    assert len(dry["items"]) == 1 + 2 + 1
    assert all(Path(v.artifact_uri).is_dir() for v in versions)  # the dry run deleted nothing
    assert len(list((storage / "ray_train" / finished.id).iterdir())) == 4

    applied = cli_json("gc", "--keep-last", "2", "--apply")
    assert applied["applied"] is True and len(applied["items"]) == 4
    assert [Path(v.artifact_uri).is_dir() for v in versions] == [True, True, True, True, False, True, True]
    assert reg.get_version("churn", 5).status == "archived"
    assert sorted(p.name for p in (storage / "ray_train" / finished.id).iterdir()) == ["checkpoint_000002",
                                                                                     "checkpoint_000003"]
    assert len(list((storage / "ray_train" / running.id).iterdir())) == 4  # never a running run's checkpoints
    assert sorted(p.name for p in (storage / "ray_tune" / "sweep-1" / "trial_a").iterdir()) == [
        "checkpoint_000001", "checkpoint_000002"]
    for ref in ("churn@champion", "churn:1", "churn@shadow", "churn:4", "churn:7"):
        assert client.registry.load(ref) is not None
    assert cli_json("gc", "--keep-last", "2")["items"] == []  # nothing left to do
