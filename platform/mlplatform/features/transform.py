"""Preprocessing fitted once on the training split and shipped inside the model artifact as JSON.

One code path (:meth:`TabularTransform.transform`) serves training, Ray Data batch scoring and Serve, so there is
no training/serving skew. The fitted state is plain JSON keyed by feature name: loading it runs no code (no pickle).

Fitting goes through :class:`FitStatistics` (mergeable moments, category counts, exact quantiles). The pandas fit
here and the Ray Data fit in :mod:`mlplatform.features.ray_stats` build the same statistics and therefore the
same fitted state (SPEC S4.2).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlplatform.errors import InvalidInput
from mlplatform.features.rows import (
    NONE,
    CheckedRows,
    RowChecker,
    RowRules,
    coerced_frame,
    infer_schema,
)
from mlplatform.features.schema import FeatureSpec, schema_from_json, schema_to_json
from mlplatform.features.stats import ColumnStats, sorted_quantiles

TRANSFORM_FILE = "transform.json"
FORMAT_VERSION = 3  # 3: generated features and feature selection (SPEC S4.5)
SUPPORTED_VERSIONS = {1, 2, 3}
MISSING_TOKEN = "__missing__"
_SEP = "\x1f"  # joins a cross's parts; cannot occur in a category read from CSV or JSON by accident
# Bounds of a transformed numeric value. A finite input far outside float32 (1e308) would become inf and turn the
# model's output into NaN; a value a million standard deviations out carries no more information than the bound.
_MAX_SCALED = 1e6
_FLOAT32_LIMIT = float(np.finfo(np.float32).max)


class CrossSpec(BaseModel):
    """A feature cross: the combination of two or more columns hashed into ``buckets`` one-hot slots.
    Numeric columns take part through their bucket index, so they need an entry in ``buckets``."""

    model_config = ConfigDict(extra="forbid")

    columns: list[str] = Field(min_length=2)
    buckets: int = Field(default=64, ge=2)

    @property
    def name(self) -> str:
        return "_x_".join(self.columns)


class GeneratedFeature(BaseModel):
    """A numeric feature computed from numeric inputs before imputation (SPEC S4.5): ``ratio`` a / b (a zero
    denominator gives a missing value), ``product`` a * b, ``log`` log1p(a) of a non-negative a (a negative a gives
    a missing value). A missing input, or a non-finite result, gives a missing value; the feature is then imputed,
    flagged and scaled like any numeric input column (its fill is fitted on the training split)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["ratio", "product", "log"]
    columns: list[str] = Field(min_length=1, max_length=2, description="ratio/product: [a, b]; log: [a]")
    name: str | None = Field(default=None, description="output name; default a_per_b, a_times_b or log1p_a")

    @model_validator(mode="after")
    def _arity(self) -> GeneratedFeature:
        if len(self.columns) != (1 if self.kind == "log" else 2):
            raise ValueError(f"{self.kind} takes {'one column' if self.kind == 'log' else 'two columns'}")
        return self

    @property
    def output_name(self) -> str:
        if self.name:
            return self.name
        if self.kind == "log":
            return f"log1p_{self.columns[0]}"
        return f"{self.columns[0]}_{'per' if self.kind == 'ratio' else 'times'}_{self.columns[1]}"

    def values(self, frame: Mapping[str, Any]) -> np.ndarray:
        """``frame``: a DataFrame or checked columns (:attr:`CheckedRows.columns`)."""
        a = np.asarray(frame[self.columns[0]], dtype="float64")
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.kind == "log":
                out = np.where(a >= 0, np.log1p(np.where(a >= 0, a, 0.0)), np.nan)
            else:
                b = np.asarray(frame[self.columns[1]], dtype="float64")
                out = np.where(b != 0, a / np.where(b != 0, b, 1.0), np.nan) if self.kind == "ratio" else a * b
        out[~np.isfinite(out)] = np.nan
        return out


class SelectionConfig(BaseModel):
    """Feature selection over the transformed columns, fitted once on the training split (SPEC S4.5), in this
    order: variance threshold, then correlation, then top-k. The kept columns ship in transform.json."""

    model_config = ConfigDict(extra="forbid")

    variance_threshold: float | None = Field(default=None, ge=0.0,
                                             description="drop columns whose training variance is <= this")
    max_correlation: float | None = Field(default=None, gt=0.0, le=1.0, description="of two columns with "
                                          "|Pearson r| above this (SPEC: 0.95), drop the later one")
    top_k: int | None = Field(default=None, ge=1, description="keep the k columns scoring highest against the "
                              "training labels")
    top_k_by: Literal["mutual_info", "importance"] = Field(
        default="mutual_info", description="mutual_info (sklearn mutual_info_classif/_regression) or importance "
        "(impurity importance of seeded extra trees)")
    seed: int = 0

    @property
    def active(self) -> bool:
        return self.variance_threshold is not None or self.max_correlation is not None or self.top_k is not None


