"""Input schema of a model: ordered features with logical dtypes, taken from a training DataFrame."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

NUMERIC_KINDS = {"float", "int", "bool"}
MAX_CATEGORIES = 1000


class FeatureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    dtype: str  # float | int | bool | category
    nullable: bool = True
    categories: list[str] | None = None
    min: float | None = None
    max: float | None = None

    @property
    def is_numeric(self) -> bool:
        return self.dtype in NUMERIC_KINDS


# numpy's kind letter decides a numpy dtype's family without pandas' dtype machinery (the row validator asks per
# column per request); the pandas checks below give the same answer for these kinds
_NUMPY_FAMILY = {"b": "bool", "i": "int", "u": "int", "f": "float", "M": "datetime"}


def dtype_family(column: pd.Series | np.ndarray | Any) -> str:
    """The one dtype classifier: int | float | bool | datetime | string, from a column's dtype (or a dtype itself;
    numpy, pandas nullable and Arrow-backed dtypes included). Dataset hashes and profiles record it; schemas map it
    to a feature dtype (:func:`logical_dtype`); Arrow columns are classified through it (:func:`arrow_dtype_family`).
    """
    dtype = getattr(column, "dtype", column)
    if isinstance(dtype, np.dtype):
        return _NUMPY_FAMILY.get(dtype.kind, "string")
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "string"


@functools.lru_cache(maxsize=512)
def arrow_dtype_family(arrow_type: pa.DataType, has_nulls: bool) -> str:
    """The :func:`dtype_family` of an Arrow column: the family of the pandas column it reads as, so that a fit over
    a Ray Dataset (Arrow blocks) and a fit over the same file read by pandas classify every column alike.

    The nulls rule lives here and only here: numpy's int and bool hold no null, so an int column with nulls reads
    as float64 and a bool column with nulls as object (a string, hence a category). Decimals read as objects too.
    """
    return dtype_family(pa.array([None] if has_nulls else [], type=arrow_type).to_pandas())


def is_number_family(family: str) -> bool:
    """A number, bool excluded: what gets numeric drift bins, numeric key matching and integer rounding."""
    return family in {"int", "float"}


def _feature_dtype(family: str) -> str:
    return family if family in NUMERIC_KINDS else "category"


def logical_dtype(series: pd.Series) -> str:
    """The feature dtype of a column: its :func:`dtype_family`, with text and datetimes as categories."""
    return _feature_dtype(dtype_family(series))


def arrow_logical_dtype(arrow_type: pa.DataType, has_nulls: bool) -> str:
    """The feature dtype of an Arrow column: :func:`logical_dtype` of the pandas column it reads as."""
    return _feature_dtype(arrow_dtype_family(arrow_type, has_nulls))


def schema_to_json(schema: list[FeatureSpec]) -> list[dict[str, Any]]:
    return [s.model_dump(exclude_none=True) for s in schema]


def schema_from_json(data: list[dict[str, Any]]) -> list[FeatureSpec]:
    return [FeatureSpec(**d) for d in data]
