"""Statistics that hold on stationary data (SPEC S8.1-S8.3): a random forest's held-out prediction reference,
rare categories pooled into ``__rare__``, chi-square only where it is valid, Benjamini-Hochberg across features.

Each test drives the public monitoring functions on the shipped scenario generator's stationary stream; before the
fixes an overfit forest read ORANGE prediction drift on fresh data and a 300-category feature read ORANGE PSI in
most windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlplatform.datasets.scenarios import FEATURES, TARGET, ScenarioConfig, make_scenario, make_training_frame
from mlplatform.entities import AlertLevel
from mlplatform.features.reference import RARE, load_drift_reference
from mlplatform.monitoring.drift import chi_square, compute_drift


@pytest.fixture(scope="module")
def forest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    from mlplatform.learning.sklearn_fit import fit_sklearn_artifact
    from mlplatform.predictor import Predictor

    out = tmp_path_factory.mktemp("forest") / "rf"
    train = make_training_frame(4000, seed=3)
    fit_sklearn_artifact(train, target=TARGET, features=FEATURES, family="random_forest", out_dir=out,
                         params={"n_estimators": 60}, eval_data=make_training_frame(1500, seed=4))
    return out, Predictor.from_dir(out)


def test_reference_records_pooling_and_held_out_predictions(forest) -> None:
    out, _ = forest
    reference = load_drift_reference(out)
    merchant = reference.features["merchant"]
    assert merchant["pooling"]["rare_share"] == 0.01 and len(merchant["pooling"]["pooled"]) > 200
    assert reference.prediction["source"] == "validation"  # never the rows the forest was fitted on
    assert reference.calibration is not None and reference.calibration["method"] == "isotonic"


def test_200_stationary_windows_with_a_random_forest_rarely_alert(forest) -> None:
    out, predictor = forest
    reference = load_drift_reference(out)
    scenario = make_scenario(None, ScenarioConfig(seed=11, window_rows=1000, stationary_windows=200))
    alerting, chi2_flags, chi2_runs = 0, 0, 0
    for window in scenario.windows:
        scores = predictor.predict(window.frame).positive_probability()
        result = compute_drift(reference, window.frame, predictions=scores)
        merchant = result.features["merchant"]
        assert merchant.bins[-2] == RARE and merchant.pooled > 0
        if merchant.p_value is not None:
            chi2_runs += 1
            chi2_flags += merchant.p_value < 0.05
        alerting += result.level >= AlertLevel.ORANGE
    # before: prediction KS ~0.19 (training-split reference) and merchant PSI ORANGE in ~86 % of windows
    assert alerting / len(scenario.windows) <= 0.02
    assert chi2_runs == len(scenario.windows) and chi2_flags / chi2_runs <= 0.09  # nominal 5 %


def test_chi_square_refuses_expected_counts_under_five() -> None:
    statistic, p_value = chi_square(np.array([5000.0, 30.0, 0.0]), np.array([990.0, 6.0, 4.0]))
    assert statistic is None and p_value is None
    statistic, p_value = chi_square(np.array([5000.0, 3000.0]), np.array([600.0, 400.0]))
    assert p_value is not None and 0 < p_value < 1


def test_fdr_correction_keeps_many_null_features_quiet() -> None:
    rng = np.random.default_rng(5)
    from mlplatform.features.reference import DriftReference, build_drift_reference

    train = pd.DataFrame({f"x{i}": rng.normal(0, 1, 5000) for i in range(60)})
    reference = DriftReference.from_dict(build_drift_reference(train, list(train.columns)))
    flagged = 0
    for _ in range(5):
        window = pd.DataFrame({f"x{i}": rng.normal(0, 1, 1500) for i in range(60)})
        result = compute_drift(reference, window)
        flagged += sum(f.drift for f in result.features.values())
        assert all(f.p_adjusted is not None and f.p_adjusted >= f.p_value for f in result.features.values())
    assert flagged <= 1  # uncorrected, ~3 of 60 KS tests fire per window at p < 0.05
    shifted = pd.DataFrame({f"x{i}": rng.normal(0.5 if i == 0 else 0, 1, 1500) for i in range(60)})
    result = compute_drift(reference, shifted)
    assert result.features["x0"].drift and result.features["x0"].level >= AlertLevel.ORANGE


def test_cbpe_follows_realized_accuracy_under_covariate_shift_but_not_concept_drift(forest) -> None:
    from mlplatform.monitoring.estimation import estimate_performance

    out, predictor = forest
    reference = load_drift_reference(out)
    config = ScenarioConfig(seed=21, window_rows=2000, stationary_windows=1, event_windows=2)
    errors = []
    for event in ("mean_shift", "category_mix"):
        for window in make_scenario(event, config).windows:
            result = predictor.predict(window.frame)
            scores = result.positive_probability()
            estimate = estimate_performance(reference.calibration, scores, predictor.manifest.threshold)
            realized = float(np.mean(np.asarray(result.predictions) == window.frame[TARGET].to_numpy()))
            errors.append(abs(estimate.accuracy - realized))
            assert estimate.status == "ok" and 0 < estimate.f1 < 1 and 0.5 < estimate.roc_auc < 1
    # mean within the benchmark target; single windows off by up to ~0.05 where the shift lands on rows the
    # forest saw rarely (its global calibration is locally off there)
    assert float(np.mean(errors)) <= 0.03 and max(errors) <= 0.07
    # documented blind spot: P(y|x) changed, the model is as sure as before, so the estimate does not move
    concept = make_scenario("concept_drift", config).windows[-1]
    result = predictor.predict(concept.frame)
    estimate = estimate_performance(reference.calibration, result.positive_probability(), 0.5)
    realized = float(np.mean(np.asarray(result.predictions) == concept.frame[TARGET].to_numpy()))
    assert estimate.accuracy - realized > 0.05
