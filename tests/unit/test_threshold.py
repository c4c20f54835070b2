"""Decision-threshold tuning (SPEC S2.10): the best threshold on validation scores, ties towards 0.5."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from mlplatform.training.threshold import threshold_metric, tune_threshold

SKLEARN = {"f1": lambda y, p: f1_score(y, p, zero_division=0), "balanced_accuracy": balanced_accuracy_score}


def test_a_separable_example_gets_the_separating_threshold() -> None:
    proba = np.array([0.05, 0.1, 0.2, 0.3, 0.35, 0.4, 0.9])
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    assert tune_threshold(proba, y, "f1") == (0.3, 1.0)  # 0.5 would miss three of the four positives
    assert tune_threshold(proba, y, "balanced_accuracy") == (0.3, 1.0)
    assert threshold_metric(proba, y, 0.5, "f1") == pytest.approx(0.4)


@pytest.mark.parametrize("metric", ["f1", "balanced_accuracy"])
def test_the_tuned_threshold_is_the_best_candidate_by_sklearn(metric: str) -> None:
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.15
    proba = np.clip(rng.normal(0.25 + 0.3 * y, 0.15), 0.001, 0.999).round(3)
    threshold, value = tune_threshold(proba, y, metric)
    brute = {t: SKLEARN[metric](y, proba >= t) for t in np.union1d(proba, [0.5])}
    best = max(brute.values())
    assert value == pytest.approx(best) and brute[threshold] == pytest.approx(best)
    assert value == pytest.approx(threshold_metric(proba, y, threshold, metric))
    assert threshold != 0.5 and value > threshold_metric(proba, y, 0.5, metric)


def test_f1_and_balanced_accuracy_can_disagree() -> None:
    # Going down to 0.32 catches the third positive at the cost of three false positives: f1 drops (0.8 -> 0.67),
    # balanced accuracy, which weighs the rare class's recall as much as the common one's, rises (0.83 -> 0.88).
    neg = [0.1] * 10 + [0.35, 0.4, 0.45]
    pos = [0.32, 0.6, 0.7]
    proba, y = np.array(neg + pos), np.array([0] * len(neg) + [1] * len(pos))
    assert tune_threshold(proba, y, "f1") == (0.5, pytest.approx(0.8))
    assert tune_threshold(proba, y, "balanced_accuracy") == (0.32, pytest.approx((1 + 10 / 13) / 2))


def test_ties_go_to_the_threshold_closest_to_one_half() -> None:
    # Perfect from 0.5 up to 0.8: 0.5 itself wins.
    assert tune_threshold(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]), "f1") == (0.5, 1.0)
    # Balanced accuracy 0.75 at 0.4 and at 0.8, 0.5 in between: 0.4 is nearer to 0.5.
    proba, y = np.array([0.2, 0.6, 0.4, 0.8]), np.array([0, 0, 1, 1])
    assert tune_threshold(proba, y, "balanced_accuracy") == (0.4, 0.75)


@pytest.mark.parametrize("y", [np.ones(5), np.zeros(5)])
@pytest.mark.parametrize("metric", ["f1", "balanced_accuracy"])
def test_one_class_keeps_the_default_threshold(y: np.ndarray, metric: str) -> None:
    threshold, value = tune_threshold(np.array([0.1, 0.3, 0.5, 0.7, 0.9]), y, metric)
    assert threshold == 0.5 and 0.0 <= value <= 1.0


def test_no_rows_keep_the_default_threshold() -> None:
    assert tune_threshold(np.array([]), np.array([]), "f1") == (0.5, 0.0)


def test_many_distinct_scores_are_capped_to_quantile_candidates() -> None:
    rng = np.random.default_rng(1)
    y = rng.random(5000) < 0.2
    proba = np.clip(rng.normal(0.3 + 0.3 * y, 0.2), 1e-6, 1 - 1e-6)
    threshold, value = tune_threshold(proba, y, "f1", max_candidates=16)
    assert threshold in set(proba) | {0.5}  # a real score, so it splits the rows where the model does
    full_value = tune_threshold(proba, y, "f1")[1]
    assert value <= full_value and value == pytest.approx(full_value, abs=0.02)
    assert value >= threshold_metric(proba, y, 0.5, "f1")


def test_scores_of_exactly_zero_or_one_are_no_candidates() -> None:
    threshold, _ = tune_threshold(np.array([0.0, 0.0, 1.0, 1.0]), np.array([0, 0, 1, 1]), "f1")
    assert 0.0 < threshold < 1.0


def test_per_class_metrics_name_every_class_and_survive_an_absent_one() -> None:
    from mlplatform.learning.metrics import per_class_metrics

    y = np.array(["no", "no", "yes", "yes"])
    pred = np.array(["no", "yes", "yes", "yes"])
    out = per_class_metrics(y, pred, ["no", "yes", "maybe later"])
    assert out["precision_class_yes"] == pytest.approx(2 / 3) and out["recall_class_no"] == pytest.approx(0.5)
    assert out["support_class_maybe_later"] == 0 and out["f1_class_maybe_later"] == 0.0  # zero denominators: 0
    assert per_class_metrics(np.array([]), np.array([]), ["a"]) == {}
