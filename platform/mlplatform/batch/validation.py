"""Input checks for batch scoring: the file schema on the driver (before any compute) and rows in the actors.

Schema problems stop the job before Ray starts work (a missing feature or a column of a type no row could ever be
cast from). Row problems never stop it: the row is quarantined with a reason, so one bad value cannot take down a
million-row job, and the reconciliation ``rows_in = rows_scored + rows_quarantined`` keeps the count honest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlplatform.errors import InvalidInput
from mlplatform.features.schema import FeatureSpec


def _numeric_compatible(kind: pa.DataType) -> bool:
    # Strings are accepted: each value is cast per row and an uncastable one quarantines its row (CSV input).
    return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_decimal(kind) or pa.types.is_null(kind) or _is_string(kind))


def _category_compatible(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _category_compatible(kind.value_type)
    return (_is_string(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind)
            or pa.types.is_null(kind))


def _is_string(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def check_input_schema(schema: pa.Schema, features: list[FeatureSpec], keep_columns: list[str]) -> None:
    """InvalidInput naming the first column that is missing or whose type cannot hold the feature."""
    for name in keep_columns:
        if name not in schema.names:
            raise InvalidInput(f"column {name!r} asked for by --keep-columns/--partition-by is not in the input "
                               f"(columns: {', '.join(schema.names)})", field=name)
    for spec in features:
        if spec.name not in schema.names:
            raise InvalidInput(f"the model needs feature {spec.name!r}, which the input does not have",
                               field=spec.name)
        kind = schema.field(spec.name).type
        ok = _numeric_compatible(kind) if spec.is_numeric else _category_compatible(kind)
        if not ok:
            raise InvalidInput(f"feature {spec.name!r} is {kind} in the input but the model expects "
                               f"{spec.dtype}", field=spec.name)


@dataclass(frozen=True)
class RowSplit:
    """Positions of the valid rows with their coerced features, and the rejected rows' positions and reasons."""

    valid_positions: np.ndarray
    features: pd.DataFrame
    invalid_positions: np.ndarray
    reasons: list[str]


def split_valid_rows(df: pd.DataFrame, features: list[FeatureSpec], required: Sequence[str] = ()) -> RowSplit:
    """Vectorised row validation; the first problem of a row (in schema order) is its reason.

    A row is rejected for a missing value in a ``required`` column (entity keys) or a non-nullable feature, a
    numeric value that does not parse, or a non-finite number (the transform would turn it into NaN scores).
    """
    n = len(df)
    reasons = np.full(n, None, dtype=object)

    def reject(mask: np.ndarray, reason: str) -> None:
        hit = mask & pd.isna(reasons)
        reasons[hit] = reason

    for name in required:
        reject(df[name].isna().to_numpy(), f"missing value in key column {name!r}")
    coerced: dict[str, Any] = {}
    for spec in features:
        col = df[spec.name]
        if spec.is_numeric:
            if col.dtype == object or pd.api.types.is_string_dtype(col):
                text = col.astype("string").str.strip()
                col = col.where(text != "", None)  # an empty CSV cell is a missing value, not a bad number
                values = pd.to_numeric(col, errors="coerce").astype("float64")
                bad = (values.isna() & col.notna()).to_numpy()
                if bad.any():
                    for position in np.flatnonzero(bad & pd.isna(reasons)):
                        reasons[position] = f"{spec.name}: cannot cast {col.iloc[position]!r} to a number"
            else:
                values = col.astype("float64")
            array = values.to_numpy()
            reject(np.isinf(array), f"{spec.name}: value is not finite")
            missing = np.isnan(array)
            coerced[spec.name] = values
        else:
            missing = col.isna().to_numpy()
            coerced[spec.name] = col.astype("object").where(col.notna(), None).map(
                lambda v: v if v is None else str(v))
        if not spec.nullable:
            reject(missing, f"{spec.name}: missing required value")
    invalid = pd.notna(reasons)
    valid_positions = np.flatnonzero(~invalid)
    frame = pd.DataFrame(coerced, index=df.index).iloc[valid_positions] if features else df.iloc[valid_positions]
    return RowSplit(valid_positions, frame, np.flatnonzero(invalid), [str(r) for r in reasons[invalid]])
