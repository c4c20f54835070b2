"""Input checks for batch scoring: the file schema on the driver (before any compute) and rows in the actors.

Schema problems stop the job before Ray starts work (a missing feature or a column of a type no row could ever be
cast from). Row problems never stop it: the row is quarantined with the reasons of the shared row validator, so
one bad value cannot take down a million-row job, and ``rows_in = rows_scored + rows_quarantined`` keeps the count
honest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlplatform.errors import InvalidInput
from mlplatform.features.datasets import MISSING_STRINGS
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
    """Row validation for one batch; all problems of a row are its reason, joined by ``; ``.

    The feature rules (type, nulls in non-nullable features) are the platform's one validator,
    :func:`mlplatform.features.validation.row_reasons`, shared with training gates and serving. Batch scoring adds
    two of its own: a missing entity key (a prediction nobody can join back is useless) and a non-finite number
    (the transform would turn it into a NaN score).
    """
    from mlplatform.features.validation import row_reasons

    n = len(df)
    reasons: dict[int, list[str]] = {}  # sparse: only rows with a problem
    for name in required:
        for i in np.flatnonzero(df[name].isna().to_numpy()):
            reasons.setdefault(int(i), []).append(f"missing value in key column {name!r}")
    feature_reasons = row_reasons(df, features).to_numpy()
    for i in np.flatnonzero(feature_reasons != ""):
        reasons.setdefault(int(i), []).append(feature_reasons[i])
    coerced: dict[str, Any] = {}
    for spec in features:
        col = df[spec.name]
        if col.dtype == object or pd.api.types.is_string_dtype(col):
            # Text the validator reads as missing ("", "NA", "null" ...) is missing here too, never a parse error.
            col = col.where(~col.map(lambda v: isinstance(v, str) and v.strip() in MISSING_STRINGS), None)
        if spec.is_numeric:
            values = pd.to_numeric(col, errors="coerce").astype("float64") if col.dtype == object or \
                pd.api.types.is_string_dtype(col) else col.astype("float64")
            for i in np.flatnonzero(np.isinf(values.to_numpy())):
                reasons.setdefault(int(i), []).append(f"{spec.name}: value is not finite")
            coerced[spec.name] = values
        else:
            coerced[spec.name] = col.astype("object").where(col.notna(), None).map(
                lambda v: v if v is None else str(v))
    invalid = np.zeros(n, dtype=bool)
    invalid[list(reasons)] = True
    valid_positions = np.flatnonzero(~invalid)
    frame = pd.DataFrame(coerced, index=df.index).iloc[valid_positions]
    invalid_positions = np.flatnonzero(invalid)
    return RowSplit(valid_positions, frame, invalid_positions, ["; ".join(reasons[int(i)]) for i in invalid_positions])


def all_rows_valid(batch: pa.Table, features: list[FeatureSpec], required: Sequence[str] = ()) -> bool:
    """True when no row of ``batch`` can fail :func:`split_valid_rows`, decided from Arrow types, null counts and
    one vectorised finiteness check per float column; the common all-numeric clean batch then skips the per-row
    split (a third of the scorer's time). False means "not sure": the caller runs the full split."""
    for name in required:
        if batch.column(name).null_count:
            return False
    for spec in features:
        column = batch.column(spec.name)
        kind = column.type
        if column.null_count:
            return False
        if spec.dtype == "int" and pa.types.is_integer(kind):
            continue
        if spec.dtype != "float" or not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            return False  # categories, bools, strings and int-from-float need the per-row rules
        if pa.types.is_floating(kind) and not pc.all(pc.is_finite(column)).as_py():
            return False  # NaN (missing) or infinity somewhere
    return True
