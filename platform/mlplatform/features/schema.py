"""Input schema of a model: ordered features with logical dtypes, taken from a training DataFrame."""

from __future__ import annotations

from typing import Any

import pandas as pd
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


def dtype_family(series: pd.Series) -> str:
    """The one dtype classifier: int | float | bool | datetime | string, from the column's dtype (pandas nullable
    and Arrow-backed dtypes included). Dataset hashes and profiles record it; schemas map it to a feature dtype."""
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    return "string"


def logical_dtype(series: pd.Series) -> str:
    """The feature dtype of a column: its :func:`dtype_family`, with text and datetimes as categories."""
    family = dtype_family(series)
    return family if family in NUMERIC_KINDS else "category"


def schema_to_json(schema: list[FeatureSpec]) -> list[dict[str, Any]]:
    return [s.model_dump(exclude_none=True) for s in schema]


def schema_from_json(data: list[dict[str, Any]]) -> list[FeatureSpec]:
    return [FeatureSpec(**d) for d in data]
