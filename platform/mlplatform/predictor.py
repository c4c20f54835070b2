"""One ``Predictor.predict(DataFrame)`` used unchanged by training evaluation, batch scoring and serving."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplatform.artifacts.model_format import ModelManifest
from mlplatform.errors import IntegrityError
from mlplatform.features.rows import CheckedRows
from mlplatform.features.transform import TabularTransform


@dataclass(frozen=True)
class Prediction:
    predictions: list[Any]
    probabilities: np.ndarray | None  # (n, n_classes) for classifiers, in ``classes`` order
    classes: list[Any] | None

    @property
    def confidence(self) -> np.ndarray | None:
        return None if self.probabilities is None else self.probabilities.max(axis=1)

    def positive_probability(self) -> np.ndarray | None:
        if self.probabilities is None or self.probabilities.shape[1] != 2:
            return None
        return self.probabilities[:, 1]


class Predictor:
    """A loaded model: fitted transform + estimator + manifest. Thread-safe for inference."""

    def __init__(self, manifest: ModelManifest, transform: TabularTransform, model: Any,
                 name: str | None = None, version: int | None = None) -> None:
        self.manifest = manifest
        self.transform = transform
        self.model = model
        self.name = name
        self.version = version

    @property
    def input_schema(self) -> list[dict[str, Any]]:
        return self.manifest.input_schema

    @property
    def feature_names(self) -> list[str]:
        return [f["name"] for f in self.manifest.input_schema]

    @property
    def is_classifier(self) -> bool:
        return self.manifest.task == "classification"

    @classmethod
    def from_dir(cls, directory: Path, *, name: str | None = None, version: int | None = None) -> Predictor:
        directory = Path(directory)
        manifest = ModelManifest.read(directory)
        transform = TabularTransform.load(directory)
        model_path = directory / manifest.model_file
        if manifest.framework == "sklearn":
            from mlplatform.models.sklearn_models import load_sklearn

            model = load_sklearn(model_path)
        else:
            model = _load_torch(manifest, model_path)
        return cls(manifest, transform, model, name=name, version=version)

    def check(self, rows: pd.DataFrame | list[dict[str, Any]]) -> CheckedRows:
        """The platform's one row validator with this model's schema and missing tokens: what every path (training
        checks, batch, serving) accepts, refuses and coerces."""
        return self.transform.check(rows)

    def predict(self, rows: pd.DataFrame | list[dict[str, Any]]) -> Prediction:
        """Predictions for a DataFrame or JSON-style rows (a list of objects); InvalidInput (422) names the first
        refused value."""
        return self.predict_checked(self.check(rows).raise_for_issues().frame)

    def predict_checked(self, frame: pd.DataFrame) -> Prediction:
        """:meth:`predict` of rows the validator already accepted (:attr:`CheckedRows.frame`): no second check."""
        classes = self.manifest.classes
        if len(frame) == 0:
            empty = np.zeros((0, len(classes or [])), dtype=np.float64) if self.is_classifier else None
            return Prediction([], empty, classes)
        matrix = self.transform.transform_checked(frame)
        if self.manifest.framework == "sklearn":
            # float64 so that sklearn's arithmetic does not depend on the batch size (float32 inputs gave
            # probabilities differing by ~6e-8 between one row and a batch).
            matrix = np.asarray(matrix, dtype=np.float64)
            if self.is_classifier:
                proba = np.asarray(self.model.predict_proba(matrix), dtype=np.float64)
                return self._from_probabilities(proba)
            return Prediction(np.asarray(self.model.predict(matrix), dtype=np.float64).tolist(), None, None)
        return self._predict_torch(frame, matrix)

    def _from_probabilities(self, proba: np.ndarray) -> Prediction:
        classes = list(self.manifest.classes or [])
        if proba.shape[1] == 2 and self.manifest.threshold is not None:
            index = (proba[:, 1] >= self.manifest.threshold).astype(int)
        else:
            index = proba.argmax(axis=1)
        return Prediction([classes[i] for i in index], proba, classes)

    def _predict_torch(self, frame: pd.DataFrame, matrix: np.ndarray) -> Prediction:
        import torch

        dense = torch.from_numpy(matrix)
        codes = torch.from_numpy(self.transform.category_codes_checked(frame)) if self.transform.categorical else None
        with torch.inference_mode():
            output = self.model(dense, codes).double()
        if self.is_classifier:
            proba = torch.softmax(output, dim=1).numpy()
            return self._from_probabilities(proba)
        return Prediction(output[:, 0].numpy().tolist(), None, None)


def _load_torch(manifest: ModelManifest, path: Path) -> Any:
    import torch

    from mlplatform.models.mlp import MLPConfig, TabularMLP

    arch = manifest.architecture or {}
    try:
        model = TabularMLP(arch["n_inputs"], arch["n_outputs"], MLPConfig(**arch.get("config", {})),
                           arch.get("cardinalities"), arch.get("categorical_names"), arch.get("embedding_sizes"))
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError) as exc:
        raise IntegrityError(f"torch weights in {path.name} do not fit the manifest: {exc}") from exc
    except Exception as exc:  # torch raises UnpicklingError for anything that is not plain tensors
        raise IntegrityError(f"{path.name} is not a safe torch state_dict: {str(exc).splitlines()[0]}") from exc
    model.eval()
    return model
