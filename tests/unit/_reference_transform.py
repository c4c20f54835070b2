"""The DataFrame transform as it was before the compiled plans (issue 19), kept only as the reference that the lean
path must match byte for byte. Reads a fitted :class:`TabularTransform`'s state; never used by the platform."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlplatform.features.rows import check_frame
from mlplatform.features.transform import (
    _FLOAT32_LIMIT,
    _MAX_SCALED,
    _SEP,
    MISSING_TOKEN,
    TabularTransform,
    _bin_index,
    stable_buckets,
)


def _raw_numeric(t: TabularTransform, frame: pd.DataFrame, name: str) -> np.ndarray:
    generated = {g.output_name: g for g in t.config.generated}.get(name)
    if generated is None:
        return frame[name].to_numpy(dtype="float64")
    a = frame[generated.columns[0]].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if generated.kind == "log":
            out = np.where(a >= 0, np.log1p(np.where(a >= 0, a, 0.0)), np.nan)
        else:
            b = frame[generated.columns[1]].to_numpy(dtype="float64")
            out = np.where(b != 0, a / np.where(b != 0, b, 1.0), np.nan) if generated.kind == "ratio" else a * b
    out[~np.isfinite(out)] = np.nan
    return out


def _filled_numeric(t: TabularTransform, frame: pd.DataFrame, state: Any) -> tuple[np.ndarray, np.ndarray]:
    values = _raw_numeric(t, frame, state.name)
    missing = np.isnan(values)
    return np.where(missing, state.fill, values), missing


def _filled_categorical(frame: pd.DataFrame, cat: Any) -> pd.Series:
    values = frame[cat.name]
    if cat.fill is not None:
        values = values.where(values.notna(), cat.fill)
    return values


def _cross_tokens(t: TabularTransform, frame: pd.DataFrame, cross: Any) -> pd.Series:
    numeric = {s.name: s for s in t.numeric}
    categorical = {c.name: c for c in t.categorical}
    parts: list[pd.Series] = []
    for name in cross.columns:
        if name in numeric:
            filled, _ = _filled_numeric(t, frame, numeric[name])
            parts.append(pd.Series(_bin_index(filled, numeric[name].bucket_edges or []).astype(str), index=frame.index))
        else:
            parts.append(_filled_categorical(frame, categorical[name]).fillna(MISSING_TOKEN))
    return parts[0].astype(str).str.cat([p.astype(str) for p in parts[1:]], sep=_SEP)


def reference_frame(t: TabularTransform, rows: pd.DataFrame) -> pd.DataFrame:
    return check_frame(rows, t.schema, t.row_rules).raise_for_issues().frame


def reference_matrix(t: TabularTransform, frame: pd.DataFrame) -> np.ndarray:
    n = len(frame)
    names = t.all_output_names
    out = np.zeros((n, len(names)), dtype=np.float32)
    rows = np.arange(n)
    col = 0
    for state in t.numeric:
        filled, missing = _filled_numeric(t, frame, state)
        if t.config.scaling == "standard":
            out[:, col] = np.clip((filled - state.mean) / state.std, -_MAX_SCALED, _MAX_SCALED)
        else:
            out[:, col] = np.clip(filled, -_FLOAT32_LIMIT, _FLOAT32_LIMIT)
        col += 1
        if state.indicator:
            out[:, col] = missing
            col += 1
        if state.bucket_edges is not None:
            out[rows, col + _bin_index(filled, state.bucket_edges)] = 1.0
            col += len(state.bucket_edges) + 1
    for cat in t.categorical:
        index = {v: i for i, v in enumerate(cat.vocabulary)}
        values = _filled_categorical(frame, cat)
        if cat.hash_buckets:
            codes = stable_buckets(values.fillna(MISSING_TOKEN), cat.hash_buckets, cat.name)
            width = cat.hash_buckets
        else:
            width = len(cat.vocabulary) + 1
            codes = values.map(lambda v, idx=index, other=width - 1: idx.get(v, other)).to_numpy()
        out[rows, col + codes.astype(np.int64)] = 1.0
        col += width
    for cross in t.crosses:
        out[rows, col + stable_buckets(_cross_tokens(t, frame, cross), cross.hash_buckets, cross.name)] = 1.0
        col += cross.hash_buckets
    if t.selected is not None:
        position = {name: i for i, name in enumerate(names)}
        out = np.ascontiguousarray(out[:, [position[name] for name in t.selected]])
    return out


def reference_codes(t: TabularTransform, frame: pd.DataFrame) -> np.ndarray:
    codes = np.zeros((len(frame), len(t.categorical)), dtype=np.int64)
    for j, cat in enumerate(t.categorical):
        index = {v: i for i, v in enumerate(cat.vocabulary)}
        values = _filled_categorical(frame, cat)
        if cat.hash_buckets:
            codes[:, j] = stable_buckets(values.fillna(MISSING_TOKEN), cat.hash_buckets, cat.name) + 1
        else:
            codes[:, j] = values.map(lambda v, idx=index: idx.get(v, -1) + 1).to_numpy()
    return codes


def reference_probabilities(predictor: Any, rows: pd.DataFrame) -> np.ndarray:
    """What ``Predictor.predict(DataFrame)`` returned before issue 19 (for batches of 8 rows or more)."""
    frame = reference_frame(predictor.transform, rows)
    matrix = reference_matrix(predictor.transform, frame)
    if predictor.manifest.framework == "sklearn":
        return np.asarray(predictor.model.predict_proba(np.asarray(matrix, dtype=np.float64)), dtype=np.float64)
    import torch

    codes = torch.from_numpy(reference_codes(predictor.transform, frame)) if predictor.transform.categorical else None
    with torch.inference_mode():
        output = predictor.model(torch.from_numpy(matrix), codes).double()
    return torch.softmax(output, dim=1).numpy()
