"""The one row validator (SPEC S4.6): what a value must be to fit a feature, and what it becomes.

Training's data check, the fitted transform (so :class:`~mlplatform.predictor.Predictor`), batch scoring and HTTP
serving all call :func:`check_frame` or :func:`check_records`, so a row is accepted, refused or coerced the same way
on every path, with one reason vocabulary (a field and one of :data:`REASONS`).

The rules:

* **Missing** is a true null only: ``None``, ``NaN``, ``pd.NA``, ``NaT``. A string is never missing unless the model
  declares it in ``missing_tokens`` (training config ``features.missing_tokens``, shipped in the artifact), so
  ``region="NA"`` is the category ``"NA"`` everywhere by default.
* **Numeric features** (float, int, bool) take numbers and numeric text that parses exactly (``"2"``, ``"1e3"``;
  never ``" 2"``, ``"nan"`` or ``"inf"``). A bool is not a number unless the feature is bool. An int feature needs an
  integral value (``2.0`` fits, ``1.5`` does not); a bool feature takes ``True``/``False`` or 0/1. Non-finite numbers
  are refused (``not_finite``).
* **Categorical features** take text, or an integral number, which becomes its decimal text (``7`` and ``7.0`` are
  ``"7"``). Bools, fractional numbers, lists and objects are refused.
* A feature absent from the input is ``missing_field`` (names are case-sensitive); fields the model does not know are
  reported in :attr:`CheckedRows.unknown_fields`, never refused.
* Ranges and training categories are checked only when asked (``checks``): serving maps an unseen category to the
  out-of-vocabulary slot.

Vectorised for typed columns (Arrow batches, clean DataFrames); per value only for object columns (JSON rows, mixed
text), with the same messages on both routes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlplatform.errors import InvalidInput
from mlplatform.features.schema import MAX_CATEGORIES, NUMERIC_KINDS, FeatureSpec, logical_dtype

MISSING_FIELD = "missing_field"
MISSING_VALUE = "missing_value"
WRONG_TYPE = "wrong_type"
NOT_FINITE = "not_finite"
OUT_OF_RANGE = "out_of_range"
UNKNOWN_CATEGORY = "unknown_category"
REASONS = (MISSING_FIELD, MISSING_VALUE, WRONG_TYPE, NOT_FINITE, OUT_OF_RANGE, UNKNOWN_CATEGORY)
ROW_CHECKS = frozenset({"type", "null", "range", "category"})
# Text that often stands for a missing value. Never read as missing unless declared; the dataset report warns.
COMMON_MISSING_MARKERS = frozenset({"", "nan", "NaN", "NAN", "None", "none", "null", "NULL", "NA", "N/A", "<NA>"})

# Exact decimal text: optional sign, digits with an optional fraction, optional exponent. No spaces, no nan/inf.
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INFINITY_TEXT = frozenset({"inf", "infinity"})
_MAX_EXACT_INT = 2.0**53  # above this a float no longer names one integer: it is no category code
_SHOW_CHARS = 40


@dataclass(frozen=True)
class RowRules:
    """What counts as missing and which optional checks run; part of a model (its transform config)."""

    missing_tokens: frozenset[str] = frozenset()
    strict_dtypes: bool = False  # refuse int values for float features
    checks: frozenset[str] = frozenset({"type", "null"})

    @classmethod
    def of(cls, missing_tokens: Iterable[str] = (), *, strict_dtypes: bool = False,
           checks: Iterable[str] = ("type", "null")) -> RowRules:
        unknown = set(checks) - ROW_CHECKS
        if unknown:
            raise InvalidInput(f"unknown row check(s) {sorted(unknown)}; known: {sorted(ROW_CHECKS)}",
                               field="row_checks")
        return cls(frozenset(missing_tokens), strict_dtypes, frozenset(checks) | {"type"})


@dataclass(frozen=True)
class RowIssue:
    row: int  # position in the input
    field: str
    reason: str  # one of REASONS
    message: str

    @property
    def text(self) -> str:
        """``field: reason (detail)``: the form quarantine files and validation reports show."""
        return f"{self.field}: {self.reason} ({self.message})"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.row, "field": self.field, "reason": self.reason, "message": self.message}


@dataclass
class CheckedRows:
    """Every input row in schema order: numeric features float64 (NaN = missing), categorical ``str`` or ``None``.
    Refused rows are present too, with their bad values missing; :attr:`refused` says which they are."""

    frame: pd.DataFrame
    issues: list[RowIssue]
    unknown_fields: list[str] = field(default_factory=list)

    @property
    def refused(self) -> np.ndarray:
        mask = np.zeros(len(self.frame), dtype=bool)
        if self.issues:
            mask[[i.row for i in self.issues]] = True
        return mask

    def raise_for_issues(self, path: str | None = None) -> CheckedRows:
        """InvalidInput (HTTP 422) naming the first bad field, every issue in ``details["errors"]``. With ``path``
        (serving: ``"instances"``) the field reads ``instances[3].age``; without, the feature's name."""
        if not self.issues:
            return self
        first = self.issues[0]
        where = f" in row {first.row}" if len(self.frame) > 1 and not path else ""
        raise InvalidInput(f"{first.reason} ({first.message}){where}",
                           field=f"{path}[{first.row}].{first.field}" if path else first.field,
                           reason=first.reason, errors=[i.to_dict() for i in self.issues[:100]],
                           error_count=len(self.issues))

    def tuples(self) -> list[tuple[Any, ...]]:
        """Rows as tuples in schema order, ``None`` for missing (JSON-safe: no NaN)."""
        columns = [self.frame[c].to_numpy(dtype=object, copy=True) for c in self.frame.columns]
        for values in columns:
            values[pd.isna(values)] = None
        return list(zip(*columns, strict=True)) if columns else [() for _ in range(len(self.frame))]