class TransformConfig(BaseModel):
    """What to fit. Defaults follow SPEC S4.1-S4.5; every step beyond impute/scale/one-hot is opt-in."""

    model_config = ConfigDict(extra="forbid")

    missing_tokens: list[str] = Field(
        default_factory=list, description="strings that mean a missing value (e.g. NA, null), on every path; by "
        "default only true nulls and NaN are missing and \"NA\" is an ordinary category")
    scaling: str = Field(default="standard", pattern="^(standard|none)$")
    impute: str = Field(default="auto", pattern="^(auto|mean|median)$",
                        description="numeric fill: median when |skew| > 1 (auto), or always mean / median")
    impute_columns: dict[str, str | float] = Field(
        default_factory=dict,
        description="per column: mean | median | zero | a number (numeric); most_frequent | missing (categorical)")
    max_categories: int = Field(default=50, ge=1)
    min_category_count: int = Field(default=1, ge=1, description="rarer training categories go to __other__")
    missing_indicators: bool = True
    indicator_columns: str = Field(default="seen", pattern="^(seen|all)$",
                                   description="indicators for columns with gaps in training (seen) or all")
    hash_columns: dict[str, int] = Field(default_factory=dict, description="categorical column -> hash buckets")
    hash_above: int | None = Field(default=None, ge=1,
                                   description="hash every categorical with more training categories than this")
    hash_buckets: int = Field(default=64, ge=2, description="buckets for columns hashed through hash_above")
    buckets: dict[str, list[float] | int] = Field(
        default_factory=dict, description="numeric column -> bin edges, or a number of training-quantile bins")
    crosses: list[CrossSpec] = Field(default_factory=list)
    generated: list[GeneratedFeature] = Field(default_factory=list,
                                              description="ratios, products and logs of numeric features")
    selection: SelectionConfig = Field(default_factory=SelectionConfig)

    @model_validator(mode="before")
    @classmethod
    def _no_embedding_projections(cls, data: Any) -> Any:
        # t-SNE and UMAP cannot map an unseen row the way they mapped the training rows: never a served transform
        if isinstance(data, dict):
            for key in ("projection", "reduction", "method"):
                if str(data.get(key, "")).lower().replace("-", "") in {"tsne", "umap"}:
                    raise ValueError(f"{key}: {data[key]} is refused: t-SNE/UMAP cannot transform unseen rows")
        return data

    @field_validator("generated")
    @classmethod
    def _unique_generated(cls, value: list[GeneratedFeature]) -> list[GeneratedFeature]:
        names = [g.output_name for g in value]
        if len(set(names)) != len(names):
            raise ValueError("generated feature names must be unique")
        return value

    @field_validator("impute_columns")
    @classmethod
    def _known_rules(cls, value: dict[str, str | float]) -> dict[str, str | float]:
        for column, rule in value.items():
            if isinstance(rule, str) and rule not in {"mean", "median", "zero", "most_frequent", "missing"}:
                raise ValueError(f"impute_columns.{column}: unknown rule {rule!r}")
        return value

    @field_validator("hash_columns")
    @classmethod
    def _enough_buckets(cls, value: dict[str, int]) -> dict[str, int]:
        for column, n in value.items():
            if n < 2:
                raise ValueError(f"hash_columns.{column}: needs at least 2 buckets")
        return value

    @field_validator("buckets")
    @classmethod
    def _valid_edges(cls, value: dict[str, list[float] | int]) -> dict[str, list[float] | int]:
        for column, spec in value.items():
            if isinstance(spec, int) and spec < 2:
                raise ValueError(f"buckets.{column}: needs at least 2 bins")
            if isinstance(spec, list) and (not spec or any(b <= a for a, b in itertools.pairwise(spec))):
                raise ValueError(f"buckets.{column}: edges must be non-empty and strictly increasing")
        return value


class _NumericState(BaseModel):
    name: str
    fill: float
    mean: float
    std: float
    indicator: bool
    fill_rule: str = "mean"
    constant: bool = False  # zero variance in training: centred with scale 1 (SPEC S4.2)
    missing_in_fit: int = 0
    bucket_edges: list[float] | None = None  # bins: (-inf, e0), [e0, e1), ..., [e_last, inf)


class _CategoricalState(BaseModel):
    name: str
    vocabulary: list[str]
    hash_buckets: int | None = None  # set: one-hot over stable hash buckets instead of the vocabulary
    fill: str | None = None  # set: missing values take this category instead of the __other__ slot


class _CrossState(BaseModel):
    columns: list[str]
    hash_buckets: int

    @property
    def name(self) -> str:
        return "_x_".join(self.columns)


