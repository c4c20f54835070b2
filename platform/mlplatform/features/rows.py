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

import itertools
import math
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa

from mlplatform.errors import InvalidInput
from mlplatform.features.schema import (
    MAX_CATEGORIES,
    NUMERIC_KINDS,
    FeatureSpec,
    dtype_family,
    is_number_family,
    logical_dtype,
)

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
# np.equal(array, NONE) marks the None cells of an object array (numpy's stubs refuse a literal None there)
NONE: Any = None
_MAX_EXACT_INT: float = 2.0**53  # above this a float no longer names one integer: it is no category code
_SHOW_CHARS = 40
_ABSENT = object()  # a field a JSON row does not have
_PLAIN_NUMBER_TYPES = frozenset({float, int, type(None)})
_TEXT_TYPES = frozenset({str, type(None)})


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


class CheckedRows:
    """Every input row in schema order: numeric features float64 (NaN = missing), categorical ``str`` or ``None``.
    Refused rows are present too, with their bad values missing; :attr:`refused` says which they are.

    The checked values are plain numpy arrays (:attr:`columns`), which the compiled transform reads directly;
    :attr:`frame` builds a DataFrame of them only when a caller asks for one. A clean text column of an Arrow batch
    stays an Arrow array (:meth:`arrow`) until someone asks for :attr:`columns`: the transform looks its categories
    up in Arrow, so a batch's strings never become Python objects."""

    def __init__(self, columns: Mapping[str, np.ndarray | pa.Array], issues: list[RowIssue],
                 unknown_fields: list[str] | None = None, n_rows: int = 0, index: pd.Index | None = None) -> None:
        self.columns: Mapping[str, np.ndarray] = _Columns(columns)  # schema order; float64 or object (str | None)
        self._arrow = {name: values for name, values in columns.items() if not isinstance(values, np.ndarray)}
        self.issues = issues
        self.unknown_fields = list(unknown_fields or [])
        self.n_rows = n_rows
        self.index = index  # the input DataFrame's index (None: a RangeIndex, for JSON rows and Arrow batches)
        # the numeric features in schema order as one (k, n) float64 block and its missing mask, when checked so
        self.numeric: tuple[tuple[str, ...], np.ndarray, np.ndarray] | None = None

    def arrow(self, name: str) -> pa.Array | None:
        """The checked column ``name`` as Arrow text (nulls: missing), if it was kept so; else None."""
        return self._arrow.get(name)

    def __len__(self) -> int:
        return self.n_rows

    @cached_property
    def frame(self) -> pd.DataFrame:
        index = self.index if self.index is not None else pd.RangeIndex(self.n_rows)
        # Categorical columns stay object dtype with None: pandas 3 would infer its str dtype, whose NaN is not None.
        return pd.DataFrame({name: pd.Series(values, index=index, dtype=values.dtype)
                             for name, values in self.columns.items()}, index=index)

    @property
    def refused(self) -> np.ndarray:
        mask = np.zeros(self.n_rows, dtype=bool)
        if self.issues:
            mask[[i.row for i in self.issues]] = True
        return mask

    def raise_for_issues(self, path: str | None = None) -> CheckedRows:
        """InvalidInput (HTTP 422) naming the first bad field, every issue in ``details["errors"]``. With ``path``
        (serving: ``"instances"``) the field reads ``instances[3].age``; without, the feature's name."""
        if not self.issues:
            return self
        first = self.issues[0]
        where = f" in row {first.row}" if self.n_rows > 1 and not path else ""
        raise InvalidInput(f"{first.reason} ({first.message}){where}",
                           field=f"{path}[{first.row}].{first.field}" if path else first.field,
                           reason=first.reason, errors=[i.to_dict() for i in self.issues[:100]],
                           error_count=len(self.issues))

    def tuples(self) -> list[tuple[Any, ...]]:
        """Rows as tuples in schema order, ``None`` for missing (JSON-safe: no NaN)."""
        columns = []
        for values in self.columns.values():
            listed = values.tolist()  # Python floats and str; a text column's missing values are None already
            if values.dtype.kind == "f" and np.isnan(values).any():
                listed = [None if v != v else v for v in listed]  # NaN is the one value unequal to itself
            columns.append(listed)
        return list(zip(*columns, strict=True)) if columns else [() for _ in range(self.n_rows)]

    @classmethod
    def of_tuples(cls, rows: Sequence[Sequence[Any]], schema: Sequence[FeatureSpec]) -> CheckedRows:
        """Rows that already passed the validator, as :meth:`tuples` gave them (serving checks a request once, keys
        its cache on the tuples and batches them with other requests' rows): back to checked columns, no second
        check."""
        columns: dict[str, np.ndarray] = {}
        for j, spec in enumerate(schema):
            if spec.is_numeric:
                columns[spec.name] = np.array([np.nan if row[j] is None else row[j] for row in rows], dtype="float64")
            else:
                values = np.empty(len(rows), dtype=object)
                values[:] = [row[j] for row in rows]
                columns[spec.name] = values
        return cls(columns, [], [], len(rows))


