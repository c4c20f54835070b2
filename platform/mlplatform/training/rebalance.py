"""Class rebalancing by over- or undersampling or SMOTE-like synthesis (SPEC S2.10): only the training split is
resampled, seeded by the run seed, so validation and test keep the real class ratios and metrics stay comparable
across runs.

Class weights (``strategy: class_weight``) are not resampling: they go into the torch loss
(``weighted_cross_entropy``, see :attr:`TrainConfig.loss_name`) or the estimator's ``class_weight``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from mlplatform.config.train import TrainConfig
from mlplatform.errors import InvalidInput
from mlplatform.learning.data import Splits
from mlplatform.training.smote import smote

log = logging.getLogger(__name__)


def resample(frame: pd.DataFrame, target: str, strategy: str, ratio: float, seed: int) -> pd.DataFrame:
    """Rows of ``frame`` resampled so that every class holds at least ``ratio`` x the majority (oversample) or at
    most ``1 / ratio`` x the minority (undersample). Classes already inside the ratio are left as they are.

    Oversampling keeps every original row and adds seeded draws with replacement; undersampling keeps a seeded
    subset without replacement. The result is shuffled (seeded) so batches do not see one class at a time.
    """
    if strategy not in {"oversample", "undersample"}:
        return frame
    if not 0.0 < ratio <= 1.0:
        raise InvalidInput(f"rebalance.ratio must be in (0, 1], got {ratio}", field="rebalance.ratio")
    rng = np.random.default_rng(seed)
    counts = frame[target].value_counts()
    if len(counts) < 2:
        return frame
    positions = {label: np.flatnonzero((frame[target] == label).to_numpy()) for label in counts.index}
    chosen: list[np.ndarray] = []
    for rows in positions.values():
        if strategy == "oversample":
            wanted = math.ceil(ratio * counts.max())
            extra = rng.choice(rows, size=wanted - len(rows), replace=True) if len(rows) < wanted else rows[:0]
            chosen.append(np.concatenate([rows, extra]))
        else:
            wanted = math.floor(counts.min() / ratio)
            chosen.append(np.sort(rng.choice(rows, size=wanted, replace=False)) if len(rows) > wanted else rows)
    order = np.concatenate(chosen)
    rng.shuffle(order)
    return frame.iloc[order]


def rebalance_splits(splits: Splits, config: TrainConfig,
                     features: list[str] | None = None) -> tuple[Splits, dict[str, Any]]:
    """The splits to train on (training split resampled when configured) and a summary for the run's tags.
    ``features`` tells SMOTE which columns are features (the pipeline passes the loaded data's list; default
    ``data.features``, else every column but the target and ``data.id_columns``)."""
    section, target = config.rebalance, config.data.target
    summary: dict[str, Any] = {"strategy": section.strategy, "ratio": section.ratio}
    if section.strategy not in {"oversample", "undersample", "smote"}:
        return splits, summary
    before = splits.train[target].value_counts().sort_index()
    if section.strategy == "smote":
        columns = features if features is not None else config.data.features
        if columns is None:
            columns = [c for c in splits.train.columns if c != target and c not in config.data.id_columns]
        train, synthetic = smote(splits.train, target, columns, section.ratio, section.k_neighbors, config.seed)
        summary |= {"k_neighbors": section.k_neighbors, "synthetic_rows": synthetic}
    else:
        train = resample(splits.train, target, section.strategy, section.ratio, config.seed)
    after = train[target].value_counts().sort_index()
    summary |= {"class_counts_before": {str(k): int(v) for k, v in before.items()},
                "class_counts_after": {str(k): int(v) for k, v in after.items()}}
    log.info("%s the training split: %s -> %s rows", section.strategy, len(splits.train), len(train))
    return replace(splits, train=train), summary