@dataclass
class FitStatistics:
    """Everything a fit needs, from pandas or from Ray Data."""

    numeric: dict[str, ColumnStats]
    categories: dict[str, dict[str, int]]  # present values (as strings) -> count
    # exact linear quantiles of present values, for many columns at once: {column: qs} -> {column: values}
    quantiles: Callable[[dict[str, list[float]]], dict[str, list[float]]]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, schema: list[FeatureSpec]) -> FitStatistics:
        """``frame`` is already coerced to ``schema`` (numeric float64, categoricals str or None)."""
        numeric = {s.name: ColumnStats.of(frame[s.name].to_numpy(dtype="float64")) for s in schema if s.is_numeric}
        categories = {s.name: {str(k): int(v) for k, v in frame[s.name].value_counts(dropna=True).items()}
                      for s in schema if not s.is_numeric}

        def quantiles(wanted: dict[str, list[float]]) -> dict[str, list[float]]:
            out = {}
            for name, qs in wanted.items():
                values = frame[name].to_numpy(dtype="float64")
                out[name] = sorted_quantiles(np.sort(values[~np.isnan(values)]), qs)
            return out

        return cls(numeric, categories, quantiles)


Rows: TypeAlias = pd.DataFrame | list[dict[str, Any]] | pa.RecordBatch | pa.Table
Checked: TypeAlias = CheckedRows | Mapping[str, Any]


@dataclass
class _CategoryPlan:
    name: str
    lookup: dict[str | None, int]  # category (None: missing) -> one-hot position; absent: ``other``
    other: int  # the __other__ slot (unseen or missing); embeddings see it as code 0
    hash_buckets: int | None
    missing_as: str  # hashed columns: the token a missing value hashes as (the fill, or the missing token)
    col: int  # first output column
    vocabulary: list[str] = field(default_factory=list)
    arrow_lookup: dict[pa.DataType, pc.SetLookupOptions] = field(default_factory=dict)  # per Arrow text type

    def arrow_positions(self, column: pa.Array) -> np.ndarray:
        """:func:`_lookup` of Arrow text, through Arrow's hash lookup of the vocabulary: no Python object per value
        (measured on 1,024 rows: 12 us against 60 us to convert the strings and look them up in a dict)."""
        options = self.arrow_lookup.get(column.type)
        if options is None:
            options = self.arrow_lookup[column.type] = pc.SetLookupOptions(pa.array(self.vocabulary, column.type))
        found = pc.index_in(column, options=options)  # null: unseen or missing
        if not found.null_count:
            return found.to_numpy()
        position = found.fill_null(self.other).to_numpy(zero_copy_only=False).copy()
        if column.null_count:
            position[column.is_null().to_numpy(zero_copy_only=False)] = self.lookup[None]
        return position


@dataclass
class _Plan:
    """A fitted transform compiled for inference: per-column parameters as arrays and output positions."""

    width: int
    selected_names: tuple[str, ...] | None
    selected: np.ndarray | None
    numeric_names: list[str]
    numeric_names_tuple: tuple[str, ...]
    fill: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    value_cols: np.ndarray
    indicator_of: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    indicator_cols: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    buckets: list[tuple[int, int, np.ndarray]] = field(default_factory=list)
    categorical: list[_CategoryPlan] = field(default_factory=list)
    crosses: list[tuple[_CrossState, int]] = field(default_factory=list)


def _lookup(values: np.ndarray, lookup: dict[str | None, int], default: int) -> np.ndarray:
    """``lookup[v]`` (``default`` when absent) for each value; missing values are ``None``. One dict lookup per
    value: faster than factorizing first for the batch sizes inference sees (measured on 1,024 rows)."""
    return np.fromiter(map(lookup.get, values, itertools.repeat(default)), dtype=np.int64, count=len(values))


def _with_missing(values: np.ndarray, token: str) -> np.ndarray:
    out = values.copy()
    out[np.equal(values, NONE)] = token
    return out


def stable_buckets(tokens: pd.Series, n_buckets: int, salt: str) -> np.ndarray:
    """Bucket of each string token by BLAKE2b (stable across processes and Python versions, unlike ``hash``)."""
    codes, uniques = pd.factorize(tokens, use_na_sentinel=False)
    table = np.fromiter(
        (int.from_bytes(hashlib.blake2b(f"{salt}{_SEP}{u}".encode(), digest_size=8).digest(), "little")
         % n_buckets for u in uniques), dtype=np.int64, count=len(uniques))
    return table[codes] if len(codes) else np.zeros(0, dtype=np.int64)


