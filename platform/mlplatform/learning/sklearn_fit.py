"""Fit an sklearn family through the shipped transform and write a model artifact directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplatform.artifacts.model_format import ModelManifest
from mlplatform.errors import InvalidInput
from mlplatform.features.reference import write_drift_reference
from mlplatform.features.schema import FeatureSpec, schema_to_json
from mlplatform.features.transform import TabularTransform, TransformConfig
from mlplatform.learning.metrics import evaluate_predictions
from mlplatform.models.calibration import fit_calibration
from mlplatform.models.sklearn_models import build_sklearn, save_sklearn
from mlplatform.predictor import Predictor

logger = logging.getLogger(__name__)


def fit_sklearn_artifact(
    train: pd.DataFrame, *, target: str, features: list[str], family: str, out_dir: Path,
    task: str = "classification", params: dict[str, Any] | None = None, seed: int = 42,
    eval_data: pd.DataFrame | None = None, transform_config: TransformConfig | None = None,
    lineage: dict[str, Any] | None = None, reference_data: pd.DataFrame | None = None,
    declared: list[FeatureSpec] | None = None,
) -> ModelManifest:
    """``reference_data`` (default ``train``) is what the monitoring reference profiles: the training split as it
    really is, when ``train`` was resampled for class balance. The prediction profile and the calibration come from
    held-out rows: ``eval_data`` (the validation split) when given, else out-of-fold predictions on ``train``."""
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

    predictor = Predictor(manifest, transform, estimator)
    if eval_data is not None:
        manifest.metrics = evaluate_predictions(predictor, eval_data, target)
    manifest.write(out_dir)
    holdout, scores, source = eval_data, None, "validation"
    if eval_data is None or len(eval_data) < MIN_HOLDOUT:
        holdout, scores, source = train, _out_of_fold_scores(estimator, transform, train, y, task, seed), \
            "out_of_fold"
        if scores is None:  # classes too small to fold: the training split is all there is, and it says so
            source = "training"
    _write_reference_profile(predictor, train if reference_data is None else reference_data, features, target,
                             out_dir, seed, holdout=holdout, holdout_scores=scores, source=source)
    return manifest


# Fewer held-out rows than this: out-of-fold predictions instead (5 more fits). A small held-out set is noisy, but
# the KS test's p-value accounts for the reference's size and levels need significance, so it raises no alarms.
MIN_HOLDOUT = 50
OOF_FOLDS = 5


def _out_of_fold_scores(estimator: Any, transform: TabularTransform, train: pd.DataFrame, y: np.ndarray,
                        task: str, seed: int) -> np.ndarray | None:
    """Each training row scored by a clone fitted without it (positive-class probability for binary classifiers,
    the prediction otherwise); None when the classes are too small to stratify."""
    # heavy: scikit-learn loads only when an estimator is built or scored
    from sklearn.base import clone
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict

    binary = task == "classification" and len(np.unique(y)) == 2
    if task == "classification" and np.min(np.unique(y, return_counts=True)[1]) < OOF_FOLDS:
        logger.warning("a class has fewer than %d rows: the prediction reference is scored on the training split",
                       OOF_FOLDS)
        return None
    splitter = StratifiedKFold(OOF_FOLDS, shuffle=True, random_state=seed) if task == "classification" \
        else KFold(OOF_FOLDS, shuffle=True, random_state=seed)
    x = transform.transform(train)
    if binary and hasattr(estimator, "predict_proba"):
        return cross_val_predict(clone(estimator), x, y, cv=splitter, method="predict_proba")[:, 1]
    return cross_val_predict(clone(estimator), x, y, cv=splitter)


def _write_reference_profile(predictor: Any, train: pd.DataFrame, features: list[str], target: str,
                             out_dir: Path, seed: int, *, holdout: pd.DataFrame, holdout_scores: Any = None,
                             source: str = "validation") -> None:
    """The monitoring reference (SPEC S8.1), computed once here, never at monitoring time: features and labels
    from the training split, the prediction distribution and the probability calibration from held-out rows
    (``holdout_scores`` when already computed, e.g. out of fold; else ``predictor`` scores ``holdout``). Scores of
    the rows a model was fitted on are not what it gives fresh data: an overfit random forest read ORANGE
    prediction drift on unchanged data."""
    if holdout_scores is None:
        result = predictor.predict(holdout)
        scores = result.positive_probability()
        holdout_scores = scores if scores is not None else np.asarray(result.predictions)
    classes = predictor.manifest.classes
    calibration = None
    if classes is not None and len(classes) == 2 and np.issubdtype(np.asarray(holdout_scores).dtype, np.floating):
        calibration = fit_calibration(np.asarray(holdout_scores, dtype=np.float64),
                                      holdout[target].to_numpy() == classes[1], source=source)
    write_drift_reference(out_dir, train, features, predictions=holdout_scores, labels=train[target].to_numpy(),
                          seed=seed, prediction_source=source, calibration=calibration)
