"""Fairness per protected slice (SPEC S8.12)."""

from __future__ import annotations

import pandas as pd
import pytest

from mlplatform.entities import AlertLevel
from mlplatform.entities.levels import Thresholds
from mlplatform.monitoring.evaluation import base_rate_audit, fairness_report


def _frame(groups: dict[str, tuple[int, int]], labels: bool = True) -> pd.DataFrame:
    """groups: name -> (rows, positive predictions); labels equal predictions for the first half of rows."""
    rows = []
    for name, (n, positives) in groups.items():
        for i in range(n):
            pred = 1 if i < positives else 0
            rows.append({"group": name, "prediction": pred, "label": pred if i % 2 == 0 else 1 - pred})
    frame = pd.DataFrame(rows)
    return frame if labels else frame.drop(columns="label")


def test_selection_rate_ratio_and_demographic_parity() -> None:
    report = fairness_report(_frame({"a": (100, 50), "b": (100, 30)}), "group")
    assert report["groups"]["a"]["selection_rate"] == pytest.approx(0.5)
    assert report["groups"]["b"]["selection_rate"] == pytest.approx(0.3)
    assert report["selection_rate_ratio"] == pytest.approx(0.6)
    assert report["demographic_parity_difference"] == pytest.approx(0.2)
    assert report["passes_four_fifths"] is False
    assert Thresholds().level("selection_rate_ratio", report["selection_rate_ratio"]) is AlertLevel.ORANGE
    assert report["tpr_gap"] is not None and report["fpr_gap"] is not None
    fair = fairness_report(_frame({"a": (100, 50), "b": (100, 45)}), "group")
    assert fair["selection_rate_ratio"] == pytest.approx(0.9) and fair["passes_four_fifths"] is True


def test_small_groups_are_insufficient_and_excluded() -> None:
    report = fairness_report(_frame({"a": (100, 50), "b": (100, 48), "tiny": (10, 0)}), "group")
    assert report["groups"]["tiny"]["status"] == "insufficient_data"
    assert report["selection_rate_ratio"] == pytest.approx(0.96)  # tiny's 0 % is not compared
    alone = fairness_report(_frame({"a": (100, 50), "tiny": (10, 0)}), "group")
    assert alone["status"] == "insufficient_data" and alone["selection_rate_ratio"] is None


def test_constant_predictor_is_flagged_never_fair() -> None:
    all_zero = fairness_report(_frame({"a": (100, 0), "b": (100, 0)}), "group")
    assert all_zero["constant_predictor"] and all_zero["selection_rate_ratio"] is None  # no division by zero
    assert all_zero["passes_four_fifths"] is False
    all_one = fairness_report(_frame({"a": (100, 100), "b": (100, 100)}), "group")
    assert all_one["selection_rate_ratio"] == 1.0 and all_one["constant_predictor"]
    assert all_one["passes_four_fifths"] is False and all_one["status"] == "constant_predictor"


def test_positive_free_group_has_undefined_tpr() -> None:
    frame = pd.DataFrame({"group": ["a"] * 40 + ["b"] * 40, "prediction": [1, 0] * 40,
                          "label": [1, 0] * 20 + [0] * 40})
    report = fairness_report(frame, "group")
    assert report["groups"]["b"]["tpr"] is None and report["groups"]["a"]["tpr"] == 1.0
    assert report["tpr_gap"] is None  # only one group has a defined TPR


def test_base_rate_audit_warns_above_1_25() -> None:
    frame = pd.DataFrame({"g": ["a"] * 100 + ["b"] * 100, "y": [1] * 40 + [0] * 60 + [1] * 30 + [0] * 70})
    audit = base_rate_audit(frame, "g", "y")
    assert audit["ratio"] == pytest.approx(40 / 30) and audit["warning"]
    even = pd.DataFrame({"g": ["a"] * 100 + ["b"] * 100, "y": [1] * 40 + [0] * 60 + [1] * 35 + [0] * 65})
    assert not base_rate_audit(even, "g", "y")["warning"]
