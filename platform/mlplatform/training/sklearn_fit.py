"""Fit an sklearn family through the shipped transform and write a model artifact directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplatform.artifacts.model_format import ModelManifest
from mlplatform.errors import InvalidInput
from mlplatform.features.schema import FeatureSpec, schema_to_json
from mlplatform.features.transform import TabularTransform, TransformConfig
from mlplatform.models.sklearn_models import build_sklearn, save_sklearn
from mlplatform.training.metrics import evaluate_predictions


def fit_sklearn_artifact(
    train: pd.DataFrame, *, target: str, features: list[str], family: str, out_dir: Path,
    task: str = "classification", params: dict[str, Any] | None = None, seed: int = 42,
    eval_data: pd.DataFrame | None = None, transform_config: TransformConfig | None = None,
    lineage: dict[str, Any] | None = None, reference_data: pd.DataFrame | None = None,
    declared: list[FeatureSpec] | None = None,
) -> ModelManifest:
    """``reference_data`` (default ``train``) is what the monitoring reference profiles: the training split as it
    really is, when ``train`` was resampled for class balance."""
    if target not in train.columns:
        raise InvalidInput(f"target column {target!r} is not in the data", field="target")
    transform = TabularTransform.fit(train, features, transform_config, declared, target=train[target])
    estimator = build_sklearn(family, task, params, seed)
    y = train[target].to_numpy()
    estimator.fit(transform.transform(train), y)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_sklearn(estimator, out_dir / "model.skops")
    transform.save(out_dir)
    classes = [c.item() if isinstance(c, np.generic) else c for c in estimator.classes_] \
        if task == "classification" else None
    manifest = ModelManifest(
        framework="sklearn", task=task, family=family, target=target, classes=classes,
        threshold=0.5 if classes is not None and len(classes) == 2 else None,
        input_schema=schema_to_json(transform.schema), model_file="model.skops", model_params=dict(params or {}),
        metrics={}, lineage={"seed": seed, "transform_sha256": transform.fingerprint, **(lineage or {})},
    )
    from mlplatform.predictor import Predictor

    predictor = Predictor(manifest, transform, estimator)
    if eval_data is not None:
        manifest.metrics = evaluate_predictions(predictor, eval_data, target)
    manifest.write(out_dir)
    _write_reference_profile(predictor, train if reference_data is None else reference_data, features, target,
                             out_dir, seed)
    return manifest


def _write_reference_profile(predictor: Any, train: pd.DataFrame, features: list[str], target: str,
                             out_dir: Path, seed: int) -> None:
    """The monitoring reference (SPEC S8.1) from the training split, computed once here, never at monitoring time."""
    from mlplatform.monitoring.reference import write_drift_reference

    result = predictor.predict(train)
    scores = result.positive_probability()
    predictions = scores if scores is not None else np.asarray(result.predictions)
    write_drift_reference(out_dir, train, features, predictions=predictions, labels=train[target].to_numpy(),
                          seed=seed)