# -- entry points --------------------------------------------------------------------------------------------------
def check_frame(df: pd.DataFrame, schema: Sequence[FeatureSpec], rules: RowRules | None = None) -> CheckedRows:
    """Check the feature columns of a DataFrame (an Arrow batch converted with ``to_pandas`` works the same)."""
    rules = rules or RowRules()
    names = {s.name for s in schema}
    columns: dict[str, Any] = {}
    issues: list[RowIssue] = []
    n = len(df)
    for spec in schema:
        if spec.name not in df.columns:
            message = _absent_message(spec.name, map(str, df.columns))
            issues.extend(RowIssue(i, spec.name, MISSING_FIELD, message) for i in range(n))
            columns[spec.name] = _empty(spec, n)
            continue
        checked = check_column(df[spec.name], spec, rules)
        columns[spec.name] = checked.values
        issues.extend(checked.issues)
    frame = _frame(columns, schema, df.index)
    issues.sort(key=lambda i: i.row)  # stable: schema order within a row
    return CheckedRows(frame, issues, [str(c) for c in df.columns if c not in names])


def check_records(records: Sequence[Mapping[str, Any]], schema: Sequence[FeatureSpec],
                  rules: RowRules | None = None) -> CheckedRows:
    """Check JSON-style rows (a list of objects). Values keep their Python types, so ``7`` stays an int and ``"7"``
    text; no DataFrame inference runs (pandas would turn ``[7, None]`` into floats)."""
    rules = rules or RowRules()
    n = len(records)
    names = {s.name for s in schema}
    absent = object()
    columns: dict[str, Any] = {}
    issues: list[RowIssue] = []
    unknown: dict[str, None] = {}
    for record in records:
        for key in record:
            if key not in names:
                unknown.setdefault(str(key), None)
    for spec in schema:
        raw = np.empty(n, dtype=object)
        raw[:] = [record.get(spec.name, absent) for record in records]
        gone = np.fromiter((v is absent for v in raw), dtype=bool, count=n)
        if gone.any():
            for i in np.flatnonzero(gone):
                issues.append(RowIssue(int(i), spec.name, MISSING_FIELD,
                                       _absent_message(spec.name, map(str, records[i].keys()))))
            raw[gone] = None
        checked = check_column(pd.Series(raw, dtype=object), spec, rules)
        columns[spec.name] = checked.values
        issues.extend(checked.issues)
    issues.sort(key=lambda i: i.row)
    return CheckedRows(_frame(columns, schema, pd.RangeIndex(n)), issues, list(unknown))


