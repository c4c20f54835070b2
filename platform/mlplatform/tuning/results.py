"""What a search found, read back from the store (SPEC S3.6, S3.7): the leaderboard across patterns, warm-start
configs for a later search, and ``--register-best``.

Selection uses the validation metric the trials reported; the reported score of the registered model comes from
the untouched test split, after retraining the winning config on train + validation.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplatform.config.tune import BASELINE_PATTERN, tune_config_from_dict
from mlplatform.entities import RunKind, RunStatus
from mlplatform.errors import GateFailed, NotFound

log = logging.getLogger(__name__)
_RANKED = {RunStatus.COMPLETED.value, RunStatus.STOPPED.value}  # early-stopped trials still have a score


def _score(values: list[tuple[int, float]], mode: str) -> tuple[float, int] | None:
    """(best value, its step) over a trial's reported steps; ties go to the earliest step."""
    if not values:
        return None
    pick = max if mode == "max" else min
    best = pick(v for _, v in values)
    return best, min(step for step, v in values if v == best)


def leaderboard(client: Any, sweep_run_id: str) -> dict[str, Any]:
    sweep = client.runs.get_run(sweep_run_id)
    metric, mode = sweep.tags["metric"], sweep.tags["mode"]
    trials = client.runs.list_runs(parent_run_id=sweep_run_id, kind=RunKind.TUNE_TRIAL.value, limit=100_000)
    rows = []
    for run in trials:
        values = [(m.step, m.value) for m in client.runs.get_metrics(run.id, metric)]
        scored = _score(values, mode)
        rows.append({"run_id": run.id, "trial_id": run.tags.get("trial_id"), "pattern": run.config.get("pattern"),
                     "status": run.status, "score": scored[0] if scored else None,
                     "best_step": scored[1] if scored else None, "steps": len(values),
                     "config": run.config, "error": run.error})
    sign = -1.0 if mode == "max" else 1.0
    ranked = sorted((r for r in rows if r["status"] in _RANKED and r["score"] is not None),
                    key=lambda r: (sign * r["score"], r["run_id"]))
    for rank, row in enumerate(ranked, start=1):
        row["rank"] = rank
    per_pattern: dict[str, dict[str, Any]] = {}
    for row in ranked:
        per_pattern.setdefault(row["pattern"], row)
    baseline = per_pattern.get(BASELINE_PATTERN, {}).get("score")
    for row in rows:
        if row["score"] is not None and baseline is not None:
            row["lift"] = (row["score"] - baseline) * (-sign)
    best = next((r for r in ranked if r["pattern"] != BASELINE_PATTERN), None)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return {"sweep_run_id": sweep_run_id, "metric": metric, "mode": mode, "split_id": sweep.tags.get("split_id"),
            "status": sweep.status, "counts": counts, "baseline": baseline, "overall_best": best,
            "per_pattern": sorted(per_pattern.values(), key=lambda r: r["rank"]),
            "trials": sorted(rows, key=lambda r: (r.get("rank") or 10**9, r["run_id"]))}


def warm_start_configs(client: Any, sources: list[str], dataset_version: str, *, top_k: int = 3
                       ) -> list[dict[str, Any]]:
    """The best ``top_k`` configs (baseline excluded) of earlier searches on the same dataset version. A source
    is a sweep run id or a store experiment name (all its searches)."""
    from mlplatform.tuning.runner import find_sweep

    sweeps = []
    for source in sources:
        try:
            sweeps.append(find_sweep(client, source))
        except NotFound:
            sweeps.extend(client.runs.list_runs(experiment=source, kind=RunKind.TUNE.value, limit=1000))
    configs: list[dict[str, Any]] = []
    for sweep in sweeps:
        if sweep.tags.get("dataset_version") != dataset_version:
            log.info("warm start: skipping search %s (another dataset version)", sweep.id)
            continue
        board = leaderboard(client, sweep.id)
        picked = [r["config"] for r in board["trials"] if r.get("rank") and r["pattern"] != BASELINE_PATTERN]
        for config in picked[:top_k]:
            if config not in configs:
                configs.append(config)
    if sources and not configs:
        raise NotFound(f"no completed trials on this dataset version in {', '.join(sources)}",
                       field="warm_start_from")
    return configs


