"""Replay (SPEC S8.6): re-score logged requests with a candidate version offline and compare with the answers
the logged version gave: agreement rate, confidence differences, and the metric of each on labelled rows.

Read-only on the live side: it reads the prediction log and labels, loads the candidate from a verified private
copy, and writes one ``replay`` run (its summary); no prediction log rows, no cache entries, no alerts. Batches
are scored in-process (a few thousand rows per batch cost milliseconds; a Ray Data job would cost more to start
than to run at prediction-log sizes). Same inputs, same summary: rows are in log order and no sampling is done.
"""

from __future__ import annotations

import logging
import math
import shutil
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlplatform.entities import RunKind, RunStatus
from mlplatform.errors import InvalidInput
from mlplatform.predictor import Predictor

if TYPE_CHECKING:  # annotations only: the SQL store loads where a client is opened
    from mlplatform.client import Client

logger = logging.getLogger(__name__)
SCORE_TOLERANCE = 1e-6
SAMPLE = 20  # disagreeing request ids kept in the run's tags


def _same(a: Any, b: Any) -> bool:
    """Logged answers come back from JSON: compare 1 and 1.0 and "1" loosely, but never True with "yes"."""
    if a == b:
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-12)
    except (TypeError, ValueError):
        return str(a) == str(b)


def score_records(predictor: Any, records: list[Any], batch_size: int) -> tuple[list[Any], np.ndarray | None]:
    predictions: list[Any] = []
    confidences: list[np.ndarray] = []
    for offset in range(0, len(records), batch_size):
        chunk = records[offset:offset + batch_size]
        frame = pd.DataFrame([r.features for r in chunk])
        for name in predictor.feature_names:  # a feature the caller left out is missing, as serving treats it
            if name not in frame.columns:
                frame[name] = None
        scored = predictor.predict(frame[predictor.feature_names])
        predictions.extend(scored.predictions)
        if scored.confidence is not None:
            confidences.append(np.asarray(scored.confidence, dtype="float64"))
    return predictions, (np.concatenate(confidences) if confidences else None)


def run_replay(client: Client, model_ref: str, candidate_ref: str, *, start: datetime | None = None,
               end: datetime | None = None, batch_size: int = 4096, record: bool = True) -> dict[str, Any]:
    """Replay the requests ``model_ref`` answered in ``[start, end)`` through ``candidate_ref``."""
    if start is not None and end is not None and start >= end:
        raise InvalidInput("--start must be before --end", field="start")
    logged = client.registry.resolve(model_ref)
    candidate = client.registry.resolve(candidate_ref)
    if candidate.model_name != logged.model_name:
        logger.info("replaying %s traffic through another model, %s", logged.ref, candidate.ref)
    records = client.monitoring.predictions(logged.model_name, version=logged.version, start=start, end=end)
    local = client.registry.fetch(candidate)
    try:
        predictor = Predictor.from_dir(local, name=candidate.model_name, version=candidate.version)
    finally:
        shutil.rmtree(local, ignore_errors=True)
    new_predictions, new_conf = score_records(predictor, records, batch_size)
    agree = np.array([_same(a, r.prediction) for a, r in zip(new_predictions, records, strict=True)], dtype=bool)
    summary: dict[str, Any] = {
        "model": logged.ref, "candidate": candidate.ref, "n": len(records),
        "start": start.isoformat() if start else None, "end": end.isoformat() if end else None,
        "agreement_rate": float(agree.mean()) if len(records) else None, "disagreements": int((~agree).sum()),
        "disagreement_sample": [r.request_id for r, ok in zip(records, agree, strict=True) if not ok][:SAMPLE],
    }
    old_conf = np.array([np.nan if r.confidence is None else float(r.confidence) for r in records], dtype="float64")
    if new_conf is not None and len(records) and not np.isnan(old_conf).all():
        diff = np.abs(new_conf - old_conf)
        diff = diff[~np.isnan(diff)]
        summary["score_diff"] = {"n": int(diff.size), "max": float(diff.max()), "mean": float(diff.mean()),
                                 "above_tolerance": int((diff > SCORE_TOLERANCE).sum()),
                                 "tolerance": SCORE_TOLERANCE}
    else:
        summary["score_diff"] = None
    summary["labelled"] = _labelled(client, records, new_predictions)
    if record:
        summary["run_id"] = _record(client, summary, RunKind.REPLAY, RunStatus.COMPLETED)
    logger.info("replay of %s through %s: n=%d agreement=%s", logged.ref, candidate.ref, len(records),
                summary["agreement_rate"])
    return summary


def _labelled(client: Client, records: list[Any], new_predictions: list[Any]) -> dict[str, Any]:
    """Accuracy of the logged answers and of the candidate's on the rows with a label (joined by request id and
    instance index; the latest label wins, as in continuous evaluation)."""
    if not records:
        return {"n": 0, "logged_accuracy": None, "candidate_accuracy": None}
    labels: dict[tuple[str | None, int], Any] = {}
    ids = sorted({r.request_id for r in records})
    for offset in range(0, len(ids), 900):  # stay under SQLite's bound-parameter limit
        for label in client.monitoring.labels(request_ids=ids[offset:offset + 900]):
            labels[(label.request_id, label.instance_index)] = label.label
    pairs = [(labels[(r.request_id, r.instance_index)], r.prediction, new)
             for r, new in zip(records, new_predictions, strict=True) if (r.request_id, r.instance_index) in labels]
    if not pairs:
        return {"n": 0, "logged_accuracy": None, "candidate_accuracy": None}
    old_hits = sum(_same(y, old) for y, old, _ in pairs)
    new_hits = sum(_same(y, new) for y, _, new in pairs)
    return {"n": len(pairs), "logged_accuracy": old_hits / len(pairs), "candidate_accuracy": new_hits / len(pairs)}


def _record(client: Client, summary: dict[str, Any], kind: Any, status: Any) -> str:
    run = client.runs.start_run("replay", kind, name=f"replay-{summary['candidate']}",
                                config={"model": summary["model"], "candidate": summary["candidate"],
                                        "start": summary["start"], "end": summary["end"]},
                                tags={"summary": summary})
    metrics = {"n": float(summary["n"]), "disagreements": float(summary["disagreements"])}
    if summary["agreement_rate"] is not None:
        metrics["agreement_rate"] = summary["agreement_rate"]
    if summary["score_diff"]:
        metrics["score_diff_max"] = summary["score_diff"]["max"]
        metrics["score_diff_above_tolerance"] = float(summary["score_diff"]["above_tolerance"])
    for key in ("logged_accuracy", "candidate_accuracy"):
        if summary["labelled"][key] is not None:
            metrics[key] = summary["labelled"][key]
    client.runs.log_metrics(run.id, metrics)
    client.runs.end_run(run.id, status)
    return run.id
