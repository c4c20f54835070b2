"""The loop's guards and its record (issue 18): a decision held by the cooldown or the daily cap is stored with
its reason, and `mlplatform loop status --json` shows every decision with its evidence and timeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_cooldown_holds_a_retrain_and_loop_status_shows_the_decisions(client, tmp_path) -> None:
    from mlplatform.entities import RunKind
    from mlplatform.loop import LoopModel, guard_verdict, guards_of, what_fired

    entry = LoopModel.model_validate({"model": "churn", "train_config": "x.yaml",
                                      "data": {"path": str(tmp_path)},
                                      "retrain": {"min_hours_between": 6, "max_per_day": 2}})
    evidence = {"level": "RED", "drift_level": "GREEN", "drifted_features": {}, "estimated_accuracy": None,
                "decay": {"decayed": True, "current": 0.61, "baseline": 0.82, "n": 800, "p_value": 1e-9},
                "estimated_decay": {}}
    trigger, reason = what_fired(evidence)
    assert trigger == "decay" and "p=1e-09" in reason
    run = client.runs.start_run("retrain", RunKind.RETRAIN, name="retrain-churn", tags={"model": "churn"})
    now = datetime.now(UTC)
    assert guard_verdict([run.created_at], now, guards_of(entry)).startswith("cooldown")
    night = datetime(2026, 1, 2, 23, 0, tzinfo=UTC)
    today = [night - timedelta(hours=h) for h in (8, 14)]  # outside the cooldown, but two today already
    assert guard_verdict(today, night, guards_of(entry)).startswith("daily cap")
    held = client.loop.add("churn", action="blocked", status="blocked", trigger=trigger,
                           reason=f"{reason}; held: cooldown", champion_version=1, evidence=evidence,
                           details={"timeline": [{"at": now.isoformat(), "step": "held", "reason": "cooldown"}]})
    client.loop.update(held.id, step={"step": "noted"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-m", "mlplatform.cli.main", "loop", "status", "--model", "churn",
                           "--json"], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout)
    assert rows[0]["status"] == "blocked" and rows[0]["trigger"] == "decay"
    assert rows[0]["evidence"]["decay"]["p_value"] == 1e-9
    assert [s["step"] for s in rows[0]["timeline"]] == ["held", "noted"]
    from mlplatform.monitoring.report import build_report_data, render_html

    drift = {"features": {}, "source": "file:w", "n": 0, "status": "ok", "window_start": None, "window_end": None}
    check = {"model": "churn", "version": 1, "level": "RED", "n": 0, "status": "ok", "drift": drift,
             "evaluation": {}, "fairness": [], "retrain": None, "alerts": []}
    page = render_html(build_report_data(check, [], [], client.loop.list("churn")))
    assert "Loop decisions" in page and "held" in page and "noted" in page
