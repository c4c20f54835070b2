"""Head + 2 worker nodes (``ray.cluster_utils.Cluster``) with nothing shared but the services: training workers,
Serve replicas and a batch job spread over nodes, the store on PostgreSQL, artifacts and checkpoints on S3 (moto on
127.0.0.1), and a separate MLPLATFORM_HOME for the driver and each node. Runs in its own process because a
process joins one Ray only."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import fresh_postgres_database
from tests.e2e._script import run_script

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]


def test_training_serving_and_batch_across_three_nodes_sharing_only_postgres_and_s3(
        tmp_path: Path, postgres_server: str, s3_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPLATFORM_STORE_URL", fresh_postgres_database(postgres_server))
    monkeypatch.setenv("MLPLATFORM_ARTIFACT_URI", s3_uri)
    facts = run_script("_multinode.py", tmp_path / "homes", timeout_s=580)
    assert facts["nodes"] == 3 and facts["store"] == "postgresql"
    assert facts["train_status"] == "completed" and facts["train_version"]
    # STRICT_SPREAD: the two training workers ran on two different nodes
    assert len(facts["train_worker_nodes"]) == 2
    assert facts["serve_status"] == 200 and facts["serve_predictions"] == 20
    assert len(facts["serve_replica_nodes"]) == 2, "Serve spreads the two replicas over nodes"
    assert facts["batch_rows"] == facts["batch_output_rows"] == 3000
    # Every stage's records sit in the one PostgreSQL store, written from the driver and from replicas.
    assert {("train", "completed"), ("batch", "completed")} <= {tuple(k) for k in facts["run_kinds"]}
    assert facts["logged_predictions"] >= 20
    # Artifacts and checkpoints on S3; nothing under any local home.
    assert facts["version_uri"].startswith(s3_uri.split("?")[0].split("@")[-1])
    assert facts["train_checkpoints_on_s3"] >= 1
    assert facts["local_artifacts"] == []
