"""One ``Predictor.predict`` used unchanged by training evaluation, batch scoring and serving.

Inference is lean: the fitted transform is compiled once into column plans (:meth:`TabularTransform.encode`), the
row validator hands it numpy arrays (JSON rows and Arrow batches never become a DataFrame), and a request checked
once (serving, batch) is not checked again (:meth:`Predictor.predict_checked`, with serving's cached tuples
through :meth:`CheckedRows.of_tuples`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplatform.artifacts.model_format import ModelManifest
from mlplatform.errors import IntegrityError
from mlplatform.features.rows import CheckedRows
from mlplatform.features.transform import Rows, TabularTransform
from mlplatform.models.sklearn_models import load_sklearn
from mlplatform.settings import get_settings

_MIN_TORCH_ROWS = 8  # torch calls get at least this many rows (zero-padded): see Predictor._predict_torch


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
        classes = list(manifest.classes or [])
        self._classes = np.asarray(classes, dtype=object)
        # classes 0..k-1 (ints, not bools): a row's prediction is its class index itself, no object array to index
        self._index_classes = classes == list(range(len(classes))) and all(type(c) is int for c in classes)

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
        model = load_sklearn(model_path) if manifest.framework == "sklearn" else _load_torch(manifest, model_path)
        return cls(manifest, transform, model, name=name, version=version)

    def check(self, rows: Rows) -> CheckedRows:
        """The platform's one row validator with this model's schema and missing tokens: what every path (training
        checks, batch, serving) accepts, refuses and coerces."""
        return self.transform.check(rows)

    def predict(self, rows: Rows) -> Prediction:
        """Predictions for JSON-style rows (a list of objects), an Arrow record batch or table, or a DataFrame;
        InvalidInput (422) names the first refused value."""
        return self.predict_checked(self.check(rows).raise_for_issues())

    def predict_checked(self, rows: CheckedRows | pd.DataFrame) -> Prediction:
        """:meth:`predict` of rows the validator already accepted (:class:`CheckedRows`, or its :attr:`frame`): no
        second check."""
        n = rows.n_rows if isinstance(rows, CheckedRows) else len(rows)
        if n == 0:
            classes = self.manifest.classes
            empty = np.zeros((0, len(classes or [])), dtype=np.float64) if self.is_classifier else None
            return Prediction([], empty, classes)
        if self.manifest.framework == "sklearn":
            matrix, _ = self.transform.encode(rows, codes=False)
            # float64 so that sklearn's arithmetic does not depend on the batch size (float32 inputs gave
            # probabilities differing by ~6e-8 between one row and a batch).
            matrix = np.asarray(matrix, dtype=np.float64)
            if self.is_classifier:
                return self._from_probabilities(np.asarray(self.model.predict_proba(matrix), dtype=np.float64))
            return Prediction(np.asarray(self.model.predict(matrix), dtype=np.float64).tolist(), None, None)
        matrix, codes = self.transform.encode(rows, codes=bool(self.transform.categorical))
        assert matrix is not None  # encode returns the matrix unless asked not to
        return self._predict_torch(matrix, codes)

    def _from_probabilities(self, proba: np.ndarray) -> Prediction:
        classes = list(self.manifest.classes or [])
        if proba.shape[1] == 2 and self.manifest.threshold is not None:
            index = (proba[:, 1] >= self.manifest.threshold).astype(int)
        else:
            index = proba.argmax(axis=1)
        return Prediction(index.tolist() if self._index_classes else self._classes[index].tolist(), proba, classes)

    def _predict_torch(self, matrix: np.ndarray, codes: np.ndarray | None) -> Prediction:
        # heavy: torch takes seconds to import; only the torch path pays for it
        import torch

        n = len(matrix)
        if n < _MIN_TORCH_ROWS:
            # A batch this small runs torch's matrix-vector kernels, whose sums round differently (float32: ~1e-8)
            # from the matrix-matrix ones of a larger batch; padded with zero rows, one row alone gets exactly the
            # answer it gets in any batch (measured: from 4 rows on, 1 and 2 threads).
            matrix = np.concatenate([matrix, np.zeros((_MIN_TORCH_ROWS - n, matrix.shape[1]), dtype=matrix.dtype)])
            if codes is not None:
                codes = np.concatenate([codes, np.zeros((_MIN_TORCH_ROWS - n, codes.shape[1]), dtype=codes.dtype)])
        with torch.inference_mode():
            output = self.model(torch.from_numpy(matrix), None if codes is None else torch.from_numpy(codes))
            if len(output) != n:
                output = output[:n]
            if self.is_classifier:  # softmax's dtype argument casts to float64 first, as .double() did
                return self._from_probabilities(torch.softmax(output, dim=1, dtype=torch.float64).numpy())
            output = output.double()
        return Prediction(output[:, 0].numpy().tolist(), None, None)


def inference_threads(configured: int | None = None) -> int | None:
    """The torch threads for this process: ``configured`` (setting ``MLPLATFORM_INFERENCE_THREADS``), else inside
    a Ray actor or task the CPUs Ray assigned to it (a replica with ``num_cpus=0.25`` gets 1: torch's default of
    one thread per core in every replica would put n replicas x n cores threads on n cores), else None (torch's
    default, for a process that has the machine to itself)."""
    if configured is not None:
        return configured
    if "ray" in sys.modules:
        # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
        import ray

        if ray.is_initialized():
            try:
                assigned = ray.get_runtime_context().get_assigned_resources().get("CPU")
            except Exception:  # the driver has no assignment
                assigned = None
            if assigned is not None and ray.get_runtime_context().worker.mode == ray.WORKER_MODE:
                return max(1, int(assigned))
    return None


def _set_inference_threads() -> None:
    # heavy: torch takes seconds to import; only the torch path pays for it
    import torch

    threads = inference_threads(get_settings().inference_threads)
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _load_torch(manifest: ModelManifest, path: Path) -> Any:
    # heavy: torch takes seconds to import; only the torch path pays for it
    import torch

    _set_inference_threads()
    # heavy: torch takes seconds to import; only the torch path pays for it
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