class _Columns(Mapping[str, np.ndarray]):
    """Checked columns as numpy arrays; an Arrow text column becomes one (``str`` or ``None`` objects) only when
    read, once."""

    def __init__(self, stored: Mapping[str, np.ndarray | pa.Array]) -> None:
        self._stored = dict(stored)

    def __getitem__(self, name: str) -> np.ndarray:
        values = self._stored[name]
        if not isinstance(values, np.ndarray):
            values = self._stored[name] = values.to_numpy(zero_copy_only=False)
        return values

    def __iter__(self) -> Iterator[str]:
        return iter(self._stored)

    def __len__(self) -> int:
        return len(self._stored)


# -- entry points --------------------------------------------------------------------------------------------------
def check_frame(df: pd.DataFrame, schema: Sequence[FeatureSpec], rules: RowRules | None = None) -> CheckedRows:
    """Check the feature columns of a DataFrame (an Arrow batch converted with ``to_pandas`` works the same)."""
    return RowChecker(schema, rules).frame(df)


def check_records(records: Sequence[Mapping[str, Any]], schema: Sequence[FeatureSpec],
                  rules: RowRules | None = None) -> CheckedRows:
    """Check JSON-style rows (a list of objects). Values keep their Python types, so ``7`` stays an int and ``"7"``
    text; no DataFrame inference runs (pandas would turn ``[7, None]`` into floats)."""
    return RowChecker(schema, rules).records(records)


def check_arrow(batch: pa.RecordBatch | pa.Table, schema: Sequence[FeatureSpec],
                rules: RowRules | None = None) -> CheckedRows:
    """Check the feature columns of an Arrow batch or table, column by column as numpy arrays, with the verdicts
    :func:`check_frame` gives for ``batch.to_pandas()``: the arrays are the ones ``to_pandas`` would hold (an
    integer column with nulls becomes float64 with NaN, a boolean one with nulls object), and a column type with
    no plain numpy form (dictionary, nested, temporal) goes through ``to_pandas`` itself. A text column no rule can
    refuse or change (no missing tokens, no category check, nulls allowed or absent) stays Arrow."""
    return RowChecker(schema, rules).arrow(batch)


