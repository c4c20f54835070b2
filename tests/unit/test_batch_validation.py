"""Batch scoring's driver-side schema check, row split and worker-error translation (no Ray)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlplatform.batch.job import BatchResult, _check, _translate
from mlplatform.batch.validation import all_rows_valid, check_input_schema, split_valid_rows
from mlplatform.errors import IntegrityError, InvalidInput, MLPlatformError
from mlplatform.features.rows import RowRules
from mlplatform.features.schema import FeatureSpec

FEATURES = [FeatureSpec(name="x", dtype="float"), FeatureSpec(name="c", dtype="category")]


def test_row_split_keeps_valid_rows_and_gives_every_reason() -> None:
    df = pd.DataFrame({"id": ["a", None, "c", "d", "e"], "x": ["1.5", "2", "abc", "NA", "inf"],
                       "c": ["u", None, "v", "w", "u"]})
    split = split_valid_rows(df, FEATURES, ["id"])
    # "NA" is text, not a missing value, unless the model declares it a missing token (then it is missing)
    assert split.valid_positions.tolist() == [0] and split.invalid_positions.tolist() == [1, 2, 3, 4]
    assert split.reasons == ["id: missing_value (key column)", "x: wrong_type (expected float, got 'abc')",
                             "x: wrong_type (expected float, got 'NA')",
                             "x: not_finite (expected a finite number, got 'inf')"]
    assert split.features["x"].tolist() == [1.5]
    declared = split_valid_rows(df, FEATURES, ["id"], RowRules.of(["NA"]))
    assert declared.valid_positions.tolist() == [0, 3] and np.isnan(declared.features["x"].tolist()[1])


NUMERIC = [FeatureSpec(name="x", dtype="float", nullable=False), FeatureSpec(name="n", dtype="int")]


@pytest.mark.parametrize(("columns", "fast", "bad_rows"), [
    ({"id": ["a", "b"], "x": [1.5, -2.0], "n": [1, 2]}, True, 0),
    ({"id": ["a", "b"], "x": [1, 2], "n": [1, 2]}, True, 0),  # int data for a float feature (not strict)
    ({"id": ["a", None], "x": [1.5, 2.0], "n": [1, 2]}, False, 1),  # missing key
    ({"id": ["a", "b"], "x": [1.5, float("nan")], "n": [1, 2]}, False, 1),  # missing, not nullable
    ({"id": ["a", "b"], "x": [1.5, float("inf")], "n": [1, 2]}, False, 1),  # not finite
    ({"id": ["a", "b"], "x": [1.5, None], "n": [1, 2]}, False, 1),  # Arrow null
    ({"id": ["a", "b"], "x": [1.5, 2.0], "n": [1.0, 2.5]}, False, 1),  # fractional int
    ({"id": ["a", "b"], "x": [True, False], "n": [1, 2]}, False, 2),  # bool is not a number
    ({"id": ["a", "b"], "x": ["1.5", "2"], "n": [1, 2]}, False, 0),  # text: valid, but cast per row
])
def test_fast_path_agrees_with_the_row_split(columns: dict, fast: bool, bad_rows: int) -> None:
    """The Arrow-level shortcut may only say "all valid" when the full per-row split finds no bad row."""
    table = pa.table(columns)
    assert all_rows_valid(table, NUMERIC, ["id"]) is fast
    assert len(split_valid_rows(table.to_pandas(), NUMERIC, ["id"]).invalid_positions) == bad_rows


def test_fast_path_leaves_categories_to_the_row_split() -> None:
    table = pa.table({"x": [1.0, 2.0], "c": ["u", "v"]})
    assert not all_rows_valid(table, FEATURES)
    assert all_rows_valid(table, FEATURES[:1])


def test_schema_check_names_the_column() -> None:
    good = pa.schema([("id", pa.string()), ("x", pa.float64()), ("c", pa.dictionary(pa.int8(), pa.string()))])
    check_input_schema(good, FEATURES, ["id"])
    check_input_schema(pa.schema([("x", pa.string()), ("c", pa.int64())]), FEATURES, [])  # cast per row
    with pytest.raises(InvalidInput, match="missing_field") as caught:
        check_input_schema(pa.schema([("x", pa.float64())]), FEATURES, [])
    assert caught.value.field == "c"
    with pytest.raises(InvalidInput, match=r"wrong_type \(expected float, got 'list<item: double>' column\)") as caught:
        check_input_schema(pa.schema([("x", pa.list_(pa.float64())), ("c", pa.string())]), FEATURES, [])
    assert caught.value.field == "x"


def test_worker_failures_become_one_platform_error() -> None:
    trace = ("\x1b[36mray::MapWorker(MapBatches(BatchScorer)).submit()\x1b[39m (pid=1)\n"
             '  File "scorer.py", line 8, in __call__\n    raise IntegrityError(...)\n'
             "mlplatform.errors.IntegrityError: model.skops: bad bytes\n\n"
             "The above exception was the direct cause of the following exception:\n\n"
             "ray.exceptions.UserCodeException: UDF failed to process a data block.")
    error = _translate(RuntimeError(trace), "/out/model=m/version=1")
    assert isinstance(error, IntegrityError)
    assert str(error) == ("batch scoring failed in a worker: model.skops: bad bytes; no output was published to "
                          "/out/model=m/version=1")
    other = _translate(RuntimeError(trace.replace("mlplatform.errors.IntegrityError", "ZeroDivisionError")), "/o")
    assert type(other) is MLPlatformError and "ZeroDivisionError: model.skops: bad bytes" in str(other)


def test_rows_that_do_not_reconcile_are_refused() -> None:
    lost = BatchResult(run_id="r", model_name="m", model_version=1, output_path="/o/model=m/version=1",
                       quarantine_path="/o/q", rows_in=5000, rows_scored=4500, rows_quarantined=0, duration_s=1.0,
                       rows_per_s=5000.0, input_fingerprint="f")
    assert not lost.reconciled
    with pytest.raises(IntegrityError, match="5000 in != 4500 scored \\+ 0 quarantined; nothing was published"):
        _check(lost, 0.05, None, "/unused")  # type: ignore[arg-type]
