"""`make demo`'s pipeline end to end (on a private Ray), with its outcomes checked in the store and at the endpoint."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_demo_runs_the_whole_life_of_a_model(isolated_env: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    facts_file = tmp_path / "facts.json"
    env = {**os.environ, "MLPLATFORM_DEMO_PORT": str(port), "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run([sys.executable, "-m", "mlplatform.demo", "--in-process-ray", "--facts", str(facts_file)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=880)
    if result.returncode != 0:  # pytest.fail keeps the whole text; an assert message's repr is cut in the middle
        pytest.fail(f"demo exited {result.returncode}\n--- stdout (tail) ---\n{result.stdout[-6000:]}\n"
                    f"--- stderr (tail) ---\n{result.stderr[-4000:]}", pytrace=False)
    facts = json.loads(facts_file.read_text())
    assert f":{port}" in facts["endpoint"] and "curl" in facts["curl"]
    assert facts["console"] == f"http://127.0.0.1:{port}/console/"
    assert Path(facts["report"]).is_file() and "<html" in Path(facts["report"]).read_text()[:500].lower()
    assert facts["batch"]["rows_in"] == facts["batch"]["rows_scored"] + facts["batch"]["rows_quarantined"]

    from mlplatform.client import Client

    client = Client()
    champion = client.registry.resolve("churn@champion")
    challenger = client.registry.resolve("churn@challenger")
    assert challenger.parent_version == champion.version  # warm-started from the champion
    logged = client.monitoring.predictions("churn")
    assert len(logged) >= 2000  # the endpoint answered the demo's traffic
    assert any(a.model_name == "churn" and a.level in {"ORANGE", "RED"} for a in client.monitoring.alerts("churn"))
    assert facts["level"] in {"ORANGE", "RED"}
    # the loop decided, retrained as a Ray job and started the rollout with no command typed by hand
    assert facts["loop"]["job_id"] and facts["loop"]["status"] in {"rolling_out", "promoted"}, facts["loop"]
    assert client.rollouts.state("churn") is not None
    client.close()