class RowChecker:
    """The row validator for one schema and its rules, with what every call would otherwise work out again (names,
    the numeric features' parameters, a row reader). The ``check_*`` functions build one per call; a model's
    transform keeps one, so that a request pays for its rows, not for its schema."""

    def __init__(self, schema: Sequence[FeatureSpec], rules: RowRules | None = None) -> None:
        self.schema = list(schema)
        self.rules = rules or RowRules()
        self._names = [s.name for s in self.schema]
        self._name_set = set(self._names)
        self._numeric = [s for s in self.schema if s.is_numeric]
        self._numeric_at = [j for j, s in enumerate(self.schema) if s.is_numeric]
        self._order = {name: j for j, name in enumerate(self._names)}
        self._read = operator.itemgetter(*self._names) if len(self._names) > 1 else None

    def frame(self, df: pd.DataFrame) -> CheckedRows:
        present = list(map(str, df.columns))
        raws = {s.name: df[s.name] for s in self.schema if s.name in df.columns}
        return self._check(raws, len(df), self._absent_everywhere(raws, present, len(df)),
                           [str(c) for c in df.columns if c not in self._name_set], df.index)

    def records(self, records: Sequence[Mapping[str, Any]]) -> CheckedRows:
        """Every feature of a row is read at once (a row lacking one takes the per-feature route), and the numeric
        features of rows holding plain numbers become one block in one numpy call (:func:`_plain_block`)."""
        n = len(records)
        names, name_set = self._names, self._name_set
        unknown: dict[str, None] = {}
        width = len(name_set)
        for record in records:
            if len(record) != width or not name_set.issuperset(record):
                for key in record:
                    if key not in name_set:
                        unknown.setdefault(str(key), None)
        issues: list[RowIssue] = []
        try:
            table = list(map(self._read, records)) if self._read is not None else \
                [(record[names[0]],) for record in records] if names else []
        except KeyError:  # some row lacks a feature: per feature, with a missing_field issue per such row
            table = None
        raws: dict[str, Any] = {}
        plain = None
        if table is not None:
            by_feature = list(zip(*table, strict=True)) if n else [() for _ in names]  # transposed in C
            if self._numeric and n:
                plain = _plain_block([by_feature[j] for j in self._numeric_at], self._numeric, self.rules)
            for j, spec in enumerate(self.schema):
                if plain is not None and spec.is_numeric:
                    raws[spec.name] = by_feature[j]  # parsed in the block; the values only for messages
                else:
                    raws[spec.name] = raw = np.empty(n, dtype=object)
                    raw[:] = by_feature[j]
            return self._check(raws, n, issues, list(unknown), plain=plain)
        for spec in self.schema:
            raws[spec.name] = raw = np.empty(n, dtype=object)
            raw[:] = [record.get(spec.name, _ABSENT) for record in records]
            if n and any(v is _ABSENT for v in raw):
                gone = np.fromiter((v is _ABSENT for v in raw), dtype=bool, count=n)
                for i in np.flatnonzero(gone):
                    issues.append(RowIssue(int(i), spec.name, MISSING_FIELD,
                                           _absent_message(spec.name, map(str, records[int(i)].keys()))))
                raw[gone] = None
        return self._check(raws, n, issues, list(unknown))

    def arrow(self, batch: pa.RecordBatch | pa.Table) -> CheckedRows:
        present = list(batch.schema.names)
        n = batch.num_rows
        raws: dict[str, np.ndarray | pd.Series | pa.Array] = {}
        for spec in self.schema:
            if spec.name in present:
                column = batch.column(spec.name)
                text = _arrow_text(column, spec, self.rules)
                raws[spec.name] = text if text is not None else _arrow_values(column)
        return self._check(raws, n, self._absent_everywhere(raws, present, n),
                           [c for c in present if c not in self._name_set])

    def _absent_everywhere(self, raws: Mapping[str, Any], present: list[str], n: int) -> list[RowIssue]:
        """missing_field in every row for each feature that is not a column of the input."""
        issues: list[RowIssue] = []
        for spec in self.schema:
            if spec.name not in raws:
                message = _absent_message(spec.name, present)
                issues.extend(RowIssue(i, spec.name, MISSING_FIELD, message) for i in range(n))
        return issues

    def _check(self, raws: Mapping[str, Any], n: int, issues: list[RowIssue], unknown: list[str],
               index: pd.Index | None = None, plain: np.ndarray | None = None) -> CheckedRows:
        """Every present column checked (the numeric ones as one block: :func:`_check_numeric`); absent ones
        missing."""
        rules = self.rules
        numeric = self._numeric if len(raws) == len(self.schema) else [s for s in self._numeric if s.name in raws]
        block = _check_numeric([raws[s.name] for s in numeric], numeric, rules, n, plain)
        text = [s for s in self.schema
                if not s.is_numeric and s.name in raws and not isinstance(raws[s.name], pa.Array)]
        numbers, texts = iter(block.columns), iter(_check_text([raws[s.name] for s in text], text, rules, n))
        columns: dict[str, np.ndarray | pa.Array] = {}
        for spec in self.schema:
            raw = raws.get(spec.name)
            if raw is None:
                columns[spec.name] = _empty(spec, n)
                continue
            if isinstance(raw, pa.Array):  # text every rule accepts as it is (_arrow_text)
                columns[spec.name] = raw
                continue
            column = next(numbers) if spec.is_numeric else next(texts)
            columns[spec.name] = column.values
            if column.issues:
                issues.extend(column.issues)
        if issues:
            order = self._order
            issues.sort(key=lambda i: (i.row, order[i.field]))  # by row, schema order within a row
        out = CheckedRows(columns, issues, unknown, n, index)
        if numeric:
            out.numeric = (tuple(s.name for s in numeric), block.values, block.missing)
        return out