class TabularTransform:
    """Numeric: impute (median when |skew| > 1, else mean, or configured), missing-value indicator, standard
    scaling, optional bucketing. Categorical: one-hot over the most frequent values plus one column for unseen or
    missing values, or stable hashing for high cardinality. Optional hashed feature crosses."""

    def __init__(self, schema: list[FeatureSpec], numeric: list[_NumericState],
                 categorical: list[_CategoricalState], config: TransformConfig,
                 crosses: list[_CrossState] | None = None) -> None:
        self.schema = schema
        self.numeric = numeric
        self.categorical = categorical
        self.crosses = list(crosses or [])
        self.config = config
        self._vocab_index = [{v: i for i, v in enumerate(c.vocabulary)} for c in categorical]
        self._numeric_by_name = {s.name: s for s in numeric}
        self._categorical_by_name = {c.name: c for c in categorical}
        self.selected: list[str] | None = None  # output columns kept by the fitted selection (None: all)
        self._generated_by_name = {g.output_name: g for g in config.generated}
        self._checker: RowChecker | None = None  # the row validator for this schema and rules, built once
        self._plan: _Plan | None = None  # compiled on first use, for the current ``selected``

    # -- fitting -----------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, df: pd.DataFrame, features: list[str], config: TransformConfig | None = None,
            declared: list[FeatureSpec] | None = None,
            target: pd.Series | np.ndarray | None = None) -> TabularTransform:
        """``declared``: the config's declared schema (default: inferred). ``target`` (the training labels) is needed
        only by ``selection.top_k``."""
        config = config or TransformConfig()
        if len(df) == 0:
            raise InvalidInput("cannot fit a transform on an empty training split", field="data")
        schema = infer_schema(df, features, config.missing_tokens, declared)
        frame = coerced_frame(df, schema, RowRules.of(config.missing_tokens))
        _check_config_columns(schema, config)
        extended = [*schema, *_generated_specs(config)]
        transform = cls._from_statistics(schema, FitStatistics.from_frame(_with_generated(frame, config), extended),
                                         config)
        if config.selection.active:
            transform.selected = _fit_selection(transform.transform(df), transform.all_output_names, target,
                                                config.selection)
        return transform

    @classmethod
    def from_statistics(cls, schema: list[FeatureSpec], stats: FitStatistics,
                        config: TransformConfig) -> TabularTransform:
        if config.selection.active:
            raise InvalidInput("feature selection is fitted on the training rows by TabularTransform.fit, not from "
                               "statistics alone", field="selection")
        return cls._from_statistics(schema, stats, config)

    @classmethod
    def _from_statistics(cls, schema: list[FeatureSpec], stats: FitStatistics,
                         config: TransformConfig) -> TabularTransform:
        _check_config_columns(schema, config)
        missing = [g.output_name for g in config.generated if g.output_name not in stats.numeric]
        if missing:
            raise InvalidInput(f"no statistics for generated feature {missing[0]!r}: generated features are "
                               "fitted by TabularTransform.fit", field="generated")
        wanted = _wanted_quantiles([*schema, *_generated_specs(config)], stats, config)
        values = stats.quantiles(wanted) if wanted else {}  # one pass over the data for every column
        quantiles = {name: dict(zip(qs, values[name], strict=True)) for name, qs in wanted.items()}
        numeric = [_fit_numeric(spec.name, stats.numeric[spec.name], quantiles.get(spec.name, {}), config)
                   for spec in [*schema, *_generated_specs(config)] if spec.is_numeric]
        categorical = [_fit_categorical(spec.name, stats.categories[spec.name], config)
                       for spec in schema if not spec.is_numeric]
        hashed = {c.name for c in categorical if c.hash_buckets}
        schema = [s.model_copy(update={"categories": None}) if s.name in hashed else s for s in schema]
        crosses = [_CrossState(columns=list(c.columns), hash_buckets=c.buckets) for c in config.crosses]
        return cls(schema, numeric, categorical, config, crosses)

    # -- applying ----------------------------------------------------------------------------------------------
    @property
    def output_names(self) -> list[str]:
        """The columns :meth:`transform` returns (after the fitted selection, if any)."""
        return self.all_output_names if self.selected is None else list(self.selected)

    @property
    def all_output_names(self) -> list[str]:
        """Every column before selection."""
        names: list[str] = []
        for state in self.numeric:
            names.append(state.name)
            if state.indicator:
                names.append(f"{state.name}__missing")
            if state.bucket_edges is not None:
                names.extend(f"{state.name}#bin{i}" for i in range(len(state.bucket_edges) + 1))
        for cat in self.categorical:
            if cat.hash_buckets:
                names.extend(f"{cat.name}#h{i}" for i in range(cat.hash_buckets))
            else:
                names.extend(f"{cat.name}={v}" for v in cat.vocabulary)
                names.append(f"{cat.name}=__other__")
        for cross in self.crosses:
            names.extend(f"{cross.name}#h{i}" for i in range(cross.hash_buckets))
        return names

    @property
    def n_outputs(self) -> int:
        return len(self.output_names)

    @property
    def cardinalities(self) -> list[int]:
        """Per categorical feature, the number of non-zero codes :meth:`category_codes` can return."""
        return [c.hash_buckets or len(c.vocabulary) for c in self.categorical]

    @property
    def row_rules(self) -> RowRules:
        """The row validator's rules for this model: its declared missing tokens (shipped in the artifact)."""
        return RowRules.of(self.config.missing_tokens)

    def check(self, rows: Rows) -> CheckedRows:
        """The one row validator (:mod:`mlplatform.features.rows`) with this model's schema and rules, on a
        DataFrame, JSON-style rows (a list of objects) or an Arrow record batch or table."""
        checker = self._checker
        if checker is None:
            checker = self._checker = RowChecker(self.schema, self.row_rules)
        if isinstance(rows, list):
            return checker.records(rows)
        if isinstance(rows, pd.DataFrame):
            return checker.frame(rows)
        if isinstance(rows, pa.RecordBatch | pa.Table):
            return checker.arrow(rows)
        raise InvalidInput("rows must be a DataFrame, a list of objects or an Arrow batch", field="instances")

    def transform(self, df: Rows) -> np.ndarray:
        """A float32 matrix in :attr:`output_names` order. Row-wise: a row gives the same values alone as in any
        batch, because every statistic comes from the fitted state. InvalidInput names the first refused value."""
        return self.transform_checked(self.check(df).raise_for_issues())

    def transform_checked(self, rows: Checked) -> np.ndarray:
        """:meth:`transform` of rows the validator already accepted (:class:`CheckedRows`, or its columns)."""
        matrix, _ = self.encode(rows, codes=False)
        assert matrix is not None  # encode returns the matrix unless asked not to
        return matrix

    def category_codes(self, df: Rows) -> np.ndarray:
        """Integer codes per categorical feature (0 = unseen or missing; hashed: bucket + 1) for embeddings."""
        return self.category_codes_checked(self.check(df).raise_for_issues())

    def category_codes_checked(self, rows: Checked) -> np.ndarray:
        return self.encode(rows, matrix=False)[1]  # type: ignore[return-value]

    def encode(self, rows: Checked, *, matrix: bool = True,
               codes: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The :meth:`transform` matrix and the :meth:`category_codes` of checked rows in one pass, through the plan
        compiled from the fitted state (per call: numpy over the columns, one dict lookup per distinct category).
        ``rows``: :class:`CheckedRows`, its ``columns`` mapping, or a DataFrame of checked values."""
        plan = self._compiled()
        if isinstance(rows, CheckedRows):
            columns: Mapping[str, Any] = rows.columns
            n = rows.n_rows
        else:
            columns = rows
            n = len(rows) if isinstance(rows, pd.DataFrame) else len(next(iter(rows.values()), ()))
        out = np.zeros((n, plan.width), dtype=np.float32) if matrix else None
        rows_at = np.arange(n)
        filled = np.empty((n, 0), dtype="float64")
        if self.numeric:
            block = rows.numeric if isinstance(rows, CheckedRows) else None
            if block is not None and block[0] == plan.numeric_names_tuple:  # the validator's block, transposed
                raw, missing = block[1].T, block[2].T
            else:
                raw = np.empty((n, len(self.numeric)), dtype="float64")
                for j, name in enumerate(plan.numeric_names):
                    raw[:, j] = self._raw_numeric(columns, name)
                missing = np.isnan(raw)
            filled = np.where(missing, plan.fill, raw) if np.count_nonzero(missing) else raw
            if out is not None:
                if self.config.scaling == "standard":
                    scaled = filled - plan.mean
                    scaled /= plan.std
                    np.minimum(np.maximum(scaled, -_MAX_SCALED, out=scaled), _MAX_SCALED, out=scaled)
                else:
                    scaled = np.minimum(np.maximum(filled, -_FLOAT32_LIMIT), _FLOAT32_LIMIT)
                out[:, plan.value_cols] = scaled
                if len(plan.indicator_cols):
                    out[:, plan.indicator_cols] = missing[:, plan.indicator_of]
                for j, col, edges in plan.buckets:
                    out[rows_at, col + _bin_index(filled[:, j], edges)] = 1.0
        codes_out = np.zeros((n, len(self.categorical)), dtype=np.int64) if codes else None
        filled_categories: dict[str, np.ndarray] = {}
        hot = np.empty((n, len(plan.categorical)), dtype=np.int64) if out is not None else None
        for j, cat in enumerate(plan.categorical):
            text = rows.arrow(cat.name) if isinstance(rows, CheckedRows) else None
            if cat.hash_buckets:
                tokens = _with_missing(np.asarray(columns[cat.name], dtype=object), cat.missing_as)
                filled_categories[cat.name] = tokens
                position = stable_buckets(tokens, cat.hash_buckets, cat.name)
                if codes_out is not None:
                    codes_out[:, j] = position + 1
            else:
                position = cat.arrow_positions(text) if text is not None else \
                    _lookup(np.asarray(columns[cat.name], dtype=object), cat.lookup, cat.other)
                if codes_out is not None:
                    codes_out[:, j] = np.where(position == cat.other, 0, position + 1)
            if hot is not None:
                np.add(position, cat.col, out=hot[:, j])
        if out is not None and hot is not None and len(plan.categorical):
            out[rows_at[:, None], hot] = 1.0  # every categorical's one-hot slot in one assignment
        if out is not None:
            for cross, col in plan.crosses:
                tokens = self._cross_tokens(columns, cross, filled, filled_categories)
                out[rows_at, col + stable_buckets(tokens, cross.hash_buckets, cross.name)] = 1.0
            if plan.selected is not None:
                out = np.ascontiguousarray(out[:, plan.selected])
        return out, codes_out

    def _compiled(self) -> _Plan:
        """The fitted state as column plans, compiled once (and again only if :attr:`selected` changes)."""
        plan = self._plan
        selected = tuple(self.selected) if self.selected is not None else None
        if plan is not None and plan.selected_names == selected:
            return plan
        names = self.all_output_names
        position = {name: i for i, name in enumerate(names)}
        plan = _Plan(width=len(names), selected_names=selected,
                     selected=None if selected is None else np.array([position[s] for s in selected], dtype=np.int64),
                     numeric_names=[s.name for s in self.numeric],
                     numeric_names_tuple=tuple(s.name for s in self.numeric),
                     fill=np.array([s.fill for s in self.numeric], dtype="float64"),
                     mean=np.array([s.mean for s in self.numeric], dtype="float64"),
                     std=np.array([s.std for s in self.numeric], dtype="float64"),
                     value_cols=np.array([position[s.name] for s in self.numeric], dtype=np.int64))
        plan.indicator_of = np.array([j for j, s in enumerate(self.numeric) if s.indicator], dtype=np.int64)
        plan.indicator_cols = np.array([position[f"{s.name}__missing"] for s in self.numeric if s.indicator],
                                       dtype=np.int64)
        plan.buckets = [(j, position[f"{s.name}#bin0"], np.asarray(s.bucket_edges, dtype="float64"))
                        for j, s in enumerate(self.numeric) if s.bucket_edges is not None]
        for cat, index in zip(self.categorical, self._vocab_index, strict=True):
            other = len(cat.vocabulary)
            # a missing value takes the fill category when there is one (its slot, or __other__ if it was cut)
            lookup: dict[str | None, int] = {key: slot for key, slot in index.items()}
            lookup[None] = index.get(cat.fill, other) if cat.fill is not None else other
            first = f"{cat.name}#h0" if cat.hash_buckets else (f"{cat.name}={cat.vocabulary[0]}" if cat.vocabulary
                                                                else f"{cat.name}=__other__")
            plan.categorical.append(_CategoryPlan(cat.name, lookup, other, cat.hash_buckets,
                                                  cat.fill if cat.fill is not None else MISSING_TOKEN,
                                                  position[first], list(cat.vocabulary)))
        plan.crosses = [(cross, position[f"{cross.name}#h0"]) for cross in self.crosses]
        self._plan = plan
        return plan

    def _raw_numeric(self, frame: Mapping[str, Any], name: str) -> np.ndarray:
        """An input column of ``frame``, or a generated feature computed from the row's inputs (SPEC S4.5)."""
        generated = self._generated_by_name.get(name)
        return np.asarray(frame[name], dtype="float64") if generated is None else generated.values(frame)

    def _cross_tokens(self, columns: Mapping[str, Any], cross: _CrossState, filled: np.ndarray,
                      filled_categories: dict[str, np.ndarray]) -> np.ndarray:
        """One text token per row: the cross's parts (a numeric column's bucket index, a categorical's value with
        its fill, or the missing token) joined by ``_SEP``."""
        parts: list[list[str]] = []
        for name in cross.columns:
            if name in self._numeric_by_name:
                j = next(i for i, s in enumerate(self.numeric) if s.name == name)
                parts.append([str(b) for b in _bin_index(filled[:, j], self._numeric_by_name[name].bucket_edges or [])
                              .tolist()])
            else:
                cat = self._categorical_by_name[name]
                values = filled_categories.get(name)
                if values is None:
                    values = _with_missing(np.asarray(columns[name], dtype=object),
                                           cat.fill if cat.fill is not None else MISSING_TOKEN)
                parts.append([str(v) for v in values])
        tokens = np.empty(len(parts[0]), dtype=object)
        tokens[:] = [_SEP.join(p) for p in zip(*parts, strict=True)]
        return tokens

    def imputation_report(self, df: pd.DataFrame) -> dict[str, Any]:
        """Missing counts before and after, fill values and indicators per feature (SPEC S4.3)."""
        frame = self.check(df).raise_for_issues().frame
        report: dict[str, Any] = {}
        for state in self.numeric:
            before = int(np.isnan(self._raw_numeric(frame, state.name)).sum())
            report[state.name] = {"missing_before": before, "missing_after": 0, "fill": state.fill,
                                  "rule": state.fill_rule, "indicator": state.indicator}
        for cat in self.categorical:
            before = int(frame[cat.name].isna().sum())
            report[cat.name] = {"missing_before": before, "missing_after": 0,
                                "fill": cat.fill if cat.fill is not None else "__other__", "indicator": False}
        return report

    # -- persistence -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "tabular_transform", "version": FORMAT_VERSION, "config": self.config.model_dump(),
            "schema": schema_to_json(self.schema), "numeric": [s.model_dump() for s in self.numeric],
            "categorical": [c.model_dump() for c in self.categorical],
            "crosses": [c.model_dump() for c in self.crosses], "selected": self.selected,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TabularTransform:
        if data.get("kind") != "tabular_transform":
            raise InvalidInput("not a tabular transform artifact", field="transform")
        if data.get("version") not in SUPPORTED_VERSIONS:
            raise InvalidInput(f"transform format version {data.get('version')!r} is not supported "
                               f"(this mlplatform reads {sorted(SUPPORTED_VERSIONS)})", field="transform")
        transform = cls(schema_from_json(data["schema"]), [_NumericState(**s) for s in data["numeric"]],
                        [_CategoricalState(**c) for c in data["categorical"]], TransformConfig(**data["config"]),
                        [_CrossState(**c) for c in data.get("crosses", [])])
        transform.selected = data.get("selected")  # absent before version 3
        return transform

    def save(self, directory: Path) -> Path:
        path = Path(directory) / TRANSFORM_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True))
        return path

    @classmethod
    def load(cls, directory: Path) -> TabularTransform:
        return cls.from_dict(json.loads((Path(directory) / TRANSFORM_FILE).read_text()))

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


