"""The probability calibration shipped in an artifact's reference profile: fitted on held-out rows at training
time, read by label-free performance estimation (``monitoring.estimation``) at monitoring time."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression

MIN_CALIBRATION_ROWS = 50


def fit_calibration(scores: np.ndarray, positive: np.ndarray, *, source: str = "validation") -> dict[str, Any] | None:
    """An isotonic map from raw score to P(positive), JSON-ready; None with too few rows or one class."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    keep = np.isfinite(scores)
    scores, positive = scores[keep], positive[keep]
    if len(scores) < MIN_CALIBRATION_ROWS or positive.all() or not positive.any():
        return None
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, positive.astype(float))
    return {"method": "isotonic", "x": [float(v) for v in iso.X_thresholds_],
            "y": [float(v) for v in iso.y_thresholds_], "n": len(scores), "source": source}


def calibrate(calibration: dict[str, Any], scores: np.ndarray) -> np.ndarray:
    """Calibrated probabilities (piecewise linear between the isotonic thresholds, clipped at the ends)."""
    return np.interp(np.asarray(scores, dtype=np.float64), calibration["x"], calibration["y"])