def coerced_frame(df: pd.DataFrame, schema: Sequence[FeatureSpec], rules: RowRules | None = None) -> pd.DataFrame:
    """The checked features of ``df``; InvalidInput naming the first bad field if any row is refused."""
    return check_frame(df, schema, rules).raise_for_issues().frame


def infer_schema(df: pd.DataFrame, features: Sequence[str], missing_tokens: Iterable[str] = (),
                 declared: Sequence[FeatureSpec] | None = None) -> list[FeatureSpec]:
    """The schema training fits: each feature's dtype from its column (:func:`logical_dtype`; an object column
    whose values, nulls and missing tokens aside, are all numbers is numeric), then categories, min and max from
    the values the validator accepts, so the schema never lists a value the validator would not produce.
    ``declared`` (the training config's ``data.declared_schema``) wins: its dtypes, and its nullability, ranges and
    categories where it sets them."""
    rules = RowRules.of(missing_tokens)
    given = {s.name: s for s in declared or []}
    specs = []
    for name in features:
        if name not in df.columns:
            raise InvalidInput(f"feature {name!r} is not a column of the data", field=name)
        if name in given:
            specs.append(FeatureSpec(name=name, dtype=given[name].dtype))
            continue
        column = df[name]
        dtype = logical_dtype(column)
        if dtype == "category" and pd.api.types.is_object_dtype(column.dtype):
            dtype = _object_numeric_kind(column, rules) or dtype
        specs.append(FeatureSpec(name=name, dtype=dtype))
    frame = check_frame(df, specs, rules).frame  # refused values read as missing here; the fit refuses them
    out = []
    for spec in specs:
        values = frame[spec.name]
        if spec.dtype in NUMERIC_KINDS:
            present = values.dropna()
            update: dict[str, Any] = {"min": float(present.min()) if len(present) else None,
                                      "max": float(present.max()) if len(present) else None}
        else:
            categories = sorted(set(values.dropna()))
            # Above MAX_CATEGORIES the domain is open (hashed or high-cardinality): no allowed-category list.
            update = {"categories": categories if len(categories) <= MAX_CATEGORIES else None}
        if spec.name in given:
            update |= given[spec.name].model_dump(exclude_none=True, exclude={"name", "dtype"})
        out.append(spec.model_copy(update=update))
    return out


def _object_numeric_kind(column: pd.Series, rules: RowRules) -> str | None:
    """int or float when every present value of an object column is a number (JSON rows with nulls or tokens)."""
    present = [v for v in column.to_numpy(dtype=object)
               if not _is_null(v) and not (isinstance(v, str) and v in rules.missing_tokens)]
    if not present or not all(isinstance(v, int | float | np.integer | np.floating)
                              and not isinstance(v, bool | np.bool_) for v in present):
        return None
    return "int" if all(isinstance(v, int | np.integer) for v in present) else "float"


def issue_message(reason: str, spec: FeatureSpec, value: Any = None) -> str:
    """The detail of an issue; the one wording for every path (vectorised and per value alike)."""
    if reason == MISSING_VALUE:
        return "the feature is not nullable"
    if reason == NOT_FINITE:
        return f"expected a finite number, got {_show(value)}"
    if reason == OUT_OF_RANGE:
        return f"{_show(value)} outside [{spec.min}, {spec.max}]"
    if reason == UNKNOWN_CATEGORY:
        return f"{_show(value)} is not a training category"
    expected = spec.dtype if spec.is_numeric else "category (text or integer)"
    if isinstance(value, bool | np.bool_) and spec.dtype != "bool":
        return f"expected {expected}, got bool" + (" (bool is not a number)" if spec.is_numeric else "")
    return f"expected {expected}, got {_show(value)}"


# -- columns -------------------------------------------------------------------------------------------------------
@dataclass
class _Parsed:
    values: np.ndarray  # float64, or object (str | None)
    missing: np.ndarray  # bool: a true null (or a declared missing token)
    reason: np.ndarray  # object: None, or the reason the value is refused
    shown: Callable[[int], Any]  # the value at a position as messages show it


@dataclass(frozen=True)
class CheckedColumn:
    values: np.ndarray  # float64 (NaN: missing or refused) or object (str; None: missing or refused)
    missing: np.ndarray  # bool: a true null or a declared missing token
    issues: list[RowIssue]