def _arrow_text(column: pa.Array | pa.ChunkedArray, spec: FeatureSpec, rules: RowRules) -> pa.Array | None:
    """The column as it is, when it is text that every rule accepts unchanged: the text route would only copy it
    into Python objects. None: the column takes the numpy route."""
    kind = column.type
    if spec.is_numeric or not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return None
    if rules.missing_tokens or ("category" in rules.checks and spec.categories is not None):
        return None
    if "null" in rules.checks and not spec.nullable and column.null_count:
        return None
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _arrow_values(column: pa.Array | pa.ChunkedArray) -> np.ndarray | pd.Series:
    kind = column.type
    plain = (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
             or pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind))
    if not plain:
        return column.to_pandas()
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_null(kind):
        return np.full(len(column), None, dtype=object)
    return column.to_numpy(zero_copy_only=False)  # a boolean column with nulls: True/False/None objects


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
    reason: _Reasons  # why each refused value is refused
    shown: Callable[[int], Any]  # the value at a position as messages show it


class _Reasons:
    """Per value: None, or the reason it is refused. The array exists only once a value is refused, so a clean
    column (the usual request) costs no object array and no scans for reasons. The shape is a column's ``(n,)``, or
    ``(k, n)`` for k numeric columns checked at once."""

    def __init__(self, shape: int | tuple[int, ...]) -> None:
        self.shape = shape
        self.array: np.ndarray | None = None

    def free(self) -> np.ndarray | None:
        """Where no reason is set yet; None: everywhere."""
        return None if self.array is None else np.equal(self.array, NONE)

    def set(self, mask: np.ndarray, reason: str) -> None:
        """``reason`` where ``mask`` holds and no earlier reason is set (the first reason found wins)."""
        free = self.free()
        if free is not None:
            mask = mask & free
        if not np.count_nonzero(mask):  # (a C call: ndarray.any goes through Python, and most masks are clean)
            return
        if self.array is None:
            self.array = np.full(self.shape, None, dtype=object)
        self.array[mask] = reason

    def set_at(self, i: int, reason: str) -> None:
        if self.array is None:
            self.array = np.full(self.shape, None, dtype=object)
        self.array[i] = reason

    def take_row(self, j: int, column: _Reasons) -> None:
        """One column's reasons become row ``j`` of this ``(k, n)`` block (nothing to do when it has none)."""
        if column.array is None:
            return
        if self.array is None:
            self.array = np.full(self.shape, None, dtype=object)
        self.array[j] = column.array


@dataclass(frozen=True)
class CheckedColumn:
    values: np.ndarray  # float64 (NaN: missing or refused) or object (str; None: missing or refused)
    missing: np.ndarray  # bool: a true null or a declared missing token
    issues: list[RowIssue]


def check_column(raw: pd.Series | np.ndarray, spec: FeatureSpec, rules: RowRules | None = None) -> CheckedColumn:
    """One feature's column: its coerced values, which are missing, and the refused ones with their reasons.
    ``raw`` is a Series (its dtype decides the route) or a numpy array (JSON rows and Arrow batches, as objects or
    typed), with the same verdicts for the same values."""
    rules = rules or RowRules()
    if spec.is_numeric:
        return _check_numeric([raw], [spec], rules, len(raw)).columns[0]
    return _check_text([raw], [spec], rules, len(raw))[0]


def _check_text(raws: Sequence[pd.Series | np.ndarray], specs: Sequence[FeatureSpec], rules: RowRules,
                n: int) -> list[CheckedColumn]:
    """k categorical columns: parsed as one ``(k, n)`` block when every value is ``str`` or ``None`` (JSON rows),
    else each on its own route (:func:`_category_column`); then the rules (null, category) over the block."""
    k = len(specs)
    if not k:
        return []
    reason = _Reasons((k, n))
    values = np.empty((k, n), dtype=object)
    shown: list[Callable[[int], Any]] = []
    if all(isinstance(raw, np.ndarray) for raw in raws) \
            and set(map(type, itertools.chain.from_iterable(raws))) <= _TEXT_TYPES:
        for j, raw in enumerate(raws):
            values[j] = raw
        missing = np.equal(values, NONE)
        if rules.missing_tokens:
            tokens = np.fromiter((v in rules.missing_tokens for v in values.flat), dtype=bool, count=k * n)
            tokens = tokens.reshape(k, n)
            values[tokens] = None
            missing |= tokens
        shown = [values[j].__getitem__ for j in range(k)]
    else:
        missing = np.empty((k, n), dtype=bool)
        for j, (raw, spec) in enumerate(zip(raws, specs, strict=True)):
            one = _category_column(raw, spec, rules)
            values[j], missing[j] = one.values, one.missing
            reason.take_row(j, one.reason)
            shown.append(one.shown)
    if "null" in rules.checks:
        required = [j for j, spec in enumerate(specs) if not spec.nullable]
        if required:
            mask = np.zeros((k, n), dtype=bool)
            mask[required] = missing[required]
            reason.set(mask, MISSING_VALUE)
    if "category" in rules.checks:
        closed = [(j, set(spec.categories)) for j, spec in enumerate(specs) if spec.categories is not None]
        if closed:
            mask = np.zeros((k, n), dtype=bool)
            for j, known in closed:
                mask[j] = np.fromiter((v is not None and v not in known for v in values[j]), dtype=bool, count=n)
            reason.set(mask, UNKNOWN_CATEGORY)
    out = []
    for j, spec in enumerate(specs):
        issues: list[RowIssue] = []
        if reason.array is not None:
            issues, bad = _issues(reason.array[j], spec, shown[j])
            values[j, bad] = None
        out.append(CheckedColumn(values[j], missing[j], issues))
    return out