# -- fitting helpers ---------------------------------------------------------------------------------------------
def _check_config_columns(schema: list[FeatureSpec], config: TransformConfig) -> None:
    kinds = {s.name: s.is_numeric for s in schema}

    def need(name: str, where: str, numeric: bool | None) -> None:
        if name not in kinds:
            raise InvalidInput(f"{where}: {name!r} is not a feature", field=where)
        if numeric is not None and kinds[name] != numeric:
            raise InvalidInput(f"{where}: {name!r} must be {'numeric' if numeric else 'categorical'}", field=where)

    for generated in config.generated:
        for name in generated.columns:
            need(name, "generated", True)
        if generated.output_name in kinds:
            raise InvalidInput(f"generated: {generated.output_name!r} is already a feature", field="generated")
    kinds.update({g.output_name: True for g in config.generated})  # usable in impute_columns, buckets, crosses
    for name in config.hash_columns:
        need(name, "hash_columns", False)
    for name in config.buckets:
        need(name, "buckets", True)
    for name, rule in config.impute_columns.items():
        need(name, "impute_columns", None)
        categorical_rule = rule in {"most_frequent", "missing"}
        if kinds[name] == categorical_rule:
            raise InvalidInput(f"impute_columns: rule {rule!r} does not fit {name!r}", field="impute_columns")
    for cross in config.crosses:
        for name in cross.columns:
            need(name, "crosses", None)
            if kinds[name] and name not in config.buckets:
                raise InvalidInput(f"crosses: numeric {name!r} needs an entry in buckets", field="crosses")