def check_column(raw: pd.Series, spec: FeatureSpec, rules: RowRules | None = None) -> CheckedColumn:
    """One feature's column: its coerced values, which are missing, and the refused ones with their reasons."""
    rules = rules or RowRules()
    parsed = (_numeric_column if spec.is_numeric else _category_column)(raw, spec, rules)
    values, missing, reason = parsed.values, parsed.missing, parsed.reason
    if "null" in rules.checks and not spec.nullable:
        reason = np.where(missing & pd.isna(reason), MISSING_VALUE, reason)
    if spec.is_numeric and "range" in rules.checks and (spec.min is not None or spec.max is not None):
        with np.errstate(invalid="ignore"):
            outside = np.zeros(len(values), dtype=bool)
            if spec.min is not None:
                outside |= values < spec.min
            if spec.max is not None:
                outside |= values > spec.max
        reason = np.where(outside & pd.isna(reason), OUT_OF_RANGE, reason)
    if not spec.is_numeric and "category" in rules.checks and spec.categories is not None:
        known = pd.Series(values, dtype=object).isin(set(spec.categories)).to_numpy()
        unknown = ~known & pd.notna(values)
        reason = np.where(unknown & pd.isna(reason), UNKNOWN_CATEGORY, reason)
    bad = np.flatnonzero(~pd.isna(reason))
    issues = [RowIssue(int(i), spec.name, str(reason[i]),
                       issue_message(str(reason[i]), spec, parsed.shown(int(i)))) for i in bad]
    if len(bad):
        values = values.copy()
        values[bad] = np.nan if spec.is_numeric else None
    return CheckedColumn(values, missing, issues)


def _numeric_column(raw: pd.Series, spec: FeatureSpec, rules: RowRules) -> _Parsed:
    n = len(raw)
    reason = np.full(n, None, dtype=object)
    kind = _kind(raw)
    if kind == "number":
        values = raw.to_numpy(dtype="float64", na_value=np.nan)
        missing = np.isnan(values)
        if rules.strict_dtypes and spec.dtype == "float" and pd.api.types.is_integer_dtype(raw.dtype):
            reason[~missing] = WRONG_TYPE
        shown = _shown_numbers(values, raw)
    elif kind == "bool":
        values = raw.to_numpy(dtype="float64", na_value=np.nan)
        missing = np.isnan(values)
        if spec.dtype != "bool":
            reason[~missing] = WRONG_TYPE

        def shown(i: int) -> Any:
            return bool(values[i])
    else:  # object: one value at a time, with the same rules
        objects = raw.to_numpy(dtype=object)
        values = np.full(n, np.nan)
        missing = np.zeros(n, dtype=bool)
        for i, value in enumerate(objects):
            number, code = _number_of(value, spec, rules)
            values[i] = number
            if code is MISSING_VALUE:
                missing[i] = True
            elif code is not None:
                reason[i] = code

        def shown(i: int) -> Any:
            return _numeric_shown(objects[i])
    free = pd.isna(reason) & ~missing
    with np.errstate(invalid="ignore"):
        infinite = free & np.isinf(values)
        reason[infinite] = NOT_FINITE
        free &= ~infinite
        if spec.dtype in {"int", "bool"}:
            fractional = free & (values != np.round(values))
            if spec.dtype == "bool":
                fractional |= free & (values != 0.0) & (values != 1.0)
            reason[fractional] = WRONG_TYPE
    return _Parsed(values, missing, reason, shown)


def _category_column(raw: pd.Series, spec: FeatureSpec, rules: RowRules) -> _Parsed:
    n = len(raw)
    reason = np.full(n, None, dtype=object)
    kind = _kind(raw)
    if kind == "text":
        values = raw.to_numpy(dtype=object, copy=True)
        missing = pd.isna(values)
        values[missing] = None
        if rules.missing_tokens:
            tokens = pd.Series(values, dtype=object).isin(rules.missing_tokens).to_numpy()
            values[tokens] = None
            missing |= tokens
        return _Parsed(values, missing, reason, lambda i: values[i])
    if kind == "number" and pd.api.types.is_integer_dtype(raw.dtype):
        missing = raw.isna().to_numpy()
        values = np.full(n, None, dtype=object)
        values[~missing] = raw[~missing].astype("int64").astype(str).to_numpy(dtype=object)
        return _Parsed(values, missing, reason, lambda i: values[i])
    objects = raw.to_numpy(dtype=object)
    values = np.full(n, None, dtype=object)
    missing = np.zeros(n, dtype=bool)
    for i, value in enumerate(objects):
        text, code = _category_of(value, rules)
        if code is MISSING_VALUE:
            missing[i] = True
        elif code is not None:
            reason[i] = code
        else:
            values[i] = text

    def shown(i: int) -> Any:
        return _numeric_shown(objects[i])
    return _Parsed(values, missing, reason, shown)


