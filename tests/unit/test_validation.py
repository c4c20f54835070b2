"""Data validation: thresholds at their boundaries, dtype rules, quarantine, serving errors (SPEC S4.6, S4.7)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlplatform.datasets.synthetic import FEATURES, make_churn
from mlplatform.features.datasets import profile_frame
from mlplatform.features.rows import infer_schema
from mlplatform.features.schema import FeatureSpec
from mlplatform.features.validation import (
    DataValidationFailed,
    Level,
    ValidationConfig,
    validate_frame,
)

X = FeatureSpec(name="x", dtype="float", min=0.0, max=100.0)


def _levels(report: object, check: str) -> list[str]:
    return [c.level.name for c in report.checks if c.check == check]  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_churn(4000, seed=1)


@pytest.mark.parametrize(("n_outside", "level"), [(0, "INFO"), (9, "INFO"), (10, "WARNING"), (49, "WARNING"),
                                                  (50, "ERROR")])
def test_out_of_range_share_boundaries(n_outside: int, level: str) -> None:
    values = np.full(1000, 50.0)
    values[:n_outside] = 150.0
    report = validate_frame(pd.DataFrame({"x": values}), [X])
    assert _levels(report, "range") == [level]
    assert report.passed == (level == "INFO") and report.level.name == level


def test_nan_is_missing_never_in_range_and_missing_strings_are_caught() -> None:
    df = pd.DataFrame({"x": [np.nan, 1.0, 2.0, 3.0], "c": ["nan", "", "None", "a"]})
    schema = [X, FeatureSpec(name="c", dtype="category", categories=["a"])]
    report = validate_frame(df, schema)
    missing = {c.column: c.details["missing"] for c in report.checks if c.check == "missing"}
    assert missing == {"x": 1, "c": 0}  # text is a category unless declared a missing token
    markers = [c for c in report.checks if c.check == "missing_markers"]
    assert [(c.column, c.level, c.details["markers"]) for c in markers] == [
        ("c", Level.WARNING, {"nan": 1, "": 1, "None": 1})]
    declared = validate_frame(df, schema, config=ValidationConfig(missing_tokens=["nan", "", "None"]))
    assert {c.column: c.details["missing"] for c in declared.checks if c.check == "missing"} == {"x": 1, "c": 3}
    assert _levels(report, "range") == ["INFO"] and _levels(report, "categories") == ["ERROR"]  # 3 of 4 unseen
    assert _levels(declared, "categories") == ["INFO"]
    strict = [FeatureSpec(name="x", dtype="float", nullable=False)]
    assert validate_frame(df, strict).level == Level.ERROR


def test_missing_column_all_missing_and_missing_rate_limit() -> None:
    report = validate_frame(pd.DataFrame({"y": [1.0]}), [X])
    assert _levels(report, "required_column") == ["ERROR"] and _levels(report, "unexpected_columns") == ["WARNING"]
    assert _levels(validate_frame(pd.DataFrame({"x": [np.nan] * 5}), [X]), "missing") == ["ERROR"]
    df = pd.DataFrame({"x": [1.0, np.nan, np.nan, 4.0]})
    assert _levels(validate_frame(df, [X], config=ValidationConfig(max_missing_rate=0.5)), "missing") == ["INFO"]
    assert _levels(validate_frame(df, [X], config=ValidationConfig(max_missing_rate=0.4)), "missing") == ["ERROR"]


def test_dtype_families() -> None:
    ints = pd.DataFrame({"x": [1, 2, 3]})
    assert validate_frame(ints, [X]).passed  # int accepted as float
    assert _levels(validate_frame(ints, [X], config=ValidationConfig(strict_dtypes=True)), "dtype") == ["ERROR"]
    assert _levels(validate_frame(pd.DataFrame({"x": [True, False]}), [X]), "dtype") == ["ERROR"]  # bool != int
    nullable = pd.DataFrame({"x": pd.array([1, None, 3], dtype="Int64")})
    assert _levels(validate_frame(nullable, [X]), "dtype") == ["INFO"]
    mixed = pd.DataFrame({"x": ["1.5", "abc", 3.0]})
    report = validate_frame(mixed, [X])
    assert _levels(report, "dtype") == ["ERROR"] and _levels(report, "range") == []  # type failure skips ranges
    frac = validate_frame(pd.DataFrame({"n": [1.0, 2.5]}), [FeatureSpec(name="n", dtype="int")])
    assert _levels(frac, "dtype") == ["ERROR"]


def _shifted(reference: pd.DataFrame, column: str, z: float, n: int) -> pd.DataFrame:
    """``n`` reference rows whose anomaly-free mean sits ``z`` standard errors above the reference's."""
    prof = profile_frame(reference)["columns"][column]
    rng = np.random.default_rng(0)
    values = rng.normal(0, 1, n)
    values = (values - values.mean()) / values.std() * prof["robust"]["sd"]
    values = values + prof["robust"]["mean"] + z * prof["robust"]["sd"] / np.sqrt(n)
    return pd.DataFrame({column: values})


