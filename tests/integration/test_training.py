"""Distributed torch training on the shared local Ray: registration, checkpoints, failures, resume, warm start,
and the promotion gate through the CLI."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from mlplatform.errors import GateFailed, InvalidInput, MLPlatformError
from mlplatform.training import pipeline
from tests.integration._train_hooks import kill_worker

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _config(tmp_path: Path, name: str = "train.yaml", **overrides: Any) -> Path:
    config: dict[str, Any] = {
        "experiment": "test", "model_name": "churn", "seed": 7,
        "data": {"source": "synthetic_churn", "n_rows": 2000},
        "model": {"family": "mlp", "params": {"hidden": [16], "dropout": 0.0, "embedding_dim": 2}},
        "training": {"epochs": 4, "batch_size": 128, "lr": 0.02, "early_stopping": {"patience": 5}},
        "scaling": {"num_workers": 2, "use_gpu": False},
        "checkpoint": {"num_to_keep": 2, "metric": "val_loss"},
    }
    for key, value in overrides.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def _main_run(client: Any, **filters: Any) -> Any:
    """The newest training run that is not a baseline child run."""
    return next(r for r in client.runs.list_runs(experiment="test", **filters) if r.parent_run_id is None)


def _epochs(client: Any, run_id: str, key: str = "val_loss") -> list[int]:
    return [m.step for m in client.runs.get_metrics(run_id, key)]


def test_two_workers_register_a_matching_model_keep_k_best_and_warm_start(
        ray_session: None, client: Any, tmp_path: Path) -> None:
    cold = pipeline.train_from_file(_config(tmp_path), client=client)

    assert (cold.status, cold.model_version, cold.alias, cold.epochs) == ("completed", "churn:1", "champion", 4)
    assert _epochs(client, cold.run_id) == [0, 1, 2, 3]  # streamed per epoch by the driver
    assert cold.gate["passed"] and cold.test_metrics["roc_auc"] > cold.baselines["most_frequent"]["roc_auc"] + 0.01
    version = client.registry.resolve("churn:1")
    assert version.framework == "torch" and version.metrics == pytest.approx(cold.test_metrics)
    assert version.lineage["run_id"] == cold.run_id and version.lineage["dataset"]["version"]
    assert version.lineage["split"] == {"method": "stratified", "seed": 7, "n_train": 1200, "n_validation": 400,
                                        "n_test": 400}
    assert {e.metric for e in client.registry.evaluations("churn")} >= {"roc_auc", "accuracy"}
    baselines = client.runs.list_runs(parent_run_id=cold.run_id)
    assert {r.tags["family"] for r in baselines} == {"most_frequent", "stratified"}
    assert all(r.tags["baseline"] for r in baselines)

    # K = 2 best by val_loss (plus the latest) survive on storage; the registered weights are the best epoch's.
    run = client.runs.get_run(cold.run_id)
    history = {m.step: m.value for m in client.runs.get_metrics(cold.run_id, "val_loss")}
    best_two = sorted(history, key=history.get)[:2]
    kept = run.tags["kept_checkpoints"]
    assert [k["epoch"] for k in kept] == best_two and cold.best_epoch == best_two[0]
    on_disk = sorted(p.name for p in Path(cold.storage_path, cold.run_id).glob("checkpoint_*"))
    assert 2 <= len(on_disk) <= 3
    assert {Path(k["path"]).name for k in kept} <= set(on_disk)
    state = torch.load(Path(kept[0]["path"]) / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == cold.best_epoch and {"optimizer", "scheduler", "rng", "history"} <= set(state)

    # The registered Predictor reproduces the best checkpoint's network on new rows.
    from mlplatform.datasets.synthetic import make_churn
    from mlplatform.models.mlp import MLPConfig, TabularMLP

    predictor = client.registry.load("churn@champion")
    rows = make_churn(50, seed=99)
    arch = predictor.manifest.architecture
    net = TabularMLP(arch["n_inputs"], arch["n_outputs"], MLPConfig(**arch["config"]), arch["cardinalities"])
    net.load_state_dict(state["model"])
    net.eval()
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(predictor.transform.transform(rows)),
                                     torch.from_numpy(predictor.transform.category_codes(rows))).double(), 1)
    np.testing.assert_allclose(predictor.predict(rows).probabilities, expected.numpy(), atol=1e-6)

    # Warm start: same data and seed, one epoch; starts from the champion's weights and records it as parent.
    warm = pipeline.train_from_file(_config(tmp_path, "warm.yaml", training={"epochs": 1}), client=client,
                                    warm_start="churn@champion", force=True)
    assert warm.parent == "churn:1" and warm.model_version == "churn:2" and warm.alias == "challenger"
    assert client.registry.resolve("churn:2").parent_version == 1
    first_warm = client.runs.get_metrics(warm.run_id, "val_loss")[0].value
    first_cold = client.runs.get_metrics(cold.run_id, "val_loss")[0].value
    assert first_warm < first_cold

    # An incompatible input schema is refused before any training starts.
    narrow = _config(tmp_path, "narrow.yaml", data={"features": ["tenure_months", "monthly_charges", "plan"]})
    with pytest.raises(InvalidInput, match="missing feature") as info:
        pipeline.train_from_file(narrow, client=client, warm_start="churn:1")
    assert info.value.field == "warm_start"
    refused = _main_run(client, status="failed")
    assert client.runs.get_metrics(refused.id) == []  # no epoch ever ran


def test_killed_worker_is_replaced_then_a_stopped_run_resumes(ray_session: None, client: Any,
                                                              tmp_path: Path) -> None:
    # One failure is allowed: the kill at epoch 1 is recovered, the kill at epoch 3 stops the run.
    hook = functools.partial(kill_worker, marker_dir=str(tmp_path), epochs=(1, 3))
    with pytest.raises(MLPlatformError, match="--resume"):
        pipeline.train_from_file(_config(tmp_path, failure={"max_failures": 1}), client=client, epoch_hook=hook)
    assert (tmp_path / "killed-at-1").exists() and (tmp_path / "killed-at-3").exists()
    stopped = _main_run(client)
    assert stopped.status == "failed" and "--resume" in stopped.error
    # The replaced worker group continued after epoch 0's checkpoint, not from scratch.
    assert stopped.tags["restore_events"] == [{"from_epoch": 1}]
    assert _epochs(client, stopped.id) == [0, 1, 2]  # each epoch once, the re-run after the kill included

    outcome = pipeline.resume(stopped.id, client=client)
    assert outcome.run_id == stopped.id and outcome.status == "completed" and outcome.model_version == "churn:1"
    assert outcome.epochs == 4  # history 0-2 from before the stop, 3 after: continued, not restarted
    run = client.runs.get_run(stopped.id)
    assert run.tags["restore_events"] == [{"from_epoch": 1}, {"from_epoch": 3}]
    assert [m.value for m in client.runs.get_metrics(stopped.id, "restores")] == [1.0, 2.0]

    # Killed twice and resumed, it trained exactly what an uninterrupted run of the same config trains: every
    # epoch once, with the same metrics (restored optimizer/scheduler/progress, per-epoch seeds, same shards).
    reference = pipeline.train_from_file(_config(tmp_path, "reference.yaml", register_model=False), client=client)
    for key in ("train_loss", "val_loss", "val_roc_auc", "lr"):
        resumed = [(m.step, m.value) for m in client.runs.get_metrics(stopped.id, key)]
        uninterrupted = [(m.step, m.value) for m in client.runs.get_metrics(reference.run_id, key)]
        assert [s for s, _ in resumed] == [s for s, _ in uninterrupted] == [0, 1, 2, 3], key
        assert [v for _, v in resumed] == pytest.approx([v for _, v in uninterrupted], rel=1e-5, abs=1e-6), key


def test_gate_failure_exits_3_through_the_cli(client: Any, tmp_path: Path, isolated_env: Path) -> None:
    path = _config(tmp_path, model={"family": "logistic", "params": {}}, gate={"floor": 0.999})
    env = {**os.environ, "MLPLATFORM_HOME": str(isolated_env)}
    done = subprocess.run([sys.executable, "-m", "mlplatform.cli.main", "train", "--config", str(path), "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 3, done.stderr
    assert "promotion gate failed" in done.stderr and "floor 0.999" in done.stderr
    run = _main_run(client)
    assert run.status == "rejected" and "floor" in run.error
    assert client.registry.list_models() == []

    forced = pipeline.train_from_file(path, client=client, force=True)
    assert forced.model_version == "churn:1" and forced.gate["forced"] is True and forced.gate["reasons"]


def test_gate_refuses_a_candidate_worse_than_the_champion(client: Any, tmp_path: Path) -> None:
    strong = _config(tmp_path, "strong.yaml", model={"family": "logistic", "params": {}})
    assert pipeline.train_from_file(strong, client=client).alias == "champion"
    weak = _config(tmp_path, "weak.yaml", model={"family": "logistic", "params": {"C": 1e-5}},
                   gate={"min_lift": 0.0})
    with pytest.raises(GateFailed, match="worse than the champion"):
        pipeline.train_from_file(weak, client=client)


def test_epoch_events_the_store_refuses_are_retried_not_dropped(ray_session: None, client: Any) -> None:
    """The driver's relay drainer keeps an event the store refuses and retries it; nothing is lost or doubled.
    The refusal is real: the run does not exist yet, so the SQL store raises NotFound until it is created."""
    import ray

    from mlplatform.training.pipeline import _log_epoch
    from mlplatform.training.torch_train import EventDrainer, make_relay

    run_id = "00000000-0000-4000-8000-000000000017"
    relay = make_relay()
    drainer = EventDrainer(relay, lambda item: _log_epoch(client, run_id, item), interval=60.0)
    try:
        ray.get([relay.put.remote({"event": "epoch", "epoch": e, "train_loss": 1.0 / (e + 1)}) for e in range(3)])
        drainer.drain_once()  # refused: kept in order
        assert [item["epoch"] for item in drainer.pending] == [0, 1, 2]
        client.runs.start_run("test", "train", run_id=run_id)
        ray.get(relay.put.remote({"event": "epoch", "epoch": 3, "train_loss": 0.25}))
        drainer.stop()
    finally:
        ray.kill(relay)
    assert drainer.pending == []
    assert [(m.step, m.value) for m in client.runs.get_metrics(run_id, "train_loss")] == [
        (0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3)), (3, 0.25)]
