"""What a search found, read back from the store (SPEC S3.6, S3.7): the leaderboard across patterns, warm-start
configs for a later search, and ``--register-best``.

Selection uses the validation metric the trials reported; the reported score of the registered model comes from
the untouched test split, after retraining the winning config on train + validation.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlplatform.artifacts.model_format import ModelManifest
from mlplatform.config.train import ModelSection
from mlplatform.config.tune import BASELINE_PATTERN, tune_config_from_dict
from mlplatform.entities import RunKind, RunStatus
from mlplatform.errors import GateFailed, InvalidInput, NotFound
from mlplatform.features.schema import schema_to_json
from mlplatform.features.transform import TransformConfig
from mlplatform.learning.data import Splits
from mlplatform.predictor import Predictor
from mlplatform.tuning.trial import fit_sklearn_trial, prepare_data, torch_setup, train_epoch, train_matrix

if TYPE_CHECKING:  # annotations only: the SQL store loads where a client is opened
    from mlplatform.client import Client

log = logging.getLogger(__name__)
_RANKED = {RunStatus.COMPLETED.value, RunStatus.STOPPED.value}  # early-stopped trials still have a score


def _score(values: list[tuple[int, float]], mode: str) -> tuple[float, int] | None:
    """(best value, its step) over a trial's reported steps; ties go to the earliest step."""
    if not values:
        return None
    pick = max if mode == "max" else min
    best = pick(v for _, v in values)
    return best, min(step for step, v in values if v == best)


def config_history(run: Any) -> list[dict[str, Any]]:
    """A trial's configs with the first step each ran from (PBT mutates them; see the callback)."""
    return list(run.tags.get("config_history") or [{"from_step": 1, "config": run.config}])


def config_at(history: list[dict[str, Any]], step: int | None) -> dict[str, Any]:
    """The config in effect at ``step`` (1-based); the last one when no step is given."""
    current = history[0]["config"]
    for entry in history:
        if step is not None and entry["from_step"] > step:
            break
        current = entry["config"]
    return current


def find_sweep(client: Client, experiment: str) -> Any:
    """A sweep by run id, or the newest sweep whose Tune experiment name is ``experiment``."""
    try:
        uuid.UUID(experiment)
        run = client.runs.get_run(experiment)
    except ValueError:
        matches = [r for r in client.runs.list_runs(kind=RunKind.TUNE.value, limit=1000)
                   if r.tags.get("tune_name") == experiment or r.name == experiment]
        if not matches:
            raise NotFound(f"no search named {experiment!r}; give its sweep run id", field="experiment") from None
        run = matches[0]
    if run.kind != RunKind.TUNE.value:
        raise InvalidInput(f"run {run.id} is a {run.kind} run, not a search", field="experiment")
    return run


def leaderboard(client: Client, sweep_run_id: str) -> dict[str, Any]:
    sweep = client.runs.get_run(sweep_run_id)
    metric, mode = sweep.tags["metric"], sweep.tags["mode"]
    trials = client.runs.list_runs(parent_run_id=sweep_run_id, kind=RunKind.TUNE_TRIAL.value, limit=100_000)
    rows: list[dict[str, Any]] = []
    for run in trials:
        values = [(m.step, m.value) for m in client.runs.get_metrics(run.id, metric)]
        scored = _score(values, mode)
        history = config_history(run)
        # The config that produced the best score (a PBT trial's may differ from the one it started with).
        rows.append({"run_id": run.id, "trial_id": run.tags.get("trial_id"), "pattern": run.config.get("pattern"),
                     "status": run.status, "score": scored[0] if scored else None,
                     "best_step": scored[1] if scored else None, "steps": len(values),
                     "config": config_at(history, scored[1] if scored else None), "config_history": history,
                     "error": run.error})
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