@pytest.mark.parametrize(("z", "level"), [(1.9, "INFO"), (2.1, "WARNING"), (3.1, "ERROR")])
def test_mean_shift_in_standard_errors(reference: pd.DataFrame, z: float, level: str) -> None:
    spec = FeatureSpec(name="age", dtype="float")
    batch = _shifted(reference, "age", z, 2500)  # 2500 rows: z of 3 is 0.06 sd... under the 0.1 sd guard
    report = validate_frame(batch, [spec], profile_frame(reference))
    assert _levels(report, "mean_shift") == ["INFO"]
    batch = _shifted(reference, "age", z, 200)  # 200 rows: the same z is over 0.1 sd, so it counts
    report = validate_frame(batch, [spec], profile_frame(reference))
    check = next(c for c in report.checks if c.check == "mean_shift")
    assert check.level.name == level and check.details["z"] == pytest.approx(z, rel=1e-6)


def test_deliberate_shift_fails_and_one_outlier_does_not(reference: pd.DataFrame) -> None:
    spec = FeatureSpec(name="age", dtype="float")
    prof = profile_frame(reference)
    shifted = reference[["age"]].iloc[:500].assign(age=lambda d: d["age"] + 20)  # 45 -> 65
    assert _levels(validate_frame(shifted, [spec], prof), "mean_shift") == ["ERROR"]
    clean = reference[["age"]].iloc[:500].copy()
    clean.iloc[0, 0] = 1e6  # one outlier is an anomaly, excluded from the mean
    report = validate_frame(clean, [spec], prof)
    assert _levels(report, "mean_shift") == ["INFO"] and _levels(report, "anomalies") == ["INFO"]


def test_reference_validates_against_its_own_profile_and_small_batches_are_insufficient(
        reference: pd.DataFrame) -> None:
    schema = infer_schema(reference, FEATURES)
    config = ValidationConfig(ignore_columns=["customer_id", "event_time", "churned"])
    report = validate_frame(make_churn(3000, seed=2), schema, profile_frame(reference), config)
    assert report.passed, report.to_text()
    small = validate_frame(reference.iloc[:20], schema, profile_frame(reference), config)
    assert {c.status for c in small.checks if c.check == "distribution"} == {"insufficient_data"}
    drifted = validate_frame(make_churn(3000, seed=3, drift=0.6), schema, profile_frame(reference), config)
    assert not drifted.passed and drifted.errors
    body = json.loads(drifted.to_json())
    assert body["level"] == "ERROR" and body["passed"] is False and body["checks"]
    assert "FAILED" in drifted.to_text() and "mean_shift" in drifted.to_text()
    with pytest.raises(DataValidationFailed) as info:
        drifted.raise_for_errors()
    assert info.value.exit_code == 3
