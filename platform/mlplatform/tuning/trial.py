"""What one trial runs: the training code of SPEC S2 on the shared, seeded split (SPEC S3.3).

sklearn patterns fit once through :func:`~mlplatform.learning.sklearn_fit.fit_sklearn_artifact` and report one
result. The torch pattern runs an epoch loop in the trial process (one CPU, one torch thread), reporting and
checkpointing every epoch, so ASHA can stop it and PBT can exploit its checkpoints. Trials never touch the store:
the driver's callback records what they report.

The prepared split is put into the Ray object store once (``tune.with_parameters``); the test split is never
shipped to trials.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplatform.artifacts.model_format import ModelManifest
from mlplatform.config.train import OptimSection, TrainConfig
from mlplatform.config.tune import BASELINE_PATTERN, TuneSearchConfig
from mlplatform.features.schema import schema_to_json
from mlplatform.features.transform import TabularTransform, TransformConfig
from mlplatform.learning.data import encode_labels, load_data, split_data
from mlplatform.models.factory import default_factory
from mlplatform.predictor import Predictor
from mlplatform.tuning.space import canonical_config, families

log = logging.getLogger(__name__)
FINISHED_KEY = "trial_finished"  # 1.0 on a trial's last report when it ended by itself (not stopped early)
EPOCH_KEY = "epoch"  # 1-based; reported by epoch-based (torch) trials only: ASHA's time attribute
CONTROL_KEYS = {FINISHED_KEY, EPOCH_KEY}
CHECKPOINT_FILE = "trial.pt"


@dataclass(frozen=True)
class TrialData:
    """Everything a trial needs, shipped once through the object store."""

    train: pd.DataFrame
    validation: pd.DataFrame
    labels: dict[str, np.ndarray]  # class index (or float target) per split: train, validation
    classes: list[Any] | None
    features: list[str]
    target: str
    task: str
    seed: int
    split_id: str
    families: dict[str, str]
    patience: int
    train_config: TrainConfig
    threads: int = 1  # per trial: its CPU share (OpenMP/BLAS/torch threads beyond it only contend)


@dataclass(frozen=True)
class PreparedData:
    trial_data: TrialData
    test: pd.DataFrame
    dataset_name: str
    dataset_version: str
    dataset_uri: str | None
    split_summary: dict[str, Any]


def split_id(train: pd.DataFrame, validation: pd.DataFrame, test: pd.DataFrame, seed: int) -> str:
    """A fingerprint of which rows went where (equal ids mean trials compared on the same rows)."""
    digest = hashlib.sha256(str(seed).encode())
    for part in (train, validation, test):
        digest.update(pd.util.hash_pandas_object(part.index, index=False).to_numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:16]


def prepare_data(config: TuneSearchConfig) -> PreparedData:
    """Load, split (seeded, recorded) and encode labels once on the driver, with the training code."""
    train_config = config.train_config()
    loaded = load_data(train_config)
    splits = split_data(loaded.frame, train_config)
    classes, labels = encode_labels(splits, config.data.target, config.task)
    sid = split_id(splits.train, splits.validation, splits.test, splits.seed)
    data = TrialData(train=splits.train, validation=splits.validation,
                     labels={"train": labels["train"], "validation": labels["validation"]}, classes=classes,
                     features=loaded.features, target=config.data.target, task=config.task, seed=config.seed,
                     split_id=sid, families=families(config), patience=config.early_stopping_patience,
                     train_config=train_config, threads=max(1, int(config.resources.cpu)))
    return PreparedData(trial_data=data, test=splits.test, dataset_name=loaded.name, dataset_version=loaded.version,
                        dataset_uri=loaded.uri, split_summary={**splits.summary(), "split_id": sid})


def run_trial(raw: dict[str, Any], data: TrialData) -> None:
    """The Tune function trainable (wrapped with ``tune.with_parameters(run_trial, data=...)``)."""
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    from ray import tune

    trial = canonical_config(raw, data.families)
    transform_config = TransformConfig(**trial["preprocessing"])
    if default_factory().get(trial["family"]).framework == "torch":
        _torch_trial(trial, data, transform_config)
        return
    # heavy: threadpoolctl (scikit-learn's) loads only in an sklearn trial
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=data.threads):
        metrics = score_sklearn_trial(trial, data, transform_config)
    tune.report({**metrics, FINISHED_KEY: 1.0})


def sklearn_params(trial: dict[str, Any]) -> dict[str, Any]:
    params = dict(trial["params"])
    if trial["rebalancing"] == "class_weight" and trial["family"] != BASELINE_PATTERN:
        params["class_weight"] = "balanced"
    return params


def score_sklearn_trial(trial: dict[str, Any], data: TrialData, transform_config: Any) -> dict[str, float]:
    """What :func:`fit_sklearn_artifact` does (transform fitted on train only, the factory's estimator, the
    Predictor's scoring) without writing an artifact: a trial's model is never registered, so it skips the
    serialisation and the monitoring reference profile."""
    # heavy: scikit-learn loads only when an estimator is built or scored
    from mlplatform.learning.metrics import evaluate_predictions

    params = sklearn_params(trial)
    transform = TabularTransform.fit(data.train, data.features, transform_config,
                                     target=data.train[data.target])
    estimator = default_factory().create(trial["family"], data.task, params, seed=data.seed)
    estimator.fit(transform.transform(data.train), data.train[data.target].to_numpy())
    classes = [c.item() if isinstance(c, np.generic) else c for c in estimator.classes_] \
        if data.task == "classification" else None
    manifest = ModelManifest(
        framework="sklearn", task=data.task, family=trial["family"], target=data.target, classes=classes,
        threshold=0.5 if classes is not None and len(classes) == 2 else None,
        input_schema=schema_to_json(transform.schema), model_file="model.skops", model_params=params, metrics={},
        lineage={})
    metrics = evaluate_predictions(Predictor(manifest, transform, estimator), data.validation, data.target)
    return {f"val_{k}": float(v) for k, v in metrics.items()}


def fit_sklearn_trial(trial: dict[str, Any], train: pd.DataFrame, evaluate_on: pd.DataFrame, data: TrialData,
                      transform_config: Any, out_dir: Path | None = None) -> dict[str, float]:
    """Fit through the training code; returns ``val_<metric>`` scored on ``evaluate_on``."""
    # heavy: scikit-learn loads only when an estimator is built or scored
    from mlplatform.learning.sklearn_fit import fit_sklearn_artifact

    with tempfile.TemporaryDirectory(prefix="mlplatform-trial-") as work:
        manifest = fit_sklearn_artifact(
            train, target=data.target, features=data.features, family=trial["family"],
            out_dir=out_dir or Path(work) / "model", task=data.task, params=sklearn_params(trial), seed=data.seed,
            eval_data=evaluate_on, transform_config=transform_config,
            lineage={"split_id": data.split_id, "tune_pattern": trial["pattern"]})
    return {f"val_{k}": float(v) for k, v in manifest.metrics.items()}


# -- torch -----------------------------------------------------------------------------------------------------
@dataclass
class TorchSetup:
    """A trial's model and optimizer built by the one training core, with the loop config they came from."""

    loop: Any  # TrainLoopConfig
    model: Any
    loss_fn: Any
    optimizer: Any
    scheduler: Any
    transform: Any
    params: dict[str, Any]

    @property
    def shape(self) -> dict[str, Any]:
        return self.loop.shape


def torch_setup(trial: dict[str, Any], data: TrialData, train: pd.DataFrame, labels: np.ndarray,
                transform_config: Any) -> TorchSetup:
    """Transform fitted on ``train`` only; model, loss, optimizer and scheduler from the training core (same
    defaults as ``mlplatform train``). A trial is one process, so its scaled learning rate is its lr."""
    # heavy: torch takes seconds to import; only the torch path pays for it
    from mlplatform.learning.torch_core import (
        EarlyStopping,
        TrainLoopConfig,
        build_loss_fn,
        build_model,
        build_optimizer,
        build_scheduler,
        model_shape,
    )

    opt = OptimSection.model_validate(trial["training"])
    transform = TabularTransform.fit(train, data.features, transform_config, target=labels)
    params = default_factory().resolve_params(trial["family"], data.task, trial["params"])
    shape = model_shape(transform, data.classes, params)
    if data.task == "classification":
        loss_name = "weighted_cross_entropy" if trial["rebalancing"] == "class_weight" else "cross_entropy"
    else:
        loss_name = "mse"
    loop = TrainLoopConfig.from_optim(
        opt, scaled_lr=opt.lr, task=data.task, seed=data.seed, family=trial["family"], params=params, shape=shape,
        loss=loss_name, loss_params={},
        class_counts=np.bincount(labels, minlength=len(data.classes)).tolist() if data.classes else None,
        early_stopping=EarlyStopping(metric="val_loss", mode="min", patience=data.patience),
        n_dense=transform.n_outputs, n_codes=len(shape["cardinalities"] or []), torch_threads=data.threads)
    model = build_model(loop)
    optimizer = build_optimizer(model.parameters(), loop)
    return TorchSetup(loop=loop, model=model, loss_fn=build_loss_fn(loop), optimizer=optimizer,
                      scheduler=build_scheduler(optimizer, loop), transform=transform, params=params)


def train_matrix(setup: TorchSetup, frame: pd.DataFrame, labels: np.ndarray) -> Any:
    """The rows as the training core batches them: float32 ``[dense | codes | target]``."""
    # heavy: torch takes seconds to import; only the torch path pays for it
    import torch

    from mlplatform.learning.torch_core import matrices, training_matrix

    dense, codes = matrices(setup.transform, frame, setup.loop.n_codes)
    return torch.from_numpy(training_matrix(dense, codes, labels))


def train_epoch(setup: TorchSetup, rows: Any, epoch: int) -> float:
    """One seeded pass of the training core's epoch (accumulation, AMP, clipping) on one process; steps the
    scheduler and returns the mean training loss."""
    # heavy: torch takes seconds to import; only the torch path pays for it
    import torch

    from mlplatform.learning.torch_core import epoch_seed, in_memory_batches, run_epoch, seed_everything

    seed = epoch_seed(setup.loop.seed, 0, epoch)
    seed_everything(seed)
    result = run_epoch(setup.model, in_memory_batches(rows, setup.loop.batch_size, seed, torch.device("cpu")),
                       setup.loss_fn, setup.optimizer, setup.loop, step=0)
    setup.scheduler.step()
    total, count = float(result.loss_sum[0]), float(result.loss_sum[1])
    return total / count if count else 0.0


def _torch_trial(trial: dict[str, Any], data: TrialData, transform_config: Any) -> None:
    # heavy: torch takes seconds to import; only the torch path pays for it
    import torch
    from ray import tune

    from mlplatform.learning.torch_core import Progress, matrices, validate

    torch.set_num_threads(data.threads)  # more threads than the trial's CPUs only contend with other trials
    setup = torch_setup(trial, data, data.train, data.labels["train"], transform_config)
    rows = train_matrix(setup, data.train, data.labels["train"])
    val_dense, val_codes = matrices(setup.transform, data.validation, setup.loop.n_codes)
    val = {"dense": val_dense, "codes": val_codes, "y": data.labels["validation"],
           "n_outputs": setup.shape["n_outputs"]}
    start, progress = 0, Progress()
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # resumed trial, or a PBT exploit of another trial's weights
        with checkpoint.as_directory() as directory:
            state = torch.load(os.path.join(directory, CHECKPOINT_FILE), map_location="cpu", weights_only=True)
        setup.model.load_state_dict(state["model"])
        setup.optimizer.load_state_dict(state["optimizer"])
        setup.scheduler.load_state_dict(state["scheduler"])
        for group in setup.optimizer.param_groups:  # PBT may have changed lr/weight decay in the config
            group["lr"], group["weight_decay"] = setup.loop.scaled_lr, setup.loop.weight_decay
        start, progress = int(state["epoch"]) + 1, Progress(state["best"], None, int(state["bad"]))
    rule = setup.loop.early_stopping
    for epoch in range(start, setup.loop.epochs):
        train_loss = train_epoch(setup, rows, epoch)
        metrics = {"train_loss": train_loss,
                   **validate(setup.model, setup.loss_fn, val, 0, 1, data.task, torch.device("cpu"))}
        stop = progress.update(metrics[rule.metric], epoch, rule)
        finished = epoch == setup.loop.epochs - 1 or stop
        with tempfile.TemporaryDirectory(prefix="mlplatform-trial-ckpt-") as directory:
            torch.save({"model": setup.model.state_dict(), "optimizer": setup.optimizer.state_dict(),
                        "scheduler": setup.scheduler.state_dict(), "epoch": epoch, "best": progress.best,
                        "bad": progress.bad_epochs}, os.path.join(directory, CHECKPOINT_FILE))
            tune.report({**metrics, EPOCH_KEY: epoch + 1, FINISHED_KEY: float(finished)},
                        checkpoint=tune.Checkpoint.from_directory(directory))
        if finished:
            return
