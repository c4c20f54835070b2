"""The one row validator (SPEC S4.6): exact coercion rules, one reason vocabulary, the same verdict for a value whether
it arrives in a JSON row, an object column or a typed column."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlplatform.errors import InvalidInput
from mlplatform.features.rows import (
    MISSING_FIELD,
    MISSING_VALUE,
    NOT_FINITE,
    OUT_OF_RANGE,
    UNKNOWN_CATEGORY,
    WRONG_TYPE,
    RowRules,
    check_arrow,
    check_frame,
    check_records,
    infer_schema,
)
from mlplatform.features.schema import FeatureSpec

X = FeatureSpec(name="x", dtype="float")
N = FeatureSpec(name="n", dtype="int")
B = FeatureSpec(name="b", dtype="bool")
C = FeatureSpec(name="c", dtype="category", categories=["a", "NA"])
SCHEMA = [X, N, B, C]
OK = {"x": 1.0, "n": 1, "b": True, "c": "a"}

# (feature, value, reason or None, coerced value when accepted)
CASES = [
    ("x", 1, None, 1.0), ("x", -0.0, None, -0.0), ("x", 1e308, None, 1e308), ("x", "2", None, 2.0),
    ("x", "1e3", None, 1000.0), ("x", None, None, math.nan), ("x", math.nan, None, math.nan),
    ("x", True, WRONG_TYPE, None), ("x", "abc", WRONG_TYPE, None), ("x", "NA", WRONG_TYPE, None),
    ("x", "", WRONG_TYPE, None), ("x", " 2", WRONG_TYPE, None), ("x", "nan", WRONG_TYPE, None),
    ("x", math.inf, NOT_FINITE, None), ("x", "1e999", NOT_FINITE, None), ("x", 10**400, NOT_FINITE, None),
    ("x", "inf", NOT_FINITE, None), ("x", "-Infinity", NOT_FINITE, None),
    ("x", {"a": 1}, WRONG_TYPE, None), ("x", [1], WRONG_TYPE, None),
    ("n", 2, None, 2.0), ("n", 2.0, None, 2.0), ("n", "2", None, 2.0), ("n", 1.5, WRONG_TYPE, None),
    ("n", "1.5", WRONG_TYPE, None), ("n", False, WRONG_TYPE, None),
    ("b", True, None, 1.0), ("b", 0, None, 0.0), ("b", 2, WRONG_TYPE, None),
    ("c", "a", None, "a"), ("c", "NA", None, "NA"), ("c", "", None, ""), ("c", "None", None, "None"),
    ("c", 7, None, "7"), ("c", 7.0, None, "7"), ("c", "zzz", None, "zzz"), ("c", None, None, None),
    ("c", 7.5, WRONG_TYPE, None), ("c", True, WRONG_TYPE, None), ("c", ["a"], WRONG_TYPE, None),
]


@pytest.mark.parametrize(("feature", "value", "reason", "expected"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_one_value_one_verdict_in_rows_and_columns(feature: str, value: object, reason: str | None,
                                                   expected: object) -> None:
    from_rows = check_records([OK | {feature: value}], SCHEMA)
    from_column = check_frame(pd.DataFrame({**{k: [v] for k, v in OK.items()},
                                            feature: pd.Series([value], dtype=object)}), SCHEMA)
    for checked in (from_rows, from_column):
        assert [(i.field, i.reason) for i in checked.issues] == ([(feature, reason)] if reason else [])
        if reason is None:
            got = checked.frame[feature].iloc[0]
            assert got == expected or (pd.isna(got) and pd.isna(expected)), (value, got)
            if isinstance(expected, float) and expected == 0:
                assert math.copysign(1, got) == math.copysign(1, expected)
    assert [i.message for i in from_rows.issues] == [i.message for i in from_column.issues]


@pytest.mark.parametrize(("values", "spec"), [
    ([1.5, 2.0, None], N), ([True, False, None], X), ([1.0, math.inf, None], X), ([7, 8, None], C),
    ([7.0, 7.5, None], C), (["a", None, "b"], C), ([True, None], C),
])
def test_typed_columns_read_like_object_columns(values: list, spec: FeatureSpec) -> None:
    """A typed column (Parquet through Arrow, a clean DataFrame) takes the vectorised route; it must agree with the
    per-value route, message for message."""
    typed = pa.array(values).to_pandas()
    objects = pd.Series(values, dtype=object)
    a = check_frame(pd.DataFrame({spec.name: typed}), [spec])
    b = check_frame(pd.DataFrame({spec.name: objects}), [spec])
    assert [(i.row, i.reason, i.message) for i in a.issues] == [(i.row, i.reason, i.message) for i in b.issues]
    pd.testing.assert_frame_equal(a.frame, b.frame)


def test_missing_tokens_are_declared_not_assumed() -> None:
    rows = [{"x": "NA", "n": 1, "b": True, "c": "NA"}]
    plain = check_records(rows, SCHEMA)
    assert [(i.field, i.reason) for i in plain.issues] == [("x", WRONG_TYPE)]
    assert plain.frame["c"].iloc[0] == "NA"
    declared = check_records(rows, SCHEMA, RowRules.of(["NA"]))
    assert declared.issues == []
    assert math.isnan(declared.frame["x"].iloc[0]) and declared.frame["c"].iloc[0] is None


def test_missing_field_points_at_a_wrong_case_and_unknown_fields_are_reported() -> None:
    checked = check_records([{"X": 1.0, "n": 1, "b": True, "c": "a", "extra": 3}], SCHEMA)
    assert [(i.field, i.reason) for i in checked.issues] == [("x", MISSING_FIELD)]
    assert "'X'" in checked.issues[0].message
    assert checked.unknown_fields == ["X", "extra"]
    with pytest.raises(InvalidInput) as raised:
        checked.raise_for_issues("instances")
    assert raised.value.field == "instances[0].x" and raised.value.http_status == 422
    assert raised.value.details["errors"] == [{"index": 0, "field": "x", "reason": MISSING_FIELD,
                                               "message": checked.issues[0].message}]


def test_optional_checks_and_nullability() -> None:
    schema = [FeatureSpec(name="x", dtype="float", nullable=False, min=0.0, max=10.0),
              FeatureSpec(name="c", dtype="category", categories=["a"])]
    rows = [{"x": 50.0, "c": "zzz"}, {"x": None, "c": "a"}]
    assert [(i.row, i.reason) for i in check_records(rows, schema).issues] == [(1, MISSING_VALUE)]
    strict = check_records(rows, schema, RowRules.of(checks=["type", "null", "range", "category"]))
    assert [(i.row, i.field, i.reason) for i in strict.issues] == [
        (0, "x", OUT_OF_RANGE), (0, "c", UNKNOWN_CATEGORY), (1, "x", MISSING_VALUE)]
    assert strict.refused.tolist() == [True, True]


def test_long_values_are_shown_short() -> None:
    checked = check_records([OK | {"x": "y" * 10_000}], SCHEMA)
    assert len(checked.issues[0].message) < 80


def test_infer_schema_reads_values_as_the_validator_does() -> None:
    df = pd.DataFrame({"n": pd.Series([1, None, "NA"], dtype=object), "c": pd.Series([7, "a", None], dtype=object),
                       "f": [0.5, np.nan, 2.0]})
    schema = {s.name: s for s in infer_schema(df, ["n", "c", "f"], missing_tokens=["NA"])}
    assert schema["n"].dtype == "int" and (schema["n"].min, schema["n"].max) == (1.0, 1.0)
    assert schema["c"].dtype == "category" and schema["c"].categories == ["7", "a"]
    assert schema["f"].dtype == "float" and schema["f"].max == 2.0


# Several features refused in the same rows: the block routes (numeric features checked together, JSON rows read in
# one pass, clean Arrow text kept as Arrow) must give what one feature at a time gives, in schema order per row.
WIDE = [FeatureSpec(name="c", dtype="category", nullable=False, categories=["a", "b"]),
        FeatureSpec(name="x", dtype="float", min=0.0, max=10.0), FeatureSpec(name="n", dtype="int", nullable=False),
        FeatureSpec(name="d", dtype="category"), FeatureSpec(name="b", dtype="bool")]
WIDE_ROWS = [
    {"c": "a", "x": 1.0, "n": 2, "d": "p", "b": 1},
    {"c": None, "x": 50, "n": 1.5, "d": None, "b": 2},  # every feature of this row has something to say
    {"c": "zzz", "x": math.inf, "n": None, "d": "NA", "b": 0.0},
    {"c": "b", "x": None, "n": 7, "d": "q", "b": None},
]
STRICT = RowRules.of(["NA"], checks=["type", "null", "range", "category"])


@pytest.mark.parametrize("rules", [RowRules(), STRICT], ids=["default", "strict"])
def test_block_routes_give_the_per_feature_verdicts(rules: RowRules) -> None:
    per_feature = [(i.row, i.field, i.reason, i.message) for spec in WIDE
                   for i in check_records([{spec.name: r[spec.name]} for r in WIDE_ROWS], [spec], rules).issues]
    expected = sorted(per_feature, key=lambda i: (i[0], [s.name for s in WIDE].index(i[1])))
    assert expected  # the rows do refuse something under either rules
    frame = pd.DataFrame({s.name: pd.Series([r[s.name] for r in WIDE_ROWS], dtype=object) for s in WIDE})
    for checked in (check_records(WIDE_ROWS, WIDE, rules), check_frame(frame, WIDE, rules)):
        assert [(i.row, i.field, i.reason, i.message) for i in checked.issues] == expected
    with pytest.raises(InvalidInput) as raised:
        check_records(WIDE_ROWS, WIDE, rules).raise_for_issues("instances")
    assert raised.value.field == f"instances[{expected[0][0]}].{expected[0][1]}"


def test_a_json_row_lacking_a_feature_takes_the_per_feature_route() -> None:
    rows = [OK, {k: v for k, v in OK.items() if k != "n"}, OK | {"x": "2"}]
    checked = check_records(rows, SCHEMA)
    assert [(i.row, i.field, i.reason) for i in checked.issues] == [(1, "n", MISSING_FIELD)]
    assert checked.frame["x"].tolist() == [1.0, 1.0, 2.0]


@pytest.mark.parametrize("rules", [RowRules(), RowRules.of(["NA"]), STRICT], ids=["kept", "tokens", "strict"])
def test_arrow_text_kept_as_arrow_reads_as_the_numpy_route(rules: RowRules) -> None:
    schema = [FeatureSpec(name="c", dtype="category", categories=["a", "NA"]), X]
    values = ["a", None, "NA", "zzz"]
    for kind in (pa.string(), pa.large_string()):
        table = pa.table({"c": pa.array(values, kind), "x": [1.0, 2.0, None, 4.0]})
        arrow = check_arrow(table, schema, rules)
        numpy_route = check_frame(pd.DataFrame({"c": pd.Series(values, dtype=object), "x": [1.0, 2.0, None, 4.0]}),
                                  schema, rules)
        assert (arrow.arrow("c") is not None) == (rules == RowRules())  # only when no rule can change the text
        assert [(i.row, i.reason, i.message) for i in arrow.issues] == \
            [(i.row, i.reason, i.message) for i in numpy_route.issues]
        assert arrow.columns["c"].tolist() == numpy_route.columns["c"].tolist()
        pd.testing.assert_frame_equal(arrow.frame, numpy_route.frame)
