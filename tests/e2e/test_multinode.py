"""Head + 2 worker nodes (``ray.cluster_utils.Cluster``): training workers, Serve replicas and a batch job spread
over nodes, with one shared artifact location. Runs in its own process because a process joins one Ray only."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e._script import run_script

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_training_serving_and_batch_across_three_nodes(tmp_path: Path) -> None:
    facts = run_script("_multinode.py", tmp_path / "home", timeout_s=580)
    assert facts["nodes"] == 3
    assert facts["train_status"] == "completed" and facts["train_version"]
    # STRICT_SPREAD: the two training workers ran on two different nodes
    assert len(facts["train_worker_nodes"]) == 2
    assert facts["serve_status"] == 200 and facts["serve_predictions"] == 20
    assert len(facts["serve_replica_nodes"]) == 2, "Serve spreads the two replicas over nodes"
    assert facts["batch_rows"] == facts["batch_output_rows"] == 3000