def _kind(raw: pd.Series) -> str:
    dtype = raw.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(raw, skipna=True)
        return "text" if inferred in {"string", "empty"} else "object"
    return "text" if pd.api.types.is_string_dtype(dtype) else "object"


# -- one value -----------------------------------------------------------------------------------------------------
def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _number_of(value: Any, spec: FeatureSpec, rules: RowRules) -> tuple[float, str | None]:
    """The number a value stands for, or the reason it stands for none (MISSING_VALUE: a true null)."""
    if _is_null(value):
        return math.nan, MISSING_VALUE
    if isinstance(value, str):
        if value in rules.missing_tokens:
            return math.nan, MISSING_VALUE
        if not _NUMBER_TEXT.fullmatch(value):
            # "inf" as a CSV writer spells infinity is a number, just not a finite one; "nan" text is no number
            return (math.inf, None) if value.strip().lower().lstrip("+-") in _INFINITY_TEXT else (math.nan, WRONG_TYPE)
        return float(value), None  # a huge exponent gives inf, refused as not finite
    if isinstance(value, bool | np.bool_):
        return float(value), (None if spec.dtype == "bool" else WRONG_TYPE)
    if isinstance(value, int | np.integer):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf if value > 0 else -math.inf
        if rules.strict_dtypes and spec.dtype == "float":
            return number, WRONG_TYPE
        return number, None
    if isinstance(value, float | np.floating):
        return float(value), None
    return math.nan, WRONG_TYPE


def _category_of(value: Any, rules: RowRules) -> tuple[str | None, str | None]:
    if _is_null(value):
        return None, MISSING_VALUE
    if isinstance(value, str):
        return (None, MISSING_VALUE) if value in rules.missing_tokens else (value, None)
    if isinstance(value, bool | np.bool_):
        return None, WRONG_TYPE
    if isinstance(value, int | np.integer):
        return str(int(value)), None
    if isinstance(value, float | np.floating) and math.isfinite(value) and value == round(value) \
            and abs(value) <= _MAX_EXACT_INT:
        return str(int(value)), None
    return None, WRONG_TYPE


def _numeric_shown(value: Any) -> Any:
    """The value as messages show it: numeric text by the number it parses to, so ``"1.5"`` and ``1.5`` read alike."""
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value):
        return float(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _shown_numbers(values: np.ndarray, raw: pd.Series) -> Any:
    integer = pd.api.types.is_integer_dtype(raw.dtype)

    def shown(i: int) -> Any:
        return int(raw.iloc[i]) if integer else float(values[i])
    return shown


def _show(value: Any) -> str:
    if isinstance(value, dict | list | tuple):
        return type(value).__name__
    text = repr(value)
    return text if len(text) <= _SHOW_CHARS else text[:_SHOW_CHARS - 3] + "..."


def _absent_message(name: str, present: Iterable[str]) -> str:
    near = [p for p in present if p != name and p.casefold() == name.casefold()]
    hint = f"; found {near[0]!r} (names are case-sensitive)" if near else ""
    return f"the feature is required{hint}"


def _frame(columns: dict[str, np.ndarray], schema: Sequence[FeatureSpec], index: pd.Index) -> pd.DataFrame:
    # Categorical columns stay object dtype with None: pandas 3 would infer its str dtype, whose NaN is not None.
    return pd.DataFrame({s.name: pd.Series(columns[s.name], index=index, dtype="float64" if s.is_numeric else object)
                         for s in schema}, index=index)


def _empty(spec: FeatureSpec, n: int) -> np.ndarray:
    return np.full(n, np.nan) if spec.is_numeric else np.full(n, None, dtype=object)
