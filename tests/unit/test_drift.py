"""Reference profiles and drift statistics (SPEC S8.1-S8.3) against scipy and hand-checked values."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats

from mlplatform.entities import AlertLevel
from mlplatform.features.reference import (
    REFERENCE_FILE,
    DriftReference,
    bin_counts,
    build_drift_reference,
    load_drift_reference,
    quantile_edges,
    write_drift_reference,
)
from mlplatform.monitoring.drift import DriftSettings, compute_drift, psi, psi_band


def _reference(df: pd.DataFrame, predictions: np.ndarray | None = None) -> DriftReference:
    return DriftReference.from_dict(build_drift_reference(df, list(df.columns), predictions=predictions))


def test_psi_matches_hand_computed_values() -> None:
    # (0.6 - 0.5) ln(0.6/0.5) + (0.4 - 0.5) ln(0.4/0.5)
    expected = 0.1 * math.log(1.2) + (-0.1) * math.log(0.8)
    assert psi(np.array([0.5, 0.5]), np.array([0.6, 0.4])) == pytest.approx(expected, rel=1e-12)
    assert psi(np.array([0.2, 0.3, 0.5]), np.array([0.2, 0.3, 0.5])) == 0.0
    assert [psi_band(v) for v in (0.05, 0.1, 0.19, 0.2)] == ["none", "moderate", "moderate", "significant"]


def test_psi_epsilon_keeps_a_rare_empty_category_quiet() -> None:
    # a 0.2 % category absent from the window: with epsilon 1e-4 this stays "none" (1e-10 would inflate it)
    reference = np.array([0.598, 0.4, 0.002])
    current = np.array([0.6, 0.4, 0.0])
    assert psi(reference, current, 1e-4) < 0.01
    assert psi(reference, current, 1e-10) > 3 * psi(reference, current, 1e-4)


def test_identical_sample_has_zero_psi_and_known_shift_is_red() -> None:
    rng = np.random.default_rng(0)
    ref_values = rng.normal(35, 10, 20_000)
    reference = _reference(pd.DataFrame({"x": ref_values}))
    same = compute_drift(reference, pd.DataFrame({"x": ref_values})).features["x"]
    assert same.psi == pytest.approx(0.0, abs=1e-12)
    assert same.level is AlertLevel.GREEN and not same.drift
    shifted_values = rng.normal(45, 12, 5000)
    shifted = compute_drift(reference, pd.DataFrame({"x": shifted_values})).features["x"]
    assert shifted.psi >= 0.25 and shifted.level is AlertLevel.RED and shifted.psi_band == "significant"
    # KS runs against the stored reference sample, exactly as scipy computes it
    direct = stats.ks_2samp(np.asarray(reference.features["x"]["sample"]), shifted_values)
    assert shifted.statistic == pytest.approx(direct.statistic)
    assert shifted.p_value == pytest.approx(direct.pvalue)
    assert shifted.drift


def test_reference_bins_quantiles_few_values_and_outer_bins() -> None:
    values = np.arange(1000, dtype=np.float64)
    edges = quantile_edges(values)
    assert len(edges) == 9
    counts = bin_counts(values, edges)
    assert counts.sum() == 1000 and counts.min() >= 99  # deciles: about 100 per bin
    # <= 10 distinct values: one bin per value
    few = np.array([0.0, 1, 1, 2, 2, 2, 5])
    assert bin_counts(few, quantile_edges(few)).tolist() == [1, 2, 3, 1]
    # values beyond the training range land in the outer bins, never dropped
    assert bin_counts(np.array([-1e9, 1e9]), edges).tolist() == [1] + [0] * 8 + [1]


def test_reference_roundtrip_is_strict_json(tmp_path) -> None:
    df = pd.DataFrame({"num": np.r_[np.arange(200.0), [np.nan] * 10], "cat": ["a", "b"] * 105})
    path = write_drift_reference(tmp_path, df, ["num", "cat"], predictions=np.linspace(0, 1, 210),
                                 labels=np.r_[np.zeros(105), np.ones(105)])
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    loaded = load_drift_reference(tmp_path)
    assert loaded is not None and path.name == REFERENCE_FILE
    num = loaded.features["num"]
    assert num["missing_rate"] == pytest.approx(10 / 210) and len(num["edges"]) == 9
    assert num["stats"]["median"] == pytest.approx(99.5) and "mad" in num["stats"]
    assert loaded.features["cat"]["categories"] == {"a": 105, "b": 105}
    assert loaded.prediction["kind"] == "numeric" and loaded.label["kind"] == "categorical"
    assert load_drift_reference(tmp_path / "nothing-here") is None


def test_training_artifact_carries_the_reference(model_artifact_dir) -> None:
    from mlplatform.datasets.synthetic import FEATURES

    reference = load_drift_reference(model_artifact_dir)
    assert reference is not None and set(reference.features) == set(FEATURES)
    assert reference.n_rows == 2000 and reference.prediction is not None and reference.label is not None


def test_chi_square_on_categories_including_unseen() -> None:
    rng = np.random.default_rng(1)
    reference = _reference(pd.DataFrame({"plan": rng.choice(["a", "b", "c"], 5000, p=[0.5, 0.3, 0.2])}))
    stable = compute_drift(reference, pd.DataFrame({"plan": rng.choice(["a", "b", "c"], 2000, p=[0.5, 0.3, 0.2])}))
    assert stable.features["plan"].level is AlertLevel.GREEN
    window = rng.choice(["a", "b", "c", "zzz"], 2000, p=[0.3, 0.3, 0.2, 0.2])
    result = compute_drift(reference, pd.DataFrame({"plan": window})).features["plan"]
    assert result.bins[-1] == "__unseen__" and result.current_proportions[-1] == pytest.approx(
        np.mean(window == "zzz"))
    ref_counts = [reference.features["plan"]["categories"][c] for c in ("a", "b", "c")] + [0]
    cur_counts = [int(np.sum(window == c)) for c in ("a", "b", "c")] + [int(np.sum(window == "zzz"))]
    direct = stats.chi2_contingency(np.array([ref_counts, cur_counts]), correction=False)
    assert result.statistic == pytest.approx(direct.statistic) and result.p_value == pytest.approx(direct.pvalue)
    assert result.drift and result.test == "chi2" and result.level >= AlertLevel.ORANGE


def test_stationary_features_raise_no_alert_over_30_windows() -> None:
    rng = np.random.default_rng(2)

    def frame(n: int) -> pd.DataFrame:
        return pd.DataFrame({"exp": rng.exponential(3.0, n), "norm": rng.normal(0, 1, n),
                             "cat": rng.choice(["x", "y", "z"], n, p=[0.6, 0.3, 0.1])})

    reference = _reference(frame(10_000))
    levels = [compute_drift(reference, frame(1000)).level for _ in range(30)]
    assert levels == [AlertLevel.GREEN] * 30


def test_minimum_samples_and_level_floor() -> None:
    rng = np.random.default_rng(3)
    reference = _reference(pd.DataFrame({"x": rng.normal(0, 1, 5000)}))
    tiny = compute_drift(reference, pd.DataFrame({"x": rng.normal(5, 1, 50)})).features["x"]
    assert tiny.status == "insufficient_data" and tiny.psi is None and tiny.level is AlertLevel.GREEN
    # 500 shifted rows: PSI and KS are reported, but levels need 1,000 rows
    mid = compute_drift(reference, pd.DataFrame({"x": rng.normal(2, 1, 500)})).features["x"]
    assert mid.status == "ok" and mid.psi > 0.25 and mid.drift and mid.level is AlertLevel.GREEN
    big = compute_drift(reference, pd.DataFrame({"x": rng.normal(2, 1, 1000)})).features["x"]
    assert big.level is AlertLevel.RED
    lowered = compute_drift(reference, pd.DataFrame({"x": rng.normal(2, 1, 500)}),
                            settings=DriftSettings(min_samples_for_level=100)).features["x"]
    assert lowered.level is AlertLevel.RED


def test_nan_and_missing_features_are_reported_never_no_drift() -> None:
    rng = np.random.default_rng(4)
    reference = _reference(pd.DataFrame({"a": rng.normal(0, 1, 3000), "b": rng.normal(0, 1, 3000)}))
    values = rng.normal(0, 1, 2000)
    values[:400] = np.nan
    result = compute_drift(reference, pd.DataFrame({"a": values}))
    assert result.features["a"].n == 1600 and result.features["a"].missing_rate == pytest.approx(0.2)
    assert result.features["b"].status == "missing" and result.features["b"].psi is None
    all_nan = compute_drift(reference, pd.DataFrame({"a": [np.nan] * 2000, "b": values}))
    assert all_nan.features["a"].status == "empty"
    empty = compute_drift(reference, pd.DataFrame({"a": [], "b": []}))
    assert empty.status == "insufficient_data" and empty.features["a"].status == "empty"


def test_prediction_drift_uses_the_ks_statistic_thresholds() -> None:
    rng = np.random.default_rng(5)
    train = pd.DataFrame({"x": rng.normal(0, 1, 5000)})
    reference = _reference(train, predictions=rng.beta(2, 5, 5000))
    same = compute_drift(reference, train.iloc[:2000], predictions=rng.beta(2, 5, 2000))
    assert same.prediction is not None and same.prediction.level is AlertLevel.GREEN
    shifted = compute_drift(reference, train.iloc[:2000], predictions=rng.beta(5, 2, 2000))
    assert shifted.prediction.level_metric == "prediction_ks"
    assert shifted.prediction.statistic >= 0.2 and shifted.prediction.level is AlertLevel.RED
    assert shifted.level is AlertLevel.RED


def test_an_arrow_window_drifts_exactly_as_the_same_dataframe() -> None:
    # monitoring reads large windows as Arrow tables in place: same figures as pandas, nulls and chunks included
    rng = np.random.default_rng(7)
    n = 12_000  # above scipy's exact-KS size, so the sorted-window KS path runs
    names = np.array([f"k{i:03d}" for i in range(300)], dtype=object)
    train = pd.DataFrame({"x": rng.normal(size=n), "i": rng.integers(0, 4, n), "c": names[rng.zipf(1.3, n) % 300]})
    reference = _reference(train)
    window = pd.DataFrame({"x": np.round(rng.normal(0.1, 1, n), 1), "i": rng.integers(0, 5, n).astype(float),
                           "c": names[rng.zipf(1.2, n) % 300]})
    window.loc[:99, "x"] = np.nan
    window.loc[:49, "c"] = None
    table = pa.Table.from_pandas(window, preserve_index=False)
    x, c, half = table["x"].combine_chunks(), table["c"].combine_chunks(), n // 2
    chunked = pa.table({  # two chunks each; the categories dictionary-encoded, one dictionary per chunk
        "x": pa.chunked_array([x[:half], x[half:]]), "i": table["i"],
        "c": pa.chunked_array([c[:half].dictionary_encode(), c[half:].dictionary_encode()])})
    expected = compute_drift(reference, window).to_dict()
    assert compute_drift(reference, table).to_dict() == expected
    assert compute_drift(reference, chunked).to_dict() == expected
    # the KS statistic and p-value from the one sort are scipy's, ties (values rounded to 0.1) included
    direct = stats.ks_2samp(np.asarray(reference.features["x"]["sample"]), window["x"].dropna().to_numpy())
    assert expected["features"]["x"]["statistic"] == float(direct.statistic)
    assert expected["features"]["x"]["p_value"] == float(direct.pvalue)