def _median_wanted(st: ColumnStats, rule: str | float) -> bool:
    return st.count > 0 and (rule == "median" or (rule == "auto" and abs(st.skew) > 1))


def _bin_quantiles(n_bins: int) -> list[float]:
    return [i / n_bins for i in range(1, n_bins)]


def _wanted_quantiles(schema: list[FeatureSpec], stats: FitStatistics,
                      config: TransformConfig) -> dict[str, list[float]]:
    wanted: dict[str, list[float]] = {}
    for spec in schema:
        if not spec.is_numeric:
            continue
        qs: set[float] = set()
        if _median_wanted(stats.numeric[spec.name], config.impute_columns.get(spec.name, config.impute)):
            qs.add(0.5)
        bins = config.buckets.get(spec.name)
        if isinstance(bins, int) and stats.numeric[spec.name].count > 0:
            qs.update(_bin_quantiles(bins))
        if qs:
            wanted[spec.name] = sorted(qs)
    return wanted


def _fit_numeric(name: str, st: ColumnStats, quantiles: dict[float, float],
                 config: TransformConfig) -> _NumericState:
    rule = config.impute_columns.get(name, config.impute)
    if st.count == 0:
        # An all-missing training column: nothing to learn; it becomes a constant 0 plus its indicator.
        mean, std, fill, rule_used = 0.0, 0.0, 0.0, "zero"
    else:
        mean, std = st.mean, st.std
        if isinstance(rule, int | float):
            fill, rule_used = float(rule), "constant"
        elif rule == "zero":
            fill, rule_used = 0.0, "zero"
        elif _median_wanted(st, rule):
            fill, rule_used = quantiles[0.5], "median"
        else:
            fill, rule_used = mean, "mean"
    edges = _bucket_edges(config.buckets[name], st, quantiles) if name in config.buckets else None
    indicator = config.missing_indicators and (config.indicator_columns == "all" or st.missing > 0)
    return _NumericState(name=name, fill=fill, mean=mean, std=std if std > 0 else 1.0, indicator=indicator,
                         fill_rule=rule_used, constant=std == 0, missing_in_fit=st.missing, bucket_edges=edges)


