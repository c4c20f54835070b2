"""Head + 2 worker nodes (``ray.cluster_utils.Cluster``): training workers, Serve replicas and a batch job spread
over nodes, with one shared artifact location. Runs in its own process because a process joins one Ray only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_training_serving_and_batch_across_three_nodes(tmp_path: Path) -> None:
    script = Path(__file__).with_name("_multinode.py")
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "home")], capture_output=True, text=True,
                            timeout=580, cwd=Path(__file__).resolve().parents[2])
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stderr[-4000:]
    facts = json.loads(lines[-1].removeprefix("RESULT "))
    assert facts["nodes"] == 3
    assert facts["train_status"] == "completed" and facts["train_version"]
    # STRICT_SPREAD: the two training workers ran on two different nodes
    assert len(facts["train_worker_nodes"]) == 2
    assert facts["serve_status"] == 200 and facts["serve_predictions"] == 20
    assert len(facts["serve_replica_nodes"]) == 2, "Serve spreads the two replicas over nodes"
    assert facts["batch_rows"] == facts["batch_output_rows"] == 3000
