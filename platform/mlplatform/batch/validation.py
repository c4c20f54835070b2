"""Input checks for batch scoring: the file schema on the driver (before any compute) and rows in the actors.

Schema problems stop the job before Ray starts work (a missing feature or a column of a type no row could ever be
cast from), named with the row validator's reasons. Row problems never stop it: the row is quarantined with the
reasons of the platform's one row validator (:mod:`mlplatform.features.rows`, also serving's and training's), so one
bad value cannot take down a million-row job, and ``rows_in = rows_scored + rows_quarantined`` keeps the count
honest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlplatform.errors import InvalidInput
from mlplatform.features.rows import MISSING_FIELD, WRONG_TYPE, RowRules, check_frame, issue_message
from mlplatform.features.schema import FeatureSpec


def _numeric_compatible(kind: pa.DataType) -> bool:
    # Strings are accepted: each value is cast per row and an uncastable one quarantines its row (CSV input).
    return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_decimal(kind) or pa.types.is_null(kind) or _is_string(kind))


def _category_compatible(kind: pa.DataType) -> bool:
    # Floats pass: integral values are category codes (7.0 is "7"), the rest is refused per row.
    if pa.types.is_dictionary(kind):
        return _category_compatible(kind.value_type)
    return (_is_string(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind)
            or pa.types.is_floating(kind) or pa.types.is_null(kind))


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
            raise InvalidInput(f"{MISSING_FIELD} (the input has no column {spec.name!r})",
                               field=spec.name, reason=MISSING_FIELD)
        kind = schema.field(spec.name).type
        ok = _numeric_compatible(kind) if spec.is_numeric else _category_compatible(kind)
        if not ok:
            raise InvalidInput(f"{WRONG_TYPE} ({issue_message(WRONG_TYPE, spec, str(kind))} column)",
                               field=spec.name, reason=WRONG_TYPE)


@dataclass(frozen=True)
class RowSplit:
    """Positions of the valid rows with their coerced features, and the rejected rows' positions and reasons."""

    valid_positions: np.ndarray
    features: pd.DataFrame
    invalid_positions: np.ndarray
    reasons: list[str]


def split_valid_rows(df: pd.DataFrame, features: list[FeatureSpec], required: Sequence[str] = (),
                     rules: RowRules | None = None) -> RowSplit:
    """Row validation for one batch with the model's rules; all problems of a row are its reason, joined by ``; ``.
    Batch scoring adds one rule of its own: a missing entity key (a prediction nobody can join back is useless)."""
    reasons: dict[int, list[str]] = {}  # sparse: only rows with a problem
    for name in required:
        for i in np.flatnonzero(df[name].isna().to_numpy()):
            reasons.setdefault(int(i), []).append(f"{name}: missing_value (key column)")
    checked = check_frame(df, features, rules)
    for issue in checked.issues:
        reasons.setdefault(issue.row, []).append(issue.text)
    invalid = np.zeros(len(df), dtype=bool)
    invalid[list(reasons)] = True
    valid_positions = np.flatnonzero(~invalid)
    invalid_positions = np.flatnonzero(invalid)
    return RowSplit(valid_positions, checked.frame.iloc[valid_positions], invalid_positions,
                    ["; ".join(reasons[int(i)]) for i in invalid_positions])


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