def _issues(reasons: np.ndarray, spec: FeatureSpec, shown: Callable[[int], Any]) -> tuple[list[RowIssue], np.ndarray]:
    bad = np.flatnonzero(~np.equal(reasons, NONE))
    return [RowIssue(int(i), spec.name, str(reasons[i]), issue_message(str(reasons[i]), spec, shown(int(i))))
            for i in bad], bad


@dataclass(frozen=True)
class _NumericVerdicts:
    """The per-feature parameters of the numeric rules as ``(k, 1)`` columns, so that one numpy pass gives k
    features their verdicts (a request pays per check, not per check and feature)."""

    integral: np.ndarray  # int or bool: a fractional value is wrong_type
    boolean: np.ndarray  # bool: only 0 and 1
    required: np.ndarray  # not nullable
    low: np.ndarray  # min, or -inf
    high: np.ndarray  # max, or inf
    any_integral: bool
    any_required: bool

    @classmethod
    def of(cls, specs: Sequence[FeatureSpec]) -> _NumericVerdicts:
        key = tuple((s.dtype, s.nullable, s.min, s.max) for s in specs)
        cached = _VERDICTS.get(key)
        if cached is None:
            def column(values: list[Any], dtype: str = "float64") -> np.ndarray:
                return np.array(values, dtype=dtype).reshape(len(specs), 1)

            cached = cls(column([s.dtype in {"int", "bool"} for s in specs], "bool"),
                         column([s.dtype == "bool" for s in specs], "bool"),
                         column([not s.nullable for s in specs], "bool"),
                         column([-math.inf if s.min is None else s.min for s in specs]),
                         column([math.inf if s.max is None else s.max for s in specs]),
                         any(s.dtype in {"int", "bool"} for s in specs), any(not s.nullable for s in specs))
            if len(_VERDICTS) < 1024:
                _VERDICTS[key] = cached
        return cached


_VERDICTS: dict[tuple[Any, ...], _NumericVerdicts] = {}


@dataclass(frozen=True)
class _NumericBlock:
    columns: list[CheckedColumn]  # views of the block's rows
    values: np.ndarray  # (k, n) float64, NaN: missing or refused
    missing: np.ndarray  # (k, n) bool