def _bucket_edges(spec: list[float] | int, st: ColumnStats, quantiles: dict[float, float]) -> list[float]:
    if isinstance(spec, list):
        return [float(e) for e in spec]
    if st.count == 0:
        return [0.0]
    # ties collapse: a column with few distinct values gets fewer bins
    edges = sorted({quantiles[q] for q in _bin_quantiles(spec)})
    return [float(e) for e in edges]


def _bin_index(values: np.ndarray, edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """Bin i holds [edge[i-1], edge[i]): the lowest edge is inclusive and both outer bins are open, so every
    finite value (0 included) lands in a bin."""
    return np.searchsorted(np.asarray(edges, dtype="float64"), values, side="right").astype(np.int64)


def _fit_categorical(name: str, counts: dict[str, int], config: TransformConfig) -> _CategoricalState:
    # Sorted by (-count, value) before truncating: ties at the cut are decided the same way on every path.
    ordered = sorted(counts, key=lambda v: (-counts[v], v))
    rule = config.impute_columns.get(name, "missing")
    fill = ordered[0] if rule == "most_frequent" and ordered else None
    buckets = config.hash_columns.get(name)
    if buckets is None and config.hash_above is not None and len(counts) > config.hash_above:
        buckets = config.hash_buckets
    if buckets:
        return _CategoricalState(name=name, vocabulary=[], hash_buckets=buckets, fill=fill)
    vocabulary = [v for v in ordered if counts[v] >= config.min_category_count][: config.max_categories]
    return _CategoricalState(name=name, vocabulary=vocabulary, fill=fill)


# -- generated features and selection (SPEC S4.5) ----------------------------------------------------------------
def _generated_specs(config: TransformConfig) -> list[FeatureSpec]:
    return [FeatureSpec(name=g.output_name, dtype="float") for g in config.generated]


def _with_generated(frame: pd.DataFrame, config: TransformConfig) -> pd.DataFrame:
    """``frame`` (coerced) plus the generated columns, computed row by row from the raw inputs."""
    if not config.generated:
        return frame
    return frame.assign(**{g.output_name: g.values(frame) for g in config.generated})


def _fit_selection(matrix: np.ndarray, names: list[str], target: pd.Series | np.ndarray | None,
                   config: SelectionConfig) -> list[str]:
    """The output columns to keep, in their original order."""
    keep = np.arange(matrix.shape[1])
    x = matrix.astype("float64")
    if config.variance_threshold is not None:
        keep = keep[x[:, keep].var(axis=0) > config.variance_threshold]
    if config.max_correlation is not None and len(keep) > 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = np.nan_to_num(np.abs(np.corrcoef(x[:, keep], rowvar=False)), nan=0.0)
        kept: list[int] = []
        for j in range(len(keep)):  # greedy in column order: a column goes when an earlier kept one explains it
            if not any(corr[j, i] > config.max_correlation for i in kept):
                kept.append(j)
        keep = keep[kept]
    if config.top_k is not None and config.top_k < len(keep):
        if target is None:
            raise InvalidInput("selection.top_k needs the training labels", field="selection.top_k")
        scores = _column_scores(x[:, keep], np.asarray(target), config)
        best = sorted(range(len(keep)), key=lambda j: (-scores[j], j))[: config.top_k]
        keep = keep[sorted(best)]
    if len(keep) == 0:
        raise InvalidInput("feature selection dropped every column; relax variance_threshold", field="selection")
    return [names[i] for i in keep]


def _column_scores(x: np.ndarray, y: np.ndarray, config: SelectionConfig) -> np.ndarray:
    # a float target with fractional values is a regression target; anything else is a class label
    regression = np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(y[~np.isnan(y)], 1) == 0)
    if config.top_k_by == "mutual_info":
        # heavy: scikit-learn loads only when an estimator is built or scored
        from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

        score = mutual_info_regression if regression else mutual_info_classif
        return np.asarray(score(x, y, random_state=config.seed))
    # heavy: scikit-learn loads only when an estimator is built or scored
    from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor

    model = (ExtraTreesRegressor if regression else ExtraTreesClassifier)(
        n_estimators=50, random_state=config.seed, n_jobs=1)
    return np.asarray(model.fit(x, y).feature_importances_)
