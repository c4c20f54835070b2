"""A seeded store for the console tests: a sweep with trials and a baseline, a trained run with per-epoch curves and
checkpoints, three registered versions with lineage and alias history, an active rollout, drift checks and alerts.

Written through the store's public API (the same calls training, registration, rollout and monitoring make), so
the console shows what the platform would have written. Names carrying ``<script>`` test escaping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

XSS = '<script>alert("x")</script>'
MODEL = "churn"
DATASET_HASH = "d" * 16 + "0123456789abcdef" * 3
COMMIT = "c0ffee1234567890abcdef1234567890abcdef12"


@dataclass
class Scenario:
    train_run_id: str
    sweep_run_id: str
    trial_ids: list[str]
    dataset_id: str
    trial_accuracies: list[float]


def _version(client: Any, name: str, run_id: str | None, accuracy: float, parent: tuple[str, int] | None,
             actor: str) -> Any:
    return client.registry.create_version(
        name, framework="sklearn", task="classification", artifact_uri=f"file:///tmp/none/{name}",
        artifact_sha256="a" * 64, files={}, input_schema=[{"name": "tenure", "dtype": "float"},
                                                          {"name": XSS, "dtype": "float"}],
        metrics={"accuracy": accuracy, "f1": accuracy - 0.05},
        lineage={"datasets": [{"name": "churn_train", "version": DATASET_HASH}], "git": {"commit": COMMIT},
                 "config": {"model": {"family": "mlp", "hidden": 64}, "epochs": 5}, "seed": 7},
        source_run_id=run_id, parent=parent, actor=actor)


def seed(client: Any) -> Scenario:
    from mlplatform.rollouts import control

    dataset = client.datasets.register(
        "churn_train", DATASET_HASH, uri="file:///data/churn.parquet",
        schema={"tenure": "float", XSS: "float"}, row_count=8000,
        profile={"columns": {"tenure": {"mean": 12.5, "missing_rate": 0.0}, XSS: {"mean": 1.0}}})
    runs = client.runs
    sweep = runs.start_run("churn-exp", "tune", name="sweep-churn", config={"metric": "accuracy"})
    accuracies = [0.71, 0.83, 0.77]
    trials = []
    for i, acc in enumerate(accuracies):
        trial = runs.start_run("churn-exp", "tune_trial", name=f"trial-{i}", parent_run_id=sweep.id,
                               config={"lr": 0.01 * (i + 1)})
        runs.log_metrics(trial.id, {"accuracy": acc}, step=3)
        runs.link_dataset(trial.id, dataset.id)
        runs.end_run(trial.id)
        trials.append(trial.id)
    baseline = runs.start_run("churn-exp", "train", name="baseline-majority", parent_run_id=sweep.id,
                              tags={"baseline": True, "family": "majority"})
    runs.log_metrics(baseline.id, {"accuracy": 0.61})
    runs.end_run(baseline.id)
    train = runs.start_run("churn-exp", "train", name=f"train-{XSS}", config={"epochs": 5, "lr": 0.01})
    runs.link_dataset(train.id, dataset.id)
    for epoch in range(1, 6):
        runs.log_metrics(train.id, [{"key": "loss", "value": 1.0 / epoch, "split": "train"},
                                    {"key": "loss", "value": 1.2 / epoch, "split": "val"},
                                    {"key": "accuracy", "value": 0.5 + 0.07 * epoch, "split": "val"}], step=epoch)
    runs.update_tags(train.id, {"best_checkpoint": "/ckpt/epoch-5",
                                "kept_checkpoints": [{"epoch": 4, "path": "/ckpt/epoch-4", "val_loss": 0.3},
                                                     {"epoch": 5, "path": "/ckpt/epoch-5", "val_loss": 0.24}],
                                "validation": {"level": "ERROR", "against": "the declared schema", "forced": True,
                                               "rows_dropped": 40, "errors": [
                                                   "age: 40 value(s) refused (wrong_type): expected float, got 'x'"]}})
    runs.end_run(train.id)

    _version(client, MODEL, trials[1], 0.83, None, "alice")
    _version(client, MODEL, train.id, 0.85, (MODEL, 1), "bob")
    _version(client, MODEL, train.id, 0.86, (MODEL, 2), "carol")
    registry = client.registry
    registry.set_alias(MODEL, "champion", 1, actor="alice", reason="first champion")
    registry.set_alias(MODEL, "champion", 2, actor="bob", reason="beat v1 on holdout")
    registry.set_alias(MODEL, "challenger", 3, actor="carol", reason="retrained on drifted window")
    control.start(client, MODEL, actor="carol")
    control.advance(client, MODEL, actor="carol", reason="shadow looked fine")

    monitoring = client.monitoring
    for psi, acc, level in ((0.02, 0.84, "GREEN"), (0.31, 0.79, "RED")):
        monitoring.save_drift_report(MODEL, 2, n=1500, level=level, summary={
            "drift": {"features": {"tenure": {"psi": psi}, XSS: {"psi": psi / 2}}},
            "evaluation": {"metrics": {"accuracy": acc}}})
    monitoring.upsert_alert(type="data_drift", level="RED", source="monitor", message="tenure: PSI 0.31",
                            model_name=MODEL, version=2, metric="tenure", value=0.31, threshold=0.25)
    old, _ = monitoring.upsert_alert(type="data_drift", level="YELLOW", source="monitor", message=f"{XSS} drift",
                                     model_name=MODEL, version=1, metric=XSS, value=0.12, threshold=0.1)
    monitoring.resolve_alert(old.id)
    monitoring.upsert_alert(type="data_drift", level="ORANGE", source="monitor", message="escaped model name",
                            model_name=XSS, metric=XSS, value=0.2, threshold=0.15)
    return Scenario(train_run_id=train.id, sweep_run_id=sweep.id, trial_ids=trials, dataset_id=dataset.id,
                    trial_accuracies=accuracies)
