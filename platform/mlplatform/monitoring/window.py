"""Monitoring windows: the last N logged predictions, a time range ``[start, end)`` of the log, or a Parquet file."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlplatform.entities import ModelVersion
from mlplatform.errors import InvalidInput, NotFound
from mlplatform.monitoring.evaluation import JoinResult, join_labels, predictions_frame

if TYPE_CHECKING:  # annotations only: the SQL store loads where a client is opened
    from mlplatform.client import Client

logger = logging.getLogger(__name__)


@dataclass
class Window:
    """Feature rows plus, when known, model scores (what the reference profiled), predicted labels and true
    labels aligned row by row."""

    frame: pd.DataFrame
    source: str
    scores: np.ndarray | None = None
    predicted: list[Any] | None = None
    labels: list[Any] | None = None  # aligned with ``predicted`` (only labelled rows)
    labelled_predicted: list[Any] | None = None
    start: datetime | None = None
    end: datetime | None = None
    unmatched_labels: int = 0

    @property
    def n(self) -> int:
        return len(self.frame)


def scores_from_log(records: list[Any], classes: list[Any] | None, threshold: float | None = None) -> np.ndarray | None:
    """The positive-class probability of a binary classifier for each logged prediction: the logged class
    probabilities when every row has them. Rows logged before probabilities were kept fall back to rebuilding it
    from the label and the maximum probability, which is exact only at the 0.5 threshold: under a tuned one
    (say 0.4) a p1 of 0.45 is logged as "positive, confidence 0.55" and would read back as 0.55. None when the log
    cannot give the score."""
    if not classes or len(classes) != 2 or not records:
        return None
    if all(r.probabilities is not None and len(r.probabilities) == 2 for r in records):
        return np.asarray([r.probabilities[1] for r in records], dtype=np.float64)
    if (threshold is not None and threshold != 0.5) or any(r.confidence is None for r in records):
        logger.warning("the prediction log holds no class probabilities for some rows; prediction drift skipped")
        return None
    conf = np.asarray([r.confidence for r in records], dtype=np.float64)
    is_positive = np.array([r.prediction == classes[1] for r in records])
    return np.where(is_positive, conf, 1.0 - conf)


def window_from_log(client: Client, version: ModelVersion, *, last_n: int | None = None,
                    start: datetime | None = None, end: datetime | None = None,
                    classes: list[Any] | None = None, threshold: float | None = None) -> Window:
    records = client.monitoring.predictions(version.model_name, version=version.version, start=start, end=end,
                                            limit=last_n)
    frame = pd.DataFrame([r.features for r in records])
    predicted = [r.prediction for r in records]
    source = f"log:last {last_n}" if last_n else f"log:[{start}, {end})"
    window = Window(frame=frame, source=source, predicted=predicted,
                    scores=scores_from_log(records, classes, threshold),
                    start=records[0].timestamp if records else start, end=records[-1].timestamp if records else end)
    if records:
        # labels keyed by request id, and labels keyed only by entity (joined by entity and time, SPEC S8.5)
        entities = sorted({r.entity_id for r in records if r.entity_id is not None})
        labels = client.monitoring.labels(request_ids=sorted({r.request_id for r in records}),
                                          entity_ids=entities or None)
        joined: JoinResult = join_labels(predictions_frame(records), labels)
        window.labels = joined.joined["label"].tolist()
        window.labelled_predicted = joined.joined["prediction"].tolist()
        window.unmatched_labels = joined.unmatched_labels
    return window


def window_from_file(path: Path | str, predictor: Any, target: str | None = None) -> Window:
    """A Parquet file of feature rows, scored with the version's own predictor; its target column, when present,
    is the labels."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"window file {path} does not exist", field="window_file")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise InvalidInput(f"{path} is not a readable Parquet file: {exc}", field="window_file") from exc
    window = Window(frame=frame, source=f"file:{path}")
    if len(frame) and all(name in frame.columns for name in predictor.feature_names):
        try:
            result = predictor.predict(frame)
        except InvalidInput as exc:
            logger.warning("could not score window %s: %s", path, exc)
        else:
            window.predicted = list(result.predictions)
            scores = result.positive_probability()
            window.scores = scores if scores is not None else np.asarray(result.predictions)
            if target is not None and target in frame.columns:
                labelled = frame[target].notna().to_numpy()
                window.labels = frame.loc[labelled, target].tolist()
                window.labelled_predicted = [p for p, keep in zip(result.predictions, labelled, strict=True) if keep]
    if "event_time" in frame.columns and len(frame):
        times = pd.to_datetime(frame["event_time"], utc=True)
        window.start, window.end = times.min().to_pydatetime(), times.max().to_pydatetime()
    return window