def _check_numeric(raws: Sequence[pd.Series | np.ndarray | Sequence[Any]], specs: Sequence[FeatureSpec],
                   rules: RowRules, n: int, plain: np.ndarray | None = None) -> _NumericBlock:
    """k numeric columns: each parsed on its own route (:func:`_numeric_column`; a float array is its own numbers),
    then the rules on the parsed numbers (not_finite, integral, null, range) in one pass over the ``(k, n)`` block.
    ``plain``: the block already parsed from JSON rows of plain numbers (:func:`_plain_block`), ``raws`` their
    values as given (what messages show)."""
    k = len(specs)
    if not k:
        return _NumericBlock([], np.empty((0, n)), np.empty((0, n), dtype=bool))
    reason = _Reasons((k, n))
    shown: list[Callable[[int], Any]] = []
    if plain is not None:
        values = plain
        missing = np.isnan(values)
        shown = [_shown_object(cast(Sequence[Any], raw)) for raw in raws]
    else:
        values = np.empty((k, n), dtype="float64")
        missing = np.empty((k, n), dtype=bool)
        floats = []
        for j, (raw, spec) in enumerate(zip(raws, specs, strict=True)):
            if isinstance(raw, np.ndarray) and raw.dtype.kind == "f":  # a float array: NaN is missing, nothing else
                values[j] = raw
                floats.append(j)
                shown.append(_shown_float(values[j]))
                continue
            one = _numeric_column(cast(pd.Series | np.ndarray, raw), spec, rules)  # without ``plain``: no tuples
            values[j], missing[j] = one.values, one.missing
            reason.take_row(j, one.reason)
            shown.append(one.shown)
        if len(floats) == k:
            missing = np.isnan(values)
        elif floats:
            missing[floats] = np.isnan(values[floats])
    verdicts = _NumericVerdicts.of(specs)
    infinite = np.isinf(values)
    reason.set(~missing & infinite, NOT_FINITE)
    if verdicts.any_integral:
        present = ~missing & verdicts.integral
        fractional = present & (values != np.round(values))  # inf and NaN already have their verdicts
        fractional |= present & verdicts.boolean & (values != 0.0) & (values != 1.0)
        reason.set(fractional & ~infinite, WRONG_TYPE)
    if "null" in rules.checks and verdicts.any_required:
        reason.set(missing & verdicts.required, MISSING_VALUE)
    if "range" in rules.checks:  # NaN compares False: a missing value is never out of range
        reason.set((values < verdicts.low) | (values > verdicts.high), OUT_OF_RANGE)
    out = []
    for j, spec in enumerate(specs):
        issues: list[RowIssue] = []
        if reason.array is not None:
            issues, bad = _issues(reason.array[j], spec, shown[j])
            values[j, bad] = np.nan
        out.append(CheckedColumn(values[j], missing[j], issues))
    return _NumericBlock(out, values, missing)


def _plain_block(columns: Sequence[Sequence[Any]], specs: Sequence[FeatureSpec], rules: RowRules) -> np.ndarray | None:
    """:func:`_plain_numbers` of k object columns at once, as a ``(k, n)`` block; None when any holds anything else."""
    types = set(map(type, itertools.chain.from_iterable(columns)))
    if not types <= _PLAIN_NUMBER_TYPES or (int in types and rules.strict_dtypes
                                            and any(s.dtype == "float" for s in specs)):
        return None
    try:
        return np.array(columns, dtype="float64").reshape(len(specs), -1)  # None becomes NaN
    except OverflowError:  # an int beyond float64: the per-value route says not_finite
        return None


def _shown_float(values: np.ndarray) -> Callable[[int], Any]:
    return lambda i: float(values[i])


def _shown_object(objects: Sequence[Any]) -> Callable[[int], Any]:
    return lambda i: _numeric_shown(objects[i])


def _numeric_column(raw: pd.Series | np.ndarray, spec: FeatureSpec, rules: RowRules) -> _Parsed:
    """The numbers of one column and the values its route refuses (the rules on numbers: :func:`_check_numeric`)."""
    n = len(raw)
    reason = _Reasons(n)
    kind = _kind(raw)
    if kind == "number":
        values = _as_float64(raw)
        missing = np.isnan(values)
        if rules.strict_dtypes and spec.dtype == "float" and dtype_family(raw) == "int":
            reason.set(~missing, WRONG_TYPE)
        shown = _shown_numbers(values, raw)
    elif kind == "bool":
        values = _as_float64(raw)
        missing = np.isnan(values)
        if spec.dtype != "bool":
            reason.set(~missing, WRONG_TYPE)

        def shown(i: int) -> Any:
            return bool(values[i])
    else:  # object: one value at a time, with the same rules
        objects = raw.to_numpy(dtype=object) if isinstance(raw, pd.Series) else raw
        plain = _plain_numbers(objects, rules, spec)
        if plain is not None:  # plain floats, ints and nulls: what _number_of gives them, in one numpy call
            values = plain
            missing = np.isnan(values)
        else:
            values = np.full(n, np.nan)
            missing = np.zeros(n, dtype=bool)
            for i, value in enumerate(objects):
                number, code = _number_of(value, spec, rules)
                values[i] = number
                if code is MISSING_VALUE:
                    missing[i] = True
                elif code is not None:
                    reason.set_at(i, code)

        def shown(i: int) -> Any:
            return _numeric_shown(objects[i])
    return _Parsed(values, missing, reason, shown)


