"""Training and batch scoring submitted through Ray's Jobs API, exactly as a user runs
``ray job submit --working-dir . -- python train_jobs/<name>.py ...``."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _submit(client, entrypoint: str, env: dict[str, str]) -> str:
    deadline = time.monotonic() + 240
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint,
                                     runtime_env={"working_dir": str(ROOT), "env_vars": env})
        except RuntimeError as exc:
            # The job agent starts a few seconds after the dashboard ("No available agent to submit job").
            if "agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def _wait(client, job_id: str, timeout: float = 420) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_job_status(job_id)
        if status.is_terminal():
            return str(status.value)
        time.sleep(1)
    client.stop_job(job_id)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s:\n{client.get_job_logs(job_id)[-3000:]}")


def test_training_and_batch_scoring_through_the_jobs_api(ray_session: str, isolated_env: Path,
                                                         tmp_path: Path) -> None:
    from ray.job_submission import JobSubmissionClient

    from mlplatform.client import Client
    from mlplatform.datasets.synthetic import make_churn

    assert ray_session, "the shared Ray must run the dashboard for the Jobs API"
    jobs = JobSubmissionClient(ray_session)
    env = {"MLPLATFORM_HOME": str(isolated_env), "MLPLATFORM_LOG_LEVEL": "INFO"}

    train_id = _submit(jobs, "python train_jobs/train.py --config train_jobs/configs/churn_hist_gbdt.yaml", env)
    status = _wait(jobs, train_id)
    logs = jobs.get_job_logs(train_id)
    assert status == "SUCCEEDED", logs[-3000:]

    client = Client()
    champion = client.registry.resolve("churn@champion")
    assert champion.version == 1 and champion.metrics["roc_auc"] > 0.8
    assert any(r.kind == "train" and r.status == "completed" for r in client.runs.list_runs(experiment="churn"))

    scoring = tmp_path / "scoring.parquet"
    make_churn(1500, seed=5).drop(columns=["churned"]).to_parquet(scoring, index=False)
    out = tmp_path / "predictions"
    batch_id = _submit(jobs, f"python train_jobs/batch_score.py --model churn@champion --input {scoring} "
                             f"--output {out} --keep-columns customer_id --concurrency 1", env)
    status = _wait(jobs, batch_id)
    assert status == "SUCCEEDED", jobs.get_job_logs(batch_id)[-3000:]
    scored = pd.read_parquet(out)
    assert len(scored) == 1500 and scored["customer_id"].is_unique
    predictor = client.registry.load("churn@champion")
    expected = predictor.predict(pd.read_parquet(scoring))
    merged = scored.sort_values("customer_id").reset_index(drop=True)
    original = pd.read_parquet(scoring).assign(expected=expected.predictions)
    original = original.sort_values("customer_id").reset_index(drop=True)
    assert (merged["prediction"].to_numpy() == original["expected"].to_numpy()).all()
    assert any(r.kind == "batch" for r in client.runs.list_runs())
    client.close()


def test_the_scheduler_runs_as_a_ray_job_and_runs_due_schedules(ray_session: str, isolated_env: Path) -> None:
    """``ray job submit -- python train_jobs/scheduler.py``: listed by the Jobs API, it runs a due schedule (a real
    ``mlplatform`` child process) and records it in the store."""
    from datetime import UTC, datetime, timedelta

    from ray.job_submission import JobSubmissionClient

    from mlplatform.client import Client
    from mlplatform.scheduler import add_schedule

    client = Client()
    add_schedule(client, "tick", cron="0 0 * * *", command="version", kind="command",
                 now=datetime.now(UTC) - timedelta(days=1))  # today's midnight slot is due
    jobs = JobSubmissionClient(ray_session)
    # "platform" first, relative to the job's working directory: the code under test, not an installed copy
    env = {"MLPLATFORM_HOME": str(isolated_env), "PYTHONPATH": "platform:."}
    job_id = _submit(jobs, "python train_jobs/scheduler.py --interval 1 --max-ticks 2", env)
    assert job_id in {j.submission_id for j in jobs.list_jobs()}
    status = _wait(jobs, job_id, timeout=240)
    assert status == "SUCCEEDED", jobs.get_job_logs(job_id)[-3000:]
    runs = client.schedules.runs("tick")
    assert [r.status for r in runs] == ["succeeded"] and runs[0].details["exit_code"] == 0
    assert client.schedules.get("tick").last_status == "succeeded"
    client.close()
