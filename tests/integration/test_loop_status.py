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


class _JobsThatLostTheirPackage:
    """The Jobs API as the loop sees it after Ray failed to start a retrain job's workers (in CI: "Failed to download
    runtime_env file package ... from the GCS"). Ray cannot be made to lose a package on demand, so this stands in
    for the Jobs client only; the decision, the store and the loop's reconciliation are the real ones."""

    def __init__(self, failed: set[str]) -> None:
        self.submitted: list[dict[str, object]] = []
        self.failed = failed  # the jobs that ended FAILED; any other is still running

    def submit_job(self, **kwargs: object) -> str:
        self.submitted.append(kwargs)
        return str(kwargs["submission_id"])

    def get_job_status(self, job_id: str) -> object:
        from ray.job_submission import JobStatus

        return JobStatus.FAILED if job_id in self.failed else JobStatus.RUNNING

    def get_job_logs(self, job_id: str) -> str:
        return "RuntimeEnvSetupError"


def test_a_retrain_job_ray_could_not_start_is_submitted_once_more_and_does_not_count_as_an_attempt(
        client, tmp_path) -> None:
    import ray.exceptions

    from mlplatform.entities import RunKind
    from mlplatform.loop import LoopConfig, _attempts, _infrastructure_failure, reconcile

    # the retrain job tells Ray's failures from the model's, wrapped or not
    setup = ray.exceptions.RuntimeEnvSetupError("Failed to download runtime_env file package")
    try:
        try:
            raise setup
        except ray.exceptions.RuntimeEnvSetupError as inner:
            raise RuntimeError("Training failed") from inner
    except RuntimeError as wrapped:
        assert _infrastructure_failure(setup) and _infrastructure_failure(wrapped)
    assert not _infrastructure_failure(ValueError("bad rows"))

    config = LoopConfig.model_validate({"jobs_address": "http://127.0.0.1:1", "working_dir": str(ROOT), "models": [
        {"model": "churn", "train_config": "x.yaml", "data": {"path": str(tmp_path)}}]})
    entry = config.models[0]
    decision = client.loop.add("churn", action="retrain", status="retraining", trigger="decay", reason="decay",
                               champion_version=1, evidence={}, details={"timeline": [{"step": "decided"}]})
    decision = client.loop.update(decision.id, job_id=f"retrain-churn-{decision.id[:8]}",
                                  step={"step": "job_submitted"})
    # what the job wrote before it exited 1: the attempt, tagged so the cooldown does not count it
    run = client.runs.start_run("retrain", RunKind.RETRAIN, name="retrain-churn",
                                tags={"model": "churn", "outcome": "infrastructure_failed"})
    assert run.id not in {r.id for r in _attempts(client, "churn")}
    client.loop.update(decision.id, step={"step": "infrastructure_failed", "reason": "RuntimeEnvSetupError: ..."})
    jobs = _JobsThatLostTheirPackage(failed={decision.job_id})
    again = reconcile(client, config, entry, client.loop.get(decision.id), jobs=jobs, wait=False)
    assert [s["submission_id"] for s in jobs.submitted] == [f"retrain-churn-{decision.id[:8]}-2"]
    assert again.status == "retraining" and again.job_id == f"retrain-churn-{decision.id[:8]}-2"
    assert again.timeline[-1]["step"] == "job_resubmitted"

    # on a head on this machine the job can run the checkout in place: nothing uploaded, absolute paths
    from mlplatform.loop import submit_retrain

    in_place = config.model_copy(update={"upload_working_dir": False})
    submit_retrain(client, in_place, decision, jobs, attempt=9)
    local = jobs.submitted[-1]
    assert str(local["entrypoint"]).startswith(f"cd {ROOT} && python train_jobs/retrain.py --decision ")
    assert "working_dir" not in local["runtime_env"]  # type: ignore[operator]
    assert local["runtime_env"]["env_vars"]["PYTHONPATH"].split(os.pathsep) == [  # type: ignore[index]
        str(ROOT / "platform"), str(ROOT)]
    assert "working_dir" in jobs.submitted[0]["runtime_env"]  # type: ignore[operator]
    jobs.submitted.pop()

    # the second attempt fails the same way: once is enough, the decision fails and says why
    jobs.failed.add(again.job_id)
    client.loop.update(decision.id, step={"step": "infrastructure_failed", "reason": "again"})
    final = reconcile(client, config, entry, client.loop.get(decision.id), jobs=jobs, wait=False)
    assert final.status == "failed" and len(jobs.submitted) == 1
    assert "could not start" in final.timeline[-1]["error"] and "again" in final.timeline[-1]["error"]


def test_the_traffic_source_decides_from_logged_predictions_and_their_labels(client, model_artifact_dir,
                                                                             tmp_path) -> None:
    """data.kind traffic: the loop checks the champion on its own logged predictions joined to the labels that
    arrived, decides on significant decay, submits the job, and the job's window is those labelled rows."""
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from mlplatform.datasets.synthetic import FEATURES, TARGET, make_churn
    from mlplatform.entities import PredictionRecord
    from mlplatform.loop import LoopConfig, newest_window, step_model

    client.registry.register("churn", model_artifact_dir, alias="champion")
    predictor = client.registry.load("churn@champion")
    frame = make_churn(400, seed=31)[FEATURES]
    result = predictor.predict(frame)
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    records = [PredictionRecord(
        request_id=f"req-{i}", model_name="churn", version=1, latency_ms=1.0, timestamp=t0 + timedelta(seconds=i),
        features={k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()},
        prediction=result.predictions[i], confidence=float(result.confidence[i]),
        probabilities=[float(p) for p in result.probabilities[i]])
        for i, row in enumerate(frame.to_dict("records"))]
    client.monitoring.log_predictions(records)
    for i, record in enumerate(records[:300]):  # 300 labels arrived; the model was right on a third of them
        client.monitoring.add_label(record.prediction if i % 3 == 0 else 1 - record.prediction,
                                    request_id=record.request_id)

    config = LoopConfig.model_validate({"jobs_address": "http://127.0.0.1:1", "working_dir": str(ROOT), "wait": False,
                                        "models": [{"model": "churn", "train_config": "x.yaml",
                                                    "data": {"kind": "traffic", "last_n": 400, "min_rows": 200}}]})
    jobs = _JobsThatLostTheirPackage(failed=set())  # every job it is given is still running
    decision = step_model(client, config, config.models[0], jobs=jobs)
    assert decision.trigger == "decay" and decision.status == "retraining", decision
    assert decision.evidence["window"] == {"source": "traffic", "last_n": 400}
    assert decision.evidence["decay"]["decayed"] and decision.evidence["decay"]["n"] == 300
    assert [s["submission_id"] for s in jobs.submitted] == [decision.job_id]

    window = newest_window(client, config.models[0], TARGET)  # what the retrain job trains on
    assert len(window) == 300 and set(FEATURES) <= set(window.columns) and window[TARGET].notna().all()