def _plain_numbers(objects: np.ndarray, rules: RowRules, spec: FeatureSpec) -> np.ndarray | None:
    """float64 of an object column holding only exact ``float``, ``int`` and ``None`` (bools and numpy scalars are
    other types and take the per-value route), or None when it holds anything else."""
    types = set(map(type, objects))
    if not types <= _PLAIN_NUMBER_TYPES or (int in types and rules.strict_dtypes and spec.dtype == "float"):
        return None
    try:
        return np.array([math.nan if v is None else v for v in objects] if type(None) in types else objects.tolist(),
                        dtype="float64")
    except OverflowError:  # an int beyond float64: the per-value route says not_finite
        return None


def _category_column(raw: pd.Series | np.ndarray, spec: FeatureSpec, rules: RowRules) -> _Parsed:
    n = len(raw)
    reason = _Reasons(n)
    kind = _kind(raw)
    if kind in {"text", "plain_text"}:
        values = raw.to_numpy(dtype=object, copy=True) if isinstance(raw, pd.Series) else raw.copy()
        if kind == "plain_text":
            missing = np.equal(values, NONE)
        else:
            missing = pd.isna(values)
            values[missing] = None
        if rules.missing_tokens:
            tokens = np.fromiter((v in rules.missing_tokens for v in values), dtype=bool, count=n)
            values[tokens] = None
            missing |= tokens
        return _Parsed(values, missing, reason, lambda i: values[i])
    if kind == "number" and dtype_family(raw) == "int":
        if isinstance(raw, pd.Series):
            missing = raw.isna().to_numpy()
            values = np.full(n, None, dtype=object)
            values[~missing] = raw[~missing].astype("int64").astype(str).to_numpy(dtype=object)
        else:
            missing = np.zeros(n, dtype=bool)
            values = np.full(n, None, dtype=object)
            values[:] = [str(v) for v in raw.tolist()]
        return _Parsed(values, missing, reason, lambda i: values[i])
    objects = raw.to_numpy(dtype=object) if isinstance(raw, pd.Series) else raw.astype(object)
    values = np.full(n, None, dtype=object)
    missing = np.zeros(n, dtype=bool)
    for i, value in enumerate(objects):
        text, code = _category_of(value, rules)
        if code is MISSING_VALUE:
            missing[i] = True
        elif code is not None:
            reason.set_at(i, code)
        else:
            values[i] = text

    def shown(i: int) -> Any:
        return _numeric_shown(objects[i])
    return _Parsed(values, missing, reason, shown)


def _kind(raw: pd.Series | np.ndarray) -> str:
    dtype = raw.dtype
    family = dtype_family(dtype)
    if family == "bool":
        return "bool"
    if is_number_family(family):
        return "number"
    if isinstance(raw, np.ndarray):
        if dtype.kind != "O":
            return "object"  # datetimes, timedeltas, complex, fixed-width bytes: no feature value of ours
        # infer_dtype's "string" or "empty": every value text or a null (what the text route handles alike)
        if set(map(type, raw)) <= _TEXT_TYPES:
            return "plain_text"  # only str and None: None is the one missing value
        return "text" if all(isinstance(v, str) or _is_null(v) for v in raw) else "object"
    if pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(raw, skipna=True)
        return "text" if inferred in {"string", "empty"} else "object"
    return "text" if pd.api.types.is_string_dtype(dtype) else "object"


def _as_float64(raw: pd.Series | np.ndarray) -> np.ndarray:
    if isinstance(raw, pd.Series):
        return raw.to_numpy(dtype="float64", na_value=np.nan)
    return raw.astype("float64")


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
            and abs(float(value)) <= _MAX_EXACT_INT:
        return str(int(value)), None
    return None, WRONG_TYPE


def _numeric_shown(value: Any) -> Any:
    """The value as messages show it: numeric text by the number it parses to, so ``"1.5"`` and ``1.5`` read alike."""
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value):
        return float(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _shown_numbers(values: np.ndarray, raw: pd.Series | np.ndarray) -> Any:
    def shown(i: int) -> Any:
        if dtype_family(raw) == "int":  # asked only when a message is built
            return int(raw.iloc[i] if isinstance(raw, pd.Series) else raw[i])
        return float(values[i])
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


def _empty(spec: FeatureSpec, n: int) -> np.ndarray:
    return np.full(n, np.nan) if spec.is_numeric else np.full(n, None, dtype=object)
