"""One training code path for ``mlplatform train`` and ``train_jobs/train.py`` (SPEC S2.7-S2.9, S2.12):
data -> split -> transform (train split only) -> train -> evaluate on test -> baselines -> gate -> register.

The driver is the only process that writes to the store: torch workers stream epoch metrics through a relay
actor (see :mod:`mlplatform.training.torch_train`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlplatform._internal.lineage import environment, git_state
from mlplatform._internal.ray_runtime import ensure_ray
from mlplatform.artifacts.model_format import ModelManifest
from mlplatform.config.train import TrainConfig, load_train_config, train_config_from_dict
from mlplatform.entities import RunKind, RunStatus
from mlplatform.errors import Conflict, GateFailed, IntegrityError, InvalidInput, NotFound
from mlplatform.features.datasets import version_dataset
from mlplatform.features.repo import join_views
from mlplatform.features.rows import RowRules, check_frame, infer_schema
from mlplatform.features.schema import schema_from_json, schema_to_json
from mlplatform.features.transform import TabularTransform
from mlplatform.features.validation import DataValidationFailed, Level, ValidationConfig, validate_frame
from mlplatform.learning.data import Splits, encode_labels, load_data, split_data
from mlplatform.learning.metrics import evaluate_predictions
from mlplatform.learning.promotion import Candidate, evaluate_gate_and_register
from mlplatform.models.factory import default_factory
from mlplatform.predictor import Predictor
from mlplatform.settings import get_settings
from mlplatform.training.rebalance import rebalance_splits
from mlplatform.training.stacking import resolve_members
from mlplatform.training.threshold import threshold_metric, tune_threshold
from mlplatform.training.warm_start import check_state_dict, load_warm_start

if TYPE_CHECKING:
    from mlplatform.client import Client

log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    run_id: str
    status: str
    model_version: str | None = None
    alias: str | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    epochs: int = 0
    restores: int = 0
    stopped_early: bool = False
    best_epoch: int | None = None
    parent: str | None = None
    storage_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_from_file(path: Path | str, *, client: Client | None = None, warm_start: str | None = None,
                    force: bool = False, epoch_hook: Any = None) -> TrainOutcome:
    return train(load_train_config(path), client=client, warm_start=warm_start, force=force,
                 epoch_hook=epoch_hook)


def resume(run_id: str, *, client: Client | None = None, force: bool = False, epoch_hook: Any = None) -> TrainOutcome:
    """Continue a stopped or failed torch run from its latest checkpoint, with its recorded config."""
    client = client or _client()
    run = client.runs.get_run(run_id)
    if run.kind != RunKind.TRAIN.value or "train_config" not in run.config:
        raise InvalidInput(f"run {run_id} is not a training run", field="run_id")
    if run.status == RunStatus.COMPLETED.value:
        raise Conflict(f"run {run_id} already completed; start a new run instead", field="run_id")
    config = train_config_from_dict(run.config["train_config"], source=f"run {run_id}")
    if config.framework != "torch":
        raise InvalidInput(f"run {run_id} trains {config.model.family!r}, which has no checkpoints to resume",
                           field="run_id")
    return train(config, client=client, force=force, resume_run_id=run_id, epoch_hook=epoch_hook)


def _client() -> Client:
    # heavy: the SQL store loads where a client is opened, not on import (CLI --help, Ray workers)
    from mlplatform.client import Client

    return Client()


def train(config: TrainConfig, *, client: Client | None = None, warm_start: str | None = None, force: bool = False,
          resume_run_id: str | None = None, epoch_hook: Any = None, parent: str | None = None,
          kind: RunKind = RunKind.TRAIN, parent_run_id: str | None = None, expect_data_version: str | None = None,
          tags: dict[str, Any] | None = None) -> TrainOutcome:
    """``parent``: the version this run retrains, recorded in lineage even when the family cannot warm start
    (a warm start's source always is the parent). ``kind``/``parent_run_id``/``tags`` let a replay record itself
    as a linked run; ``expect_data_version`` refuses data whose content hash differs, before any training."""
    client = client or _client()
    if warm_start is not None:
        config = train_config_from_dict(config.model_dump(mode="json") | {"warm_start": warm_start}, "--warm-start")
    # heavy: torch takes seconds to import; only the torch path pays for it
    from mlplatform.training.torch_train import storage_path_for

    if resume_run_id is not None:
        run = client.runs.get_run(resume_run_id)
        storage_path = run.tags.get("storage_path") or storage_path_for(client.artifacts.root_uri)
        client.runs.end_run(run.id, RunStatus.RUNNING)
    else:
        storage_path = storage_path_for(client.artifacts.root_uri)

        # Code and environment at training time, so a replay can say what changed since (SPEC S9.8).
        run = client.runs.start_run(
            config.experiment, kind, config={"train_config": config.model_dump(mode="json")},
            seed=config.seed, name=f"{config.model_name}-{config.model.family}", parent_run_id=parent_run_id,
            tags={"family": config.model.family, "framework": config.framework, "storage_path": storage_path,
                  "warm_start": config.warm_start, "force": force, "code": git_state(),
                  "environment": environment(), **(tags or {})})
    outcome = TrainOutcome(run_id=run.id, status=RunStatus.RUNNING.value, parent=parent, storage_path=storage_path)
    try:
        # Epochs heartbeat too, but a long sklearn fit or data preparation must not look like a crashed driver.
        with client.runs.keep_alive(run.id, client.settings.heartbeat_seconds):
            _run(config, client, run, outcome, storage_path, force, resume_run_id is not None, epoch_hook,
                 expect_data_version)
    except GateFailed:
        raise
    except KeyboardInterrupt:
        client.runs.end_run(run.id, RunStatus.STOPPED, error="interrupted")
        raise
    except Exception as exc:
        client.runs.end_run(run.id, RunStatus.FAILED, error=str(exc)[:2000])
        raise
    return outcome


def _run(config: TrainConfig, client: Client, run: Any, outcome: TrainOutcome, storage_path: str, force: bool,
         resuming: bool, epoch_hook: Any, expect_data_version: str | None = None) -> None:
    target, task = config.data.target, config.task
    data = load_data(config)
    feature_views = None
    if config.data.feature_views:  # training data from applied feature views (SPEC S4.9-S4.10)

        frame, columns, feature_views = join_views(data.frame, config.data.feature_views,
                                                   label_time=config.data.label_time,
                                                   full_feature_names=config.data.full_feature_names,
                                                   home=client.settings.home)
        data = replace(data, frame=frame, features=[*data.features, *(c for c in columns if c not in data.features)])
    if expect_data_version is not None and data.version != expect_data_version:
        raise IntegrityError(f"the data of {data.name} ({data.uri or config.data.source}) changed: recorded dataset "
                             f"version {expect_data_version[:12]}, now {data.version[:12]}", field="data")
    dataset = version_dataset(data.frame, data.name, client=client, uri=data.uri, digest=data.version)
    linked = [d for role, d in client.datasets.for_run(run.id) if role == "train"]
    if resuming and linked and linked[0].version != data.version:
        raise Conflict(f"the data changed since run {run.id} started (dataset version {linked[0].version[:12]} "
                       f"-> {data.version[:12]}); start a new run", field="data")
    client.runs.link_dataset(run.id, dataset.id, role="train")
    frame, validation = _validate_input(config, client, run, data, force)

    original = split_data(frame, config)
    # Resampling touches the training split only; validation and test keep the real class ratios.
    splits, rebalance = rebalance_splits(original, config, features=data.features)
    classes, labels = encode_labels(splits, target, task)
    if config.rebalance.tune_threshold and (classes is None or len(classes) != 2):
        raise InvalidInput(f"rebalance.tune_threshold needs a binary target; {target!r} has "
                           f"{len(classes or [])} classes", field="rebalance.tune_threshold")
    client.runs.update_tags(run.id, {"split": original.summary(), "rebalance": rebalance,
                                     "dataset": f"{data.name}@{data.version[:12]}",
                                     "effective_batch": config.training.batch_size * config.scaling.num_workers
                                     * config.training.accumulation_steps})

    model_params = dict(config.model.params)
    if config.model.family == "stacking":  # member version refs become (family, params) with their version named

        model_params["members"] = resolve_members(model_params.get("members") or [], client.registry)
    params = default_factory().resolve_params(config.model.family, task, model_params)
    if config.rebalance.strategy == "class_weight" and config.framework == "sklearn":
        params["class_weight"] = "balanced"
    warm = None
    if config.warm_start:
        warm = load_warm_start(client.registry, config.warm_start, family=config.model.family, task=task,
                               features=data.features, train=splits.train)
        if warm.manifest.classes != classes:
            raise InvalidInput(f"warm start from {warm.ref} refused: its classes {warm.manifest.classes} differ "
                               f"from this data's {classes}", field="warm_start")
        outcome.parent = warm.ref
    transform = warm.transform if warm else TabularTransform.fit(splits.train, data.features, config.features,
                                                                 config.data.declared_schema,
                                                                 target=splits.train[target])

    work = Path(tempfile.mkdtemp(prefix="mlplatform-train-"))
    try:
        artifact = work / "model"
        lineage = {"run_id": run.id, "seed": config.seed, "split": original.summary(), "rebalance": rebalance,
                   "dataset": {"name": data.name, "version": data.version, "uri": data.uri,
                               "rows": len(data.frame), "rows_used": len(frame), "split": original.summary(),
                               "columns": data.features, "validation": validation},
                   "transform_sha256": transform.fingerprint, "config": config.model_dump(mode="json"),
                   "parent": outcome.parent}
        if feature_views is not None:
            lineage["feature_views"] = feature_views
        if config.model.family == "stacking":
            lineage["members"] = [m.get("version") or m["family"] for m in params["members"]]
        if config.framework == "torch":
            _train_torch(config, client, run, outcome, storage_path, splits, labels, classes, params, transform,
                         warm, artifact, lineage, epoch_hook, reference=original.train)
        else:
            _train_sklearn(config, client, run, splits, params, data.features, artifact, lineage,
                           reference=original.train)

        if config.rebalance.tune_threshold:  # before any test metric, so test scores the tuned threshold
            _tune_threshold(config, client, run, artifact, splits.validation, lineage)
        predictor = Predictor.from_dir(artifact)
        # per-class metrics (the minority class's recall is what imbalance work is judged by) are logged with
        # the overall ones but kept out of outcome.test_metrics, which the gate and the CLI summary read
        tested = evaluate_predictions(predictor, splits.test, target, per_class=True)
        client.runs.log_metrics(run.id, tested, split="test")
        outcome.test_metrics = {k: v for k, v in tested.items() if "_class_" not in k}
        slice_metrics = _slice_metrics(predictor, splits.test, target, config.slices)
        for slice_name, values in slice_metrics.items():
            client.runs.log_metrics(run.id, values, split="test", slice=slice_name)
        candidate = Candidate(run_id=run.id, artifact=artifact, predictor=predictor, test=splits.test,
                              test_metrics=outcome.test_metrics, lineage=lineage, dataset_version=data.version,
                              parent=outcome.parent, slices=slice_metrics)
        try:
            promotion = evaluate_gate_and_register(config, client, candidate, splits=original, features=data.features,
                                                   work=work, force=force, subject=f"run {run.id}",
                                                   register=config.register_model)
        except GateFailed:
            outcome.status = RunStatus.REJECTED.value
            raise
        outcome.baselines, outcome.gate = promotion.baselines, promotion.gate
        outcome.model_version, outcome.alias = promotion.model_version, promotion.alias
    finally:
        shutil.rmtree(work, ignore_errors=True)
    client.runs.end_run(run.id, RunStatus.COMPLETED)
    outcome.status = RunStatus.COMPLETED.value


def _validate_input(config: TrainConfig, client: Client, run: Any, data: Any, force: bool) -> tuple[pd.DataFrame,
                                                                                               dict[str, Any]]:
    """The training data check (SPEC S4.7): the one validator against the champion's schema and training profile
    when warm-starting, else the declared (or inferred) schema. ERROR-level data is refused with the report;
    ``force`` trains on the rows the row validator accepts, and the override is recorded in lineage."""
    tokens = config.features.missing_tokens
    reference = None
    drift_level = "ERROR"
    if config.warm_start:
        champion = client.registry.resolve(config.warm_start)
        schema, against = schema_from_json(champion.input_schema), f"the schema and training data of {champion.ref}"
        reference = _training_profile(client, champion.lineage)
        drift_level = "WARNING"  # new data is why one retrains: a shift from the champion's data is reported only
    else:
        schema = infer_schema(data.frame, data.features, tokens, config.data.declared_schema)
        against = "the declared schema" if config.data.declared_schema else "the schema inferred from the data"
    report = validate_frame(data.frame, schema, reference, ValidationConfig(
        missing_tokens=tokens, unexpected_columns="ignore", drift_level=drift_level),
        dataset={"name": data.name, "version": data.version, "against": against})
    summary: dict[str, Any] = {"level": report.level.name, "against": against,
                               "errors": [f"{c.column or ''}: {c.message}" for c in report.errors][:20],
                               "warnings": len(report.warnings)}
    client.runs.update_tags(run.id, {"validation": summary})
    if report.level < Level.ERROR:
        return data.frame, summary
    if not force:
        message = f"the training data failed validation against {against} (use --force to train on the rows that " \
                  f"pass):\n{report.to_text()}"
        client.runs.end_run(run.id, RunStatus.REJECTED, error=message[:2000])
        raise DataValidationFailed(message, field=report.errors[0].column, run_id=run.id,
                                   errors=[c.to_dict() for c in report.errors])
    refused = check_frame(data.frame, schema, RowRules.of(tokens)).refused
    summary |= {"forced": True, "rows_dropped": int(refused.sum())}
    client.runs.update_tags(run.id, {"validation": summary})
    log.warning("training data failed validation; --force: training on %d of %d rows", int((~refused).sum()),
                len(refused))
    return data.frame[~refused], summary


def _training_profile(client: Client, lineage: dict[str, Any]) -> dict[str, Any] | None:
    entry = lineage.get("dataset") or {}
    if not entry.get("name") or not entry.get("version"):
        return None
    try:
        return client.datasets.get(entry["name"], entry["version"]).profile or None
    except NotFound:
        return None


def _train_torch(config: TrainConfig, client: Client, run: Any, outcome: TrainOutcome, storage_path: str,
                 splits: Splits, labels: dict[str, np.ndarray], classes: list[Any] | None, params: dict[str, Any],
                 transform: TabularTransform, warm: Any, artifact: Path, lineage: dict[str, Any],
                 epoch_hook: Any, reference: pd.DataFrame) -> None:
    # heavy: torch takes seconds to import; only the torch path pays for it
    import torch

    from mlplatform.learning.torch_core import model_shape
    from mlplatform.training.torch_train import train_torch

    shape = model_shape(transform, classes, params)
    model = default_factory().create(config.model.family, config.task, params, seed=config.seed, **shape)
    if warm is not None:  # strict key/shape check on the driver, before any worker starts
        check_state_dict(warm.ref, model, warm.state_dict)
    ensure_ray(get_settings().ray_address)
    # Restores accumulate over driver sessions (a failure recovered, then a --resume of the same run).
    restores: list[dict[str, Any]] = list(client.runs.get_run(run.id).tags.get("restore_events", []))
    # Epochs already in the store (a resumed run's earlier driver session wrote them): each is written once.
    recorded = {m.step for m in client.runs.get_metrics(run.id, "train_loss")}

    def on_event(item: dict[str, Any]) -> None:
        if item.get("event") == "restored":
            restores.append({"from_epoch": item["from_epoch"]})
            client.runs.update_tags(run.id, {"restores": len(restores), "restore_events": restores})
            client.runs.log_metrics(run.id, {"restores": float(len(restores))}, step=int(item["from_epoch"]))
            return
        epoch = int(item["epoch"])
        if epoch not in recorded:  # an epoch re-run after a restore is already in the store
            _log_epoch(client, run.id, item)
            recorded.add(epoch)

    output = train_torch(config, run_id=run.id, storage_path=storage_path, transform=transform, splits=splits,
                         labels=labels, classes=classes, params=params,
                         warm_state=warm.state_dict if warm else None, on_event=on_event, epoch_hook=epoch_hook)
    # The final history (from the latest checkpoint) is the truth: any epoch whose live event never reached the
    # store (a store outage longer than the drainer's retries) is written now, once.
    for item in output.history:
        if int(item["epoch"]) not in recorded:
            _log_epoch(client, run.id, item)
            recorded.add(int(item["epoch"]))
    outcome.epochs, outcome.stopped_early = len(output.history), output.stopped_early
    outcome.best_epoch, outcome.restores = output.best_epoch, len(restores)
    client.runs.log_metrics(run.id, {"best_epoch": float(output.best_epoch), "epochs_run": float(len(output.history)),
                                     "stopped_early": float(output.stopped_early)})
    client.runs.update_tags(run.id, {"best_checkpoint": output.checkpoint_path,
                                     "kept_checkpoints": output.kept_checkpoints})
    model.load_state_dict(output.state_dict, strict=True)
    artifact.mkdir(parents=True)
    torch.save(model.state_dict(), artifact / "model.pt")
    transform.save(artifact)
    lineage.update({"best_epoch": output.best_epoch, "best_checkpoint": output.checkpoint_path,
                    "restores": len(restores), "stopped_early": output.stopped_early,
                    "effective_batch": config.training.batch_size * config.scaling.num_workers
                    * config.training.accumulation_steps})
    ModelManifest(
        framework="torch", task=config.task, family=config.model.family, target=config.data.target,
        classes=classes, threshold=0.5 if classes is not None and len(classes) == 2 else None,
        input_schema=schema_to_json(transform.schema), model_file="model.pt", model_params=params,
        architecture=model.architecture(), metrics={k: float(v) for k, v in output.best_metrics.items()
                                                    if isinstance(v, int | float) and not isinstance(v, bool)},
        lineage=lineage,
    ).write(artifact)
    # The same monitoring reference as sklearn artifacts (SPEC S8.1): predictions scored on the validation split.
    from mlplatform.learning.sklearn_fit import _write_reference_profile

    _write_reference_profile(Predictor.from_dir(artifact), reference, [f.name for f in transform.schema],
                             config.data.target, artifact, config.seed, holdout=splits.validation)


def _log_epoch(client: Client, run_id: str, item: dict[str, Any]) -> None:
    epoch = int(item["epoch"])
    rows = []
    for key, value in item.items():
        if key in {"event", "epoch", "stop"} or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        split = "validation" if key.startswith("val_") else "train"
        rows.append({"key": key, "value": float(value), "step": epoch, "split": split})
    client.runs.log_metrics(run_id, rows)
    client.runs.heartbeat(run_id)


def _train_sklearn(config: TrainConfig, client: Client, run: Any, splits: Splits, params: dict[str, Any],
                   features: list[str], artifact: Path, lineage: dict[str, Any], reference: pd.DataFrame) -> None:
    # heavy: scikit-learn loads only when an estimator is built or scored
    from mlplatform.learning.sklearn_fit import fit_sklearn_artifact

    manifest = fit_sklearn_artifact(splits.train, target=config.data.target, features=features,
                                    family=config.model.family, out_dir=artifact, task=config.task, params=params,
                                    seed=config.seed, eval_data=splits.validation, lineage=lineage,
                                    reference_data=reference, transform_config=config.features,
                                    declared=config.data.declared_schema)
    client.runs.log_metrics(run.id, {f"val_{k}": v for k, v in manifest.metrics.items()}, split="validation")


def _tune_threshold(config: TrainConfig, client: Client, run: Any, artifact: Path, validation: pd.DataFrame,
                    lineage: dict[str, Any]) -> None:
    """Choose the binary decision threshold on the validation split (never test) and write it into the artifact's
    manifest, so evaluation, batch scoring and serving all apply it; recorded in the run tags and the lineage."""
    predictor = Predictor.from_dir(artifact)
    classes = predictor.manifest.classes or []
    proba = predictor.predict(validation).positive_probability()
    if proba is None or len(classes) != 2:
        raise InvalidInput("rebalance.tune_threshold needs a binary classifier", field="rebalance.tune_threshold")
    positive = validation[config.data.target].to_numpy() == classes[1]
    metric = config.rebalance.threshold_metric
    threshold, value = tune_threshold(proba, positive, metric)
    if positive.all() or not positive.any():
        log.warning("the validation split holds one class; the decision threshold stays at 0.5")
    info = {"threshold": threshold, "metric": metric, "validation_value": value,
            "value_at_0_5": threshold_metric(proba, positive, 0.5, metric), "n_validation": len(validation)}
    manifest = ModelManifest.read(artifact)
    manifest.threshold = threshold
    manifest.lineage = {**manifest.lineage, "threshold": info}
    manifest.write(artifact)
    lineage["threshold"] = info
    client.runs.update_tags(run.id, {"threshold": info})
    log.info("decision threshold %.4f (validation %s %.4f; %.4f at 0.5)", threshold, metric, value,
             info["value_at_0_5"])


def _slice_metrics(predictor: Any, test: pd.DataFrame, target: str, columns: list[str]) -> dict[str, dict]:
    out: dict[str, dict[str, float]] = {}
    for column in columns:
        if column not in test.columns:
            raise InvalidInput(f"slice column {column!r} is not in the data", field="slices")
        for value, part in test.groupby(column, dropna=False, observed=True):
            out[f"{column}={value}"] = evaluate_predictions(predictor, part, target)
    return out
