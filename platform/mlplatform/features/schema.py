"""Input schema of a model: ordered features with logical dtypes, taken from a training DataFrame."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from mlplatform.errors import InvalidInput

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


def logical_dtype(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    return "category"


def infer_schema(df: pd.DataFrame, features: list[str]) -> list[FeatureSpec]:
    specs = []
    for name in features:
        if name not in df.columns:
            raise InvalidInput(f"feature {name!r} is not a column of the data", field=name)
        col = df[name]
        kind = logical_dtype(col)
        if kind == "category":
            cats = sorted(map(str, col.dropna().unique()))
            # Above MAX_CATEGORIES the domain is open (hashed or high-cardinality): no allowed-category list.
            specs.append(FeatureSpec(name=name, dtype=kind, nullable=True,
                                     categories=cats if len(cats) <= MAX_CATEGORIES else None))
        else:
            values = col.astype("float64")
            specs.append(FeatureSpec(name=name, dtype=kind, nullable=True,
                                     min=float(np.nanmin(values)) if values.notna().any() else None,
                                     max=float(np.nanmax(values)) if values.notna().any() else None))
    return specs


def coerce_frame(df: pd.DataFrame, schema: list[FeatureSpec]) -> pd.DataFrame:
    """Columns in schema order with schema dtypes; a missing column or an uncastable value names the field."""
    missing = [f.name for f in schema if f.name not in df.columns]
    if missing:
        raise InvalidInput(f"missing required feature(s): {', '.join(missing)}", field=missing[0])
    out = {}
    for spec in schema:
        col = df[spec.name]
        if spec.is_numeric:
            if col.dtype == object or pd.api.types.is_string_dtype(col):
                converted = pd.to_numeric(col, errors="coerce")
                bad = converted.isna() & col.notna()
                if bad.any():
                    value = col[bad].iloc[0]
                    raise InvalidInput(f"expected a number, got {value!r}", field=spec.name)
                col = converted
            out[spec.name] = col.astype("float64")
        else:
            out[spec.name] = col.astype("object").where(col.notna(), None).map(
                lambda v: v if v is None else str(v))
    return pd.DataFrame(out, index=df.index)


def schema_to_json(schema: list[FeatureSpec]) -> list[dict[str, Any]]:
    return [s.model_dump(exclude_none=True) for s in schema]


def schema_from_json(data: list[dict[str, Any]]) -> list[FeatureSpec]:
    return [FeatureSpec(**d) for d in data]