def warm_start_configs(client: Client, sources: list[str], dataset_version: str, *, top_k: int = 3
                       ) -> list[dict[str, Any]]:
    """The best ``top_k`` configs (baseline excluded) of earlier searches on the same dataset version. A source
    is a sweep run id or a store experiment name (all its searches)."""
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


def register_best_trial(client: Client, sweep_run_id: str, *, force: bool = False, prepared: Any = None
                        ) -> dict[str, Any]:
    """Retrain the best config on train + validation, score it on the untouched test split, pass the promotion
    gate and register it (challenger when a champion exists), through the one gate-and-register ending
    that ``mlplatform train`` uses."""
    # heavy: scikit-learn loads only when an estimator is built or scored
    from mlplatform.learning.metrics import evaluate_predictions
    from mlplatform.learning.promotion import Candidate, evaluate_gate_and_register

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
            _retrain_torch(best["config_history"], data, full, labels, transform_config, artifact, lineage,
                           epochs=int(best["best_step"] or 1))
        else:
            fit_sklearn_trial(trial, full, prepared.test, data, transform_config, out_dir=artifact)

            manifest = ModelManifest.read(artifact)
            manifest.lineage = {**manifest.lineage, **lineage}
            manifest.write(artifact)
        predictor = Predictor.from_dir(artifact)
        test_metrics = evaluate_predictions(predictor, prepared.test, data.target)
        client.runs.log_metrics(run.id, test_metrics, split="test")
        splits = Splits(full, data.validation, prepared.test, str(prepared.split_summary.get("method")), data.seed)
        candidate = Candidate(run_id=run.id, artifact=artifact, predictor=predictor, test=prepared.test,
                              test_metrics=test_metrics, lineage=lineage, dataset_version=prepared.dataset_version)
        promotion = evaluate_gate_and_register(train_config, client, candidate, splits=splits,
                                               features=data.features, work=work, force=force,
                                               subject=f"the best trial of search {sweep_run_id}")
    except GateFailed:
        raise
    except Exception as exc:
        client.runs.end_run(run.id, RunStatus.FAILED, error=str(exc)[:2000])
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    client.runs.end_run(run.id, RunStatus.COMPLETED)
    client.runs.update_tags(sweep_run_id, {"registered": promotion.model_version, "registered_run_id": run.id})
    return {"run_id": run.id, "model_version": promotion.model_version, "alias": promotion.alias,
            "pattern": trial["pattern"], "validation_score": best["score"], "test_metrics": test_metrics,
            "gate": promotion.gate}


def _retrain_torch(history: list[dict[str, Any]], data: Any, full: pd.DataFrame, labels: np.ndarray,
                   transform_config: Any, artifact: Path, lineage: dict[str, Any], *, epochs: int) -> None:
    """The trial's loop on train + validation for the epochs that reached the best validation score, replaying
    its recorded schedule: at the epoch a PBT mutation took effect, the new lr and weight decay are set on the
    optimizer (as the trial did when it restored under the new config) and a new batch size batches the rest."""
    # heavy: torch takes seconds to import; only the torch path pays for it
    import torch

    torch.set_num_threads(1)
    trial = history[0]["config"]
    setup = torch_setup(trial, data, full, labels, transform_config)
    rows = train_matrix(setup, full, labels)
    for epoch in range(epochs):
        current = config_at(history, epoch + 1)
        if current is not trial:  # a mutation takes effect from this epoch
            trial = current
            training = trial["training"]
            setup.loop = dataclasses.replace(setup.loop, batch_size=int(training.get("batch_size",
                                                                                      setup.loop.batch_size)))
            for group in setup.optimizer.param_groups:
                group["lr"] = float(training.get("lr", group["lr"]))
                group["weight_decay"] = float(training.get("weight_decay", group["weight_decay"]))
        train_epoch(setup, rows, epoch)
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
        lineage={**lineage, "epochs": epochs, "transform_sha256": setup.transform.fingerprint,
                 "config_history": history},
    ).write(artifact)