def register_best_trial(client: Any, sweep_run_id: str, *, force: bool = False, prepared: Any = None
                        ) -> dict[str, Any]:
    """Retrain the best config on train + validation, score it on the untouched test split, pass the promotion
    gate and register it (challenger when a champion exists), through the training pipeline's gate and
    registration code."""
    from mlplatform.config.train import ModelSection
    from mlplatform.features.transform import TransformConfig
    from mlplatform.predictor import Predictor
    from mlplatform.training import pipeline
    from mlplatform.training.data import Splits
    from mlplatform.training.metrics import evaluate_predictions
    from mlplatform.tuning.trial import prepare_data

    sweep = client.runs.get_run(sweep_run_id)
    config = tune_config_from_dict(sweep.config["tune_config"], source=f"run {sweep_run_id}")
    prepared = prepared or prepare_data(config)
    board = leaderboard(client, sweep_run_id)
    best = board["overall_best"]
    if best is None:
        raise NotFound(f"search {sweep_run_id} has no scored trial to register", field="register_best")
    trial = best["config"]
    data = prepared.trial_data
    train_config = config.train_config().model_copy(update={"model": ModelSection(family=trial["family"],
                                                                                  params=trial["params"])})
    run = client.runs.start_run(
        config.experiment, RunKind.TRAIN, parent_run_id=sweep_run_id, seed=config.seed,
        name=f"{config.model_name}-{trial['pattern']}-best",
        config={"train_config": train_config.model_dump(mode="json"), "tune_trial": trial},
        tags={"source": "tune --register-best", "sweep_run_id": sweep_run_id, "trial_run_id": best["run_id"],
              "split_id": data.split_id, "family": trial["family"]})
    full = pd.concat([data.train, data.validation])
    labels = np.concatenate([data.labels["train"], data.labels["validation"]])
    lineage = {"run_id": run.id, "seed": config.seed, "split": prepared.split_summary,
               "dataset": {"name": prepared.dataset_name, "version": prepared.dataset_version,
                           "uri": prepared.dataset_uri},
               "sweep_run_id": sweep_run_id, "trial_run_id": best["run_id"], "tune_config": trial,
               "validation_score": {board["metric"]: best["score"]}, "trained_on": "train+validation"}
    work = Path(tempfile.mkdtemp(prefix="mlplatform-tune-best-"))
    try:
        artifact = work / "model"
        transform_config = TransformConfig(**trial["preprocessing"])
        if config.framework_of(trial["pattern"]) == "torch":
            _retrain_torch(trial, data, full, labels, transform_config, artifact, lineage,
                           epochs=int(best["best_step"] or 1))
        else:
            from mlplatform.tuning.trial import fit_sklearn_trial

            fit_sklearn_trial(trial, full, prepared.test, data, transform_config, out_dir=artifact)
            from mlplatform.artifacts.model_format import ModelManifest

            manifest = ModelManifest.read(artifact)
            manifest.lineage = {**manifest.lineage, **lineage}
            manifest.write(artifact)
        predictor = Predictor.from_dir(artifact)
        outcome = pipeline.TrainOutcome(run_id=run.id, status=RunStatus.RUNNING.value)
        outcome.test_metrics = evaluate_predictions(predictor, prepared.test, data.target)
        client.runs.log_metrics(run.id, outcome.test_metrics, split="test")
        splits = Splits(full, data.validation, prepared.test, str(prepared.split_summary.get("method")), data.seed)
        outcome.baselines = pipeline._baselines(train_config, client, run, splits, data.features, work)
        gate = pipeline._gate(train_config, client, outcome, predictor, prepared.test, force)
        outcome.gate = gate.to_dict()
        client.runs.update_tags(run.id, {"gate": outcome.gate})
        if not gate.passed:
            reason = "; ".join(gate.reasons)
            client.runs.end_run(run.id, RunStatus.REJECTED, error=f"promotion gate failed: {reason}")
            raise GateFailed(f"promotion gate failed for the best trial of search {sweep_run_id}: {reason} (use "
                             "--force to register anyway)", field="gate", run_id=run.id, reasons=gate.reasons)
        pipeline._register(train_config, client, run, outcome, artifact, lineage | {"gate": outcome.gate},
                           prepared.dataset_version, len(prepared.test), {})
    except GateFailed:
        raise
    except Exception as exc:
        client.runs.end_run(run.id, RunStatus.FAILED, error=str(exc)[:2000])
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    client.runs.end_run(run.id, RunStatus.COMPLETED)
    client.runs.update_tags(sweep_run_id, {"registered": outcome.model_version, "registered_run_id": run.id})
    return {"run_id": run.id, "model_version": outcome.model_version, "alias": outcome.alias,
            "pattern": trial["pattern"], "validation_score": best["score"], "test_metrics": outcome.test_metrics,
            "gate": outcome.gate}


def _retrain_torch(trial: dict[str, Any], data: Any, full: pd.DataFrame, labels: np.ndarray, transform_config: Any,
                   artifact: Path, lineage: dict[str, Any], *, epochs: int) -> None:
    """The trial's loop on train + validation for the epochs that reached the best validation score."""
    import torch

    from mlplatform.artifacts.model_format import ModelManifest
    from mlplatform.features.schema import schema_to_json
    from mlplatform.tuning.trial import tensors, torch_setup, train_epoch

    torch.set_num_threads(1)
    setup = torch_setup(trial, data, full, labels, transform_config)
    dense, codes, y = tensors(setup, full, labels, data.task)
    for epoch in range(epochs):
        train_epoch(setup, dense, codes, y, data.seed, epoch)
    setup.model.eval()
    artifact.mkdir(parents=True)
    torch.save(setup.model.state_dict(), artifact / "model.pt")
    setup.transform.save(artifact)
    classes = data.classes
    ModelManifest(
        framework="torch", task=data.task, family=trial["family"], target=data.target, classes=classes,
        threshold=0.5 if classes is not None and len(classes) == 2 else None,
        input_schema=schema_to_json(setup.transform.schema), model_file="model.pt", model_params=setup.params,
        architecture=setup.model.architecture(), metrics={},
        lineage={**lineage, "epochs": epochs, "transform_sha256": setup.transform.fingerprint},
    ).write(artifact)
