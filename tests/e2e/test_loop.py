"""The loop runs itself (issue 18): concept drift in a generated scenario leads, through one scheduler tick and no
manual step, to a retrain job on the Jobs API, a challenger that beats the champion on the newest holdout, and a
rollout that the serving guard carries through shadow and canary to full; a broken challenger is rolled back with
the champion serving throughout. Small data and the logistic family keep it to tens of seconds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
FEATURES = ["income", "tenure", "usage", "merchant", "region"]
# latency is no criterion here: on a loaded 2-core host a first call of a fresh version reads tens of ms
POLICY = {"min_requests": 20, "stage_min_s": 0.0, "max_error_rate": 0.05, "cooldown_s": 0.0, "p99_floor_ms": 5000.0}


def _history(tmp_path: Path) -> tuple[Path, Path]:
    """A Parquet dataset of stationary training rows and daily windows whose last two carry concept drift."""
    from mlplatform.datasets.scenarios import ScenarioConfig, make_scenario, make_training_frame

    folder = tmp_path / "history"
    folder.mkdir()
    train = make_training_frame(2000, seed=3)
    train.to_parquet(folder / "000_train.parquet", index=False)
    scenario = make_scenario("concept_drift", ScenarioConfig(seed=3, window_rows=800, stationary_windows=2,
                                                             event_windows=2, label_delay=0, label_missing=0.0))
    for window in scenario.windows:
        window.frame.to_parquet(folder / f"{window.index + 1:03d}_day.parquet", index=False)
    return folder, folder / "000_train.parquet"


def _configs(tmp_path: Path, history: Path, train_file: Path, dashboard: str) -> tuple[Path, Path]:
    train_yaml = tmp_path / "train.yaml"
    train_yaml.write_text(json.dumps({
        "experiment": "loop", "model_name": "scen", "task": "classification", "seed": 1,
        "data": {"source": "file", "path": str(train_file), "target": "label", "features": FEATURES},
        "split": {"method": "random", "train": 0.6, "validation": 0.2, "test": 0.2, "stratify": True},
        "model": {"family": "logistic"}, "gate": {"metric": "log_loss", "min_lift": 0.0}}))
    loop_yaml = tmp_path / "loop.yaml"
    loop_yaml.write_text(json.dumps({
        "jobs_address": dashboard, "working_dir": str(ROOT),
        "models": [{"model": "scen", "train_config": str(train_yaml), "rollout_policy": POLICY,
                    "data": {"kind": "parquet", "path": str(history), "window_days": 2, "min_rows": 200},
                    "retrain": {"min_hours_between": 0, "max_per_day": 5}, "job_timeout_s": 240}]}))
    return train_yaml, loop_yaml


def _serve_until(client: Any, faults: dict[int, float], done: set[str], timeout: float = 60) -> tuple[Any, set]:
    """The real model server (the body of the Serve replica) in this process, its guard on: traffic until the
    rollout reaches one of ``done``. Returns the final state and the versions whose answers were not errors."""
    from mlplatform.serving.model_server import ModelServer

    config = {"models": [{"name": "scen"}], "store_url": client.display_url,
              "artifact_uri": client.artifacts.root_uri, "home": str(client.settings.home),
              "prediction_log": {"enabled": False}, "batching": {"enabled": False},
              "rollout": {"poll_interval_s": 0.1, "guard_interval_s": 3600, "fault_injection": faults}}
    server = ModelServer("scen", config)
    server.apply_ref()
    row = {"income": 50.0, "tenure": 3.0, "usage": 10.0, "merchant": "m001", "region": "north"}
    answered: set[int] = set()

    async def drive() -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server._follower.refresh()
            for i in range(40):
                out = await server.predict([row], routing_key=f"user-{i}")
                # the user's answer: from the fallback (the champion) when the picked version failed
                answered.add(int(out.fallback_version or out.model_version))
                for version in out.mirror_versions:  # what the ingress does: a copy to the shadow
                    with contextlib.suppress(Exception):  # a broken shadow fails only itself
                        await server.predict([row], shadow_version=version)
            await server.guard_now()
            state = client.rollouts.state("scen")
            if state.status in done:
                return state
        raise AssertionError(f"the rollout stayed at {client.rollouts.state('scen')}")

    try:
        return asyncio.run(drive()), answered
    finally:
        server._follower.stop()


def test_concept_drift_retrains_by_itself_and_promotes_then_a_broken_challenger_rolls_back(
        ray_session: str, isolated_env: Path, tmp_path: Path) -> None:
    from ray.job_submission import JobSubmissionClient

    from mlplatform.client import Client
    from mlplatform.config.train import load_train_config
    from mlplatform.loop import load_loop_config, tick
    from mlplatform.scheduler import add_schedule, run_due
    from mlplatform.training.pipeline import train

    history, train_file = _history(tmp_path)
    train_yaml, loop_yaml = _configs(tmp_path, history, train_file, ray_session)
    client = Client()
    champion = train(load_train_config(train_yaml), client=client)
    assert champion.alias == "champion"
    add_schedule(client, "loop-scen", cron="0 * * * *", command=["loop", "run", "--config", str(loop_yaml)],
                 kind="monitor", timeout_s=600, due_now=True)

    outcomes = run_due(client)  # one scheduler tick: check, decide, retrain job, gate, rollout start
    assert [o.status for o in outcomes] == ["succeeded"], outcomes
    decision = client.loop.list("scen")[0]
    assert decision.trigger == "decay" and decision.status == "rolling_out", decision
    assert decision.evidence["decay"]["decayed"] and decision.evidence["decay"]["p_value"] < 0.05
    jobs = JobSubmissionClient(ray_session)
    assert decision.job_id in {j.submission_id for j in jobs.list_jobs()}
    assert str(jobs.get_job_status(decision.job_id).value) == "SUCCEEDED"
    registered = next(s for s in decision.timeline if s["step"] == "challenger_registered")
    gate = registered["gate"]
    assert gate["passed"] and gate["champion_version"] == 1 and gate["candidate"] < gate["champion"]
    challenger = client.registry.resolve("scen@challenger")
    assert challenger.version == decision.challenger_version == 2 and challenger.parent_version == 1

    state, _ = _serve_until(client, {}, {"completed"})  # the guard: shadow -> canary -> full
    stages = [e.get("stage") for e in state.details["history"] if e["action"] == "advance"]
    assert stages == ["canary", "gradual"] and state.stage == "full"
    tick(client, load_loop_config(loop_yaml), wait=True)  # the next tick sees the promotion, then checks again
    decisions = client.loop.list("scen")
    assert decisions[1].id == decision.id and decisions[1].status == "promoted"
    assert client.registry.resolve("scen@champion").version == 2
    assert [s["step"] for s in decisions[1].timeline][:4] == ["decided", "job_submitted", "job_started",
                                                              "challenger_registered"]

    # the world turns back (two more days of the original concept): the new champion decays, the loop retrains
    # by itself, and this time the challenger is broken in serving
    from mlplatform.datasets.scenarios import ScenarioConfig, make_scenario

    back = make_scenario(None, ScenarioConfig(seed=4, window_rows=800, stationary_windows=6, label_delay=0,
                                              label_missing=0.0))
    for window in back.windows[4:]:
        window.frame.to_parquet(history / f"{window.index + 1:03d}_day.parquet", index=False)
    tick(client, load_loop_config(loop_yaml), wait=True)
    latest = client.loop.list("scen")[0]
    assert latest.status == "rolling_out", latest
    broken = latest.challenger_version
    state, answered = _serve_until(client, {broken: 1.0}, {"rolled_back"})
    assert state.stage == "shadow" and "error rate" in state.details["last_rollback"]["reason"]
    assert answered == {2}  # the champion answered every request, before and after the rollback
    tick(client, load_loop_config(loop_yaml), wait=True)
    assert client.loop.get(latest.id).status == "rolled_back"
    assert client.registry.resolve("scen@champion").version == 2
    client.close()
