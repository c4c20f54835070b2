"""Loading the training data, its content hash (the dataset version) and the seeded train/validation/test split
(SPEC S2.7). Transforms are fitted later, on the training split only."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplatform.config.train import TrainConfig
from mlplatform.datasets.sklearn_data import ENTITY, EVENT_TIME, load_sklearn_dataset
from mlplatform.datasets.synthetic import make_churn
from mlplatform.errors import InvalidInput
from mlplatform.features.datasets import content_hash, read_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedData:
    frame: pd.DataFrame
    name: str
    version: str  # features.datasets.content_hash: the same version `mlplatform data version` records
    uri: str | None
    features: list[str]


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    method: str
    seed: int

    def summary(self) -> dict[str, Any]:
        return {"method": self.method, "seed": self.seed, "n_train": len(self.train),
                "n_validation": len(self.validation), "n_test": len(self.test)}


def load_data(config: TrainConfig) -> LoadedData:
    section = config.data
    if section.source == "synthetic_churn":
        frame = make_churn(section.n_rows, seed=config.seed)
        name, uri = section.name or "synthetic_churn", None
    elif section.source.startswith("sklearn_"):
        frame = bundled_sklearn_frame(section.source, section.target)
        name, uri = section.name or section.source, None
    else:
        assert section.path is not None  # the config validator requires it
        frame = read_table(section.path)
        name, uri = section.name or Path(section.path).stem, section.path
    if section.target not in frame.columns:
        raise InvalidInput(f"target column {section.target!r} is not in the data (columns: "
                           f"{', '.join(map(str, frame.columns[:20]))})", field="data.target")
    id_columns = set(section.id_columns)
    if section.source.startswith("sklearn_"):
        id_columns |= {ENTITY, EVENT_TIME}
    features = section.features or [c for c in frame.columns if c != section.target and c not in id_columns]
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise InvalidInput(f"feature column(s) {', '.join(missing)} are not in the data", field="data.features")
    if frame[section.target].isna().any():
        raise InvalidInput(f"target column {section.target!r} has missing values", field="data.target")
    return LoadedData(frame=frame, name=name, version=content_hash(frame), uri=uri, features=list(features))


def bundled_sklearn_frame(source: str, target: str) -> pd.DataFrame:
    """A dataset shipped inside scikit-learn (no download, :mod:`mlplatform.datasets.sklearn_data`) with its label
    in the column ``target``. Its event times use a fixed seed, so the dataset version never depends on the run seed."""
    frame, label = load_sklearn_dataset(source)
    return frame.rename(columns={label: target}) if target != label else frame


def split_data(frame: pd.DataFrame, config: TrainConfig) -> Splits:
    """60/20/20 by default; stratified by the target for classification; by time when asked (oldest rows train)."""
    # heavy: scikit-learn loads only when an estimator is built or scored
    from sklearn.model_selection import train_test_split

    section, seed = config.split, config.split_seed
    target = config.data.target
    if len(frame) < 10:
        raise InvalidInput(f"{len(frame)} rows are too few to split into train/validation/test", field="data")
    if section.method == "time":
        if section.time_column not in frame.columns:
            raise InvalidInput(f"time column {section.time_column!r} is not in the data", field="split.time_column")
        ordered = frame.sort_values(section.time_column, kind="stable")
        n_train = round(len(ordered) * section.train)
        n_val = round(len(ordered) * section.validation)
        return Splits(ordered.iloc[:n_train], ordered.iloc[n_train:n_train + n_val],
                      ordered.iloc[n_train + n_val:], "time", seed)
    stratify = config.task == "classification" and section.stratify
    if stratify and frame[target].value_counts().min() < 3:
        log.warning("a class has fewer than 3 rows; splitting without stratification")
        stratify = False
    rest, test = train_test_split(frame, test_size=section.test, random_state=seed,
                                  stratify=frame[target] if stratify else None)
    val_share = section.validation / (section.train + section.validation)
    train, validation = train_test_split(rest, test_size=val_share, random_state=seed,
                                         stratify=rest[target] if stratify else None)
    return Splits(train, validation, test, "stratified" if stratify else "random", seed)


def encode_labels(splits: Splits, target: str, task: str) -> tuple[list[Any] | None, dict[str, np.ndarray]]:
    """Class list (sorted, from the training split) and the label vector per split (class index or float)."""
    if task == "regression":
        return None, {name: part[target].to_numpy(dtype="float32") for name, part in _parts(splits)}
    classes = sorted(splits.train[target].unique().tolist())
    if len(classes) < 2:
        raise InvalidInput("the training split holds a single class; a classifier needs two or more",
                           field="data.target")
    index = {c: i for i, c in enumerate(classes)}
    labels = {}
    for name, part in _parts(splits):
        unseen = set(part[target].unique()) - set(index)
        if unseen:
            raise InvalidInput(f"{name} split has classes not in the training split: {sorted(unseen)[:5]}",
                               field="data.target")
        labels[name] = part[target].map(index).to_numpy(dtype="int64")
    return [c.item() if isinstance(c, np.generic) else c for c in classes], labels


def _parts(splits: Splits) -> list[tuple[str, pd.DataFrame]]:
    return [("train", splits.train), ("validation", splits.validation), ("test", splits.test)]
