"""One dtype classifier: an Arrow column (a Ray Data fit, batch input, drift over Arrow) is classified as the pandas
column it reads as (a pandas fit, dataset hashes, profiles), for every Arrow type the platform reads."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlplatform.features.schema import arrow_dtype_family, arrow_logical_dtype, dtype_family, logical_dtype

T0 = dt.datetime(2026, 1, 2, 3, 4, 5)
# (Arrow type, two present values): every type the readers (Parquet, CSV, Ray Data) hand the platform
ARROW_TYPES: list[tuple[pa.DataType, list[Any]]] = [
    (pa.int8(), [1, -2]), (pa.int32(), [1, -2]), (pa.int64(), [1, -2]), (pa.uint16(), [1, 2]),
    (pa.float16(), [np.float16(0.5), np.float16(1.5)]), (pa.float32(), [0.5, 1.5]), (pa.float64(), [0.5, 1.5]),
    (pa.bool_(), [True, False]),
    (pa.string(), ["a", "b"]), (pa.large_string(), ["a", "b"]),
    (pa.dictionary(pa.int32(), pa.string()), ["a", "b"]),
    (pa.timestamp("us"), [T0, T0]), (pa.timestamp("ns", tz="UTC"), [T0, T0]), (pa.date32(), [T0.date(), T0.date()]),
    (pa.decimal128(10, 2), [Decimal("1.50"), Decimal("2.25")]),
]
EXPECTED = {  # (family without nulls, family with nulls): numpy ints and bools hold no null
    "int": ("int", "float"), "uint": ("int", "float"), "halffloat": ("float", "float"), "float": ("float", "float"),
    "double": ("float", "float"), "bool": ("bool", "string"), "string": ("string", "string"),
    "large_string": ("string", "string"), "dictionary": ("string", "string"), "timestamp": ("datetime", "datetime"),
    "date32": ("string", "string"), "decimal128": ("string", "string"),
}


def _column(arrow_type: pa.DataType, values: list[Any], with_null: bool) -> pa.ChunkedArray:
    rows = [*values, None if with_null else values[0]]  # three rows either way (one table holds them all)
    if pa.types.is_dictionary(arrow_type):
        return pa.chunked_array([pa.array(rows, type=pa.string()).dictionary_encode().cast(arrow_type)])
    return pa.chunked_array([pa.array(rows, type=arrow_type)])


@pytest.mark.parametrize("with_null", [False, True], ids=["no_nulls", "nulls"])
@pytest.mark.parametrize(("arrow_type", "values"), ARROW_TYPES, ids=[str(t) for t, _ in ARROW_TYPES])
def test_arrow_and_pandas_classifiers_agree(arrow_type: pa.DataType, values: list[Any], with_null: bool) -> None:
    column = _column(arrow_type, values, with_null)
    assert (column.null_count > 0) is with_null
    as_pandas = pa.table({"x": column}).to_pandas()["x"]  # what pd.read_parquet and a pandas fit see
    family = arrow_dtype_family(column.type, column.null_count > 0)
    assert family == dtype_family(as_pandas)
    assert arrow_logical_dtype(column.type, column.null_count > 0) == logical_dtype(as_pandas)
    name = next(k for k in sorted(EXPECTED, key=len, reverse=True) if str(arrow_type).startswith(k))
    assert family == EXPECTED[name][with_null]


def test_a_parquet_file_read_by_pandas_is_classified_as_its_arrow_schema_says(tmp_path: Any) -> None:
    table = pa.table({f"c{i}_{nulls}": _column(t, v, with_null=nulls) for i, (t, v) in enumerate(ARROW_TYPES)
                      for nulls in (False, True)})
    path = tmp_path / "all.parquet"
    pq.write_table(table, path)
    frame = pd.read_parquet(path)
    for field in pq.read_schema(path):
        has_nulls = table[field.name].null_count > 0
        assert dtype_family(frame[field.name]) == arrow_dtype_family(field.type, has_nulls), field


@pytest.mark.parametrize("code", ["?", "b", "B", "h", "i", "l", "q", "Q", "e", "f", "d", "g", "F", "O", "U", "S",
                                  "M8[ns]", "M8[us]", "m8[ns]"])
def test_numpy_fast_path_answers_as_the_pandas_checks(code: str) -> None:
    dtype = np.dtype(code)
    api = pd.api.types
    expected = ("bool" if api.is_bool_dtype(dtype) else "int" if api.is_integer_dtype(dtype)
                else "float" if api.is_float_dtype(dtype) else "datetime" if api.is_datetime64_any_dtype(dtype)
                else "string")
    assert dtype_family(dtype) == dtype_family(np.zeros(2, dtype=dtype)) == expected
    assert dtype_family(pd.Series(np.zeros(2, dtype=dtype))) == expected


@pytest.mark.parametrize(("dtype", "family"), [("Int64", "int"), ("Float64", "float"), ("boolean", "bool"),
                                               ("string", "string"), ("category", "string"),
                                               (pd.ArrowDtype(pa.int64()), "int"),
                                               (pd.ArrowDtype(pa.bool_()), "bool")])
def test_pandas_extension_dtypes(dtype: Any, family: str) -> None:
    assert dtype_family(pd.Series([None], dtype=dtype)) == family
