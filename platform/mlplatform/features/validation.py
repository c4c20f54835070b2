"""One validator for training gates, batch scoring and serving (SPEC S4.6, S4.7).

* :func:`validate_frame` checks a DataFrame against the model's schema and, optionally, a reference profile
  (:func:`mlplatform.features.datasets.profile_frame`) and returns a :class:`ValidationReport`.
* :func:`split_rows` / :func:`enforce_rows` sort rows into valid and quarantined (with a reason each) for batch jobs.
* :func:`validate_instances` checks serving instances and raises :class:`InvalidInput` naming the field.

Levels are ERROR > WARNING > INFO; a report ``passed`` only when its worst level is INFO. Nothing is dropped
silently: every quarantined row keeps its reason, and every check records what it saw.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mlplatform.errors import GateFailed, InvalidInput
from mlplatform.features.datasets import MISSING_STRINGS, ROBUST_SCALE
from mlplatform.features.schema import FeatureSpec

logger = logging.getLogger(__name__)

REASON_COLUMN = "_quarantine_reason"


class DataValidationFailed(GateFailed):
    """Data failed validation at ERROR level (exit code 3)."""


class Level(IntEnum):
    INFO = 0
    WARNING = 1
    ERROR = 2


class ValidationConfig(BaseModel):
    """Every threshold of SPEC S4.7, with its default."""

    model_config = ConfigDict(extra="forbid")

    strict_dtypes: bool = Field(default=False, description="refuse int data for float features")
    share_warn: float = Field(default=0.01, ge=0, le=1, description="out-of-range/unknown/anomaly share: warn at")
    share_error: float = Field(default=0.05, ge=0, le=1, description="... and error at")
    mean_shift_warn: float = Field(default=2.0, gt=0)
    mean_shift_error: float = Field(default=3.0, gt=0)
    mean_shift_min_sd: float = Field(default=0.1, ge=0, description="shifts under this many sd_ref are ignored")
    mean_shift_divisor: str = Field(default="standard_error", pattern="^(standard_error|sd)$")
    variance_ratio: tuple[float, float] = (0.5, 2.0)
    anomaly_z: float = Field(default=3.0, gt=0)
    min_rows: int = Field(default=30, ge=1, description="fewer rows: distribution checks are insufficient_data")
    max_missing_rate: float = Field(default=0.5, ge=0, le=1)
    missing_rate_limits: dict[str, float] = Field(default_factory=dict)
    missing_rate_increase: float = Field(default=0.05, ge=0, description="over the reference's rate: warning")
    unexpected_columns: str = Field(default="warning", pattern="^(ignore|info|warning|error)$")
    ignore_columns: list[str] = Field(default_factory=list, description="ids, targets: never unexpected")
    row_checks: list[str] = Field(default_factory=lambda: ["type", "null"],
                                  description="row-level rules for quarantine/serving: type, null, range, category")


@dataclass(frozen=True)
class CheckResult:
    check: str
    level: Level
    message: str
    column: str | None = None
    status: str = "pass"  # pass | warning | error | insufficient_data | skipped
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "column": self.column, "level": self.level.name, "status": self.status,
                "message": self.message, "details": self.details}


@dataclass
class ValidationReport:
    checks: list[CheckResult]
    n_rows: int
    dataset: dict[str, Any] | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def level(self) -> Level:
        return max((c.level for c in self.checks), default=Level.INFO)

    @property
    def passed(self) -> bool:
        return self.level == Level.INFO

    @property
    def errors(self) -> list[CheckResult]:
        return [c for c in self.checks if c.level == Level.ERROR]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if c.level == Level.WARNING]

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level.name, "passed": self.passed, "n_rows": self.n_rows, "dataset": self.dataset,
                "created_at": self.created_at.isoformat(), "checks": [c.to_dict() for c in self.checks]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True, default=_json_default)

    def to_text(self) -> str:
        verdict = "PASSED" if self.passed else f"FAILED ({self.level.name})" if self.level == Level.ERROR \
            else f"NOT PASSED ({self.level.name})"
        lines = [f"validation {verdict}: {self.n_rows} rows, {len(self.errors)} error(s), "
                 f"{len(self.warnings)} warning(s)"]
        for c in sorted(self.checks, key=lambda c: (-c.level, c.column or "", c.check)):
            if c.level == Level.INFO and c.status == "pass":
                continue
            where = f"[{c.column}] " if c.column else ""
            lines.append(f"  {c.level.name:<7} {c.check:<18} {where}{c.message}")
        passed = sum(1 for c in self.checks if c.level == Level.INFO and c.status == "pass")
        lines.append(f"  ({passed} check(s) passed)")
        return "\n".join(lines)

    def raise_for_errors(self) -> None:
        if self.level == Level.ERROR:
            first = self.errors[0]
            raise DataValidationFailed(f"data validation failed: {first.message}", field=first.column,
                                       errors=[c.to_dict() for c in self.errors])


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


# -- per-column inspection (shared by the report and the row split) ---------------------------------------------
@dataclass
class _Inspection:
    missing: np.ndarray  # bool
    bad_type: np.ndarray  # bool: present but not of the declared family
    numbers: np.ndarray | None  # float64 for numeric features (NaN where missing or bad)
    strings: pd.Series | None  # str or None for categorical features
    type_message: str = ""


def _is_missing(series: pd.Series) -> np.ndarray:
    missing = series.isna().to_numpy(dtype=bool)
    if series.dtype == object or pd.api.types.is_string_dtype(series):
        text = series.map(lambda v: isinstance(v, str) and v.strip() in MISSING_STRINGS).to_numpy(dtype=bool)
        missing = missing | text
    return missing


def _inspect(series: pd.Series, spec: FeatureSpec, strict: bool) -> _Inspection:
    missing = _is_missing(series)
    n = len(series)
    if not spec.is_numeric:
        strings = series.astype("object").where(~missing, None).map(lambda v: v if v is None else str(v))
        return _Inspection(missing, np.zeros(n, dtype=bool), None, strings)
    bad = np.zeros(n, dtype=bool)
    message = ""
    if pd.api.types.is_bool_dtype(series) and spec.dtype != "bool":
        bad = ~missing
        message = f"expected {spec.dtype}, got bool (bool is not a number)"
        numbers = np.full(n, np.nan)
    elif pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        numbers = series.astype("float64").to_numpy(dtype="float64", na_value=np.nan)
        if strict and spec.dtype == "float" and pd.api.types.is_integer_dtype(series):
            bad = ~missing
            message = "expected float, got int (strict dtypes)"
    elif pd.api.types.is_bool_dtype(series):
        numbers = series.astype("float64").to_numpy()
    else:
        # Mixed or string values: numbers and numeric strings pass; bools, other strings and objects do not.
        is_bool = series.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
        converted = pd.to_numeric(series.where(~missing & ~is_bool, None), errors="coerce")
        numbers = converted.astype("float64").to_numpy(na_value=np.nan)
        bad = (~missing) & (is_bool | np.isnan(numbers))
        if bad.any():
            example = series[bad].iloc[0]
            message = f"expected a number, got {example!r}"
    numbers = np.where(missing | bad, np.nan, numbers)
    if spec.dtype in {"int", "bool"}:
        fractional = ~np.isnan(numbers) & (numbers != np.round(numbers))
        if spec.dtype == "bool":
            fractional |= ~np.isnan(numbers) & ~np.isin(numbers, [0.0, 1.0])
        if fractional.any():
            example = numbers[fractional][0]
            message = message or f"expected {spec.dtype}, got {example!r}"
            bad = bad | fractional
            numbers = np.where(fractional, np.nan, numbers)
    return _Inspection(missing, bad, numbers, None, message)


def _share_level(share: float, config: ValidationConfig) -> tuple[Level, str]:
    if share < config.share_warn:
        return Level.INFO, "pass"
    if share < config.share_error:
        return Level.WARNING, "warning"
    return Level.ERROR, "error"


# -- dataset-level report -------------------------------------------------------------------------------------
def validate_frame(df: pd.DataFrame, schema: Sequence[FeatureSpec], reference: Mapping[str, Any] | None = None,
                   config: ValidationConfig | None = None, dataset: dict[str, Any] | None = None) -> ValidationReport:
    """All checks of SPEC S4.6/S4.7 for a DataFrame; never raises for bad data (it is reported)."""
    config = config or ValidationConfig()
    checks: list[CheckResult] = []
    ref_columns = (reference or {}).get("columns", {})
    names = {s.name for s in schema}
    for spec in schema:
        if spec.name not in df.columns:
            checks.append(CheckResult("required_column", Level.ERROR, "required column is missing",
                                      spec.name, "error"))
            continue
        try:
            checks.extend(_column_checks(df[spec.name], spec, ref_columns.get(spec.name), config))
        except Exception as exc:  # the validator reports; it never crashes on hostile data
            logger.exception("validation of %s failed", spec.name)
            checks.append(CheckResult("internal", Level.ERROR, f"could not validate: {exc}", spec.name, "error"))
    extra = [str(c) for c in df.columns if c not in names and c not in config.ignore_columns]
    if extra and config.unexpected_columns != "ignore":
        level = Level[config.unexpected_columns.upper()]
        checks.append(CheckResult("unexpected_columns", level, f"columns not in the schema: {', '.join(extra)}",
                                  None, level.name.lower() if level else "pass", {"columns": extra}))
    return ValidationReport(checks, len(df), dataset)


def _column_checks(series: pd.Series, spec: FeatureSpec, ref: Mapping[str, Any] | None,
                   config: ValidationConfig) -> list[CheckResult]:
    name, n = spec.name, len(series)
    out: list[CheckResult] = []
    ins = _inspect(series, spec, config.strict_dtypes)
    n_bad = int(ins.bad_type.sum())
    if n_bad:
        out.append(CheckResult("dtype", Level.ERROR, f"{n_bad} value(s) of the wrong type: {ins.type_message}",
                               name, "error", {"count": n_bad, "expected": spec.dtype}))
    else:
        out.append(CheckResult("dtype", Level.INFO, f"values fit {spec.dtype}", name))
    n_missing = int(ins.missing.sum())
    rate = n_missing / n if n else 0.0
    limit = config.missing_rate_limits.get(name, config.max_missing_rate)
    details = {"missing": n_missing, "rate": rate, "limit": limit}
    if n and n_missing == n:
        out.append(CheckResult("missing", Level.ERROR, "every value is missing", name, "error", details))
    elif n_missing and not spec.nullable:
        out.append(CheckResult("missing", Level.ERROR, f"{n_missing} missing value(s) in a non-nullable column",
                               name, "error", details))
    elif rate > limit:
        out.append(CheckResult("missing", Level.ERROR, f"missing rate {rate:.2%} over the limit {limit:.2%}",
                               name, "error", details))
    elif ref and rate > ref.get("missing_rate", 0.0) + config.missing_rate_increase:
        out.append(CheckResult("missing", Level.WARNING, f"missing rate {rate:.2%} against "
                               f"{ref.get('missing_rate', 0.0):.2%} in the reference", name, "warning", details))
    else:
        out.append(CheckResult("missing", Level.INFO, f"missing rate {rate:.2%}", name, details=details))
    if n_bad:
        return out  # a type failure skips the range and distribution checks (SPEC S4.6)
    if spec.is_numeric:
        assert ins.numbers is not None
        out.extend(_numeric_checks(ins.numbers, spec, ref, config))
    else:
        assert ins.strings is not None
        out.extend(_category_checks(ins.strings, spec, config))
    return out


def _numeric_checks(numbers: np.ndarray, spec: FeatureSpec, ref: Mapping[str, Any] | None,
                    config: ValidationConfig) -> list[CheckResult]:
    name = spec.name
    present = numbers[~np.isnan(numbers)]
    out: list[CheckResult] = []
    lo = spec.min if spec.min is not None else (ref or {}).get("min")
    hi = spec.max if spec.max is not None else (ref or {}).get("max")
    if present.size and (lo is not None or hi is not None):
        outside = np.zeros(present.size, dtype=bool)
        if lo is not None:
            outside |= present < lo
        if hi is not None:
            outside |= present > hi
        share = float(outside.mean())
        level, status = _share_level(share, config)
        out.append(CheckResult("range", level, f"{share:.2%} of values outside [{lo}, {hi}]", name, status,
                               {"share": share, "count": int(outside.sum()), "min": lo, "max": hi}))
    if not ref or ref.get("mean") is None:
        return out
    if present.size < config.min_rows:
        out.append(CheckResult("distribution", Level.INFO, f"{present.size} values: fewer than {config.min_rows}",
                               name, "insufficient_data", {"count": int(present.size)}))
        return out
    # Anomalies against the reference median/MAD (never the batch's own statistics).
    robust = ref.get("robust") or {}
    median, mad = ref.get("median"), ref.get("mad") or 0.0
    anomalous = np.zeros(present.size, dtype=bool)
    if median is not None and mad > 0:
        anomalous = np.abs(present - median) / (ROBUST_SCALE * mad) > config.anomaly_z
        share = float(anomalous.mean())
        baseline = robust.get("anomaly_share", 0.0) if robust.get("z") == config.anomaly_z else 0.0
        excess = max(share - baseline, 0.0)
        level, status = _share_level(excess, config)
        out.append(CheckResult("anomalies", level, f"{share:.2%} anomalous values (robust z > {config.anomaly_z}; "
                               f"reference {baseline:.2%})", name, status,
                               {"share": share, "reference_share": baseline, "excess": excess}))
    # Mean shift in standard errors of the mean, anomalies excluded on both sides when the profile allows it.
    use_robust = robust.get("mean") is not None and robust.get("sd") is not None and mad > 0
    ref_mean = robust["mean"] if use_robust else ref["mean"]
    ref_sd = robust["sd"] if use_robust else ref.get("sd") or 0.0
    kept = present[~anomalous] if use_robust else present
    if kept.size < config.min_rows:
        out.append(CheckResult("mean_shift", Level.INFO, "too few non-anomalous values", name,
                               "insufficient_data", {"count": int(kept.size)}))
        return out
    cur_mean, cur_sd = float(kept.mean()), float(kept.std())
    shift = abs(cur_mean - ref_mean)
    details: dict[str, Any] = {"mean": cur_mean, "reference_mean": ref_mean, "reference_sd": ref_sd,
                               "n": int(kept.size)}
    if ref_sd <= 0:
        level = Level.WARNING if shift > 0 else Level.INFO
        out.append(CheckResult("mean_shift", level, f"constant reference {ref_mean}; mean now {cur_mean:.6g}",
                               name, level.name.lower() if level else "pass", details))
        return out
    divisor = ref_sd / math.sqrt(kept.size) if config.mean_shift_divisor == "standard_error" else ref_sd
    z = shift / divisor
    details["z"] = z
    if shift < config.mean_shift_min_sd * ref_sd:
        level, status = Level.INFO, "pass"  # large-n guard: a tiny effect is not a data problem
    elif z > config.mean_shift_error:
        level, status = Level.ERROR, "error"
    elif z > config.mean_shift_warn:
        level, status = Level.WARNING, "warning"
    else:
        level, status = Level.INFO, "pass"
    out.append(CheckResult("mean_shift", level, f"mean {cur_mean:.6g} vs {ref_mean:.6g} (z = {z:.2f})", name,
                           status, details))
    ratio = cur_sd / ref_sd
    lo_ratio, hi_ratio = config.variance_ratio
    inside = lo_ratio <= ratio <= hi_ratio
    out.append(CheckResult("variance_ratio", Level.INFO if inside else Level.WARNING,
                           f"sd ratio {ratio:.3f} (allowed [{lo_ratio}, {hi_ratio}])", name,
                           "pass" if inside else "warning", {"ratio": ratio}))
    return out


def _category_checks(strings: pd.Series, spec: FeatureSpec, config: ValidationConfig) -> list[CheckResult]:
    present = strings.dropna()
    if spec.categories is None or present.empty:
        return []
    unknown = ~present.isin(set(spec.categories))
    share = float(unknown.mean())
    level, status = _share_level(share, config)
    examples = sorted(set(present[unknown].head(1000)))[:5]
    return [CheckResult("categories", level, f"{share:.2%} of values outside the training categories"
                        + (f" (e.g. {', '.join(map(repr, examples))})" if examples else ""), spec.name, status,
                        {"share": share, "count": int(unknown.sum()), "examples": examples})]


# -- row level: batch quarantine --------------------------------------------------------------------------------
@dataclass
class RowSplit:
    valid: pd.DataFrame
    quarantined: pd.DataFrame  # the bad rows, unchanged, plus REASON_COLUMN

    @property
    def counts(self) -> dict[str, int]:
        return {"valid": len(self.valid), "quarantined": len(self.quarantined)}


def row_reasons(df: pd.DataFrame, schema: Sequence[FeatureSpec], config: ValidationConfig | None = None) -> pd.Series:
    """Per row, the reasons it is invalid joined by ``; `` (empty string: valid). A missing column is an
    error for the whole frame (InvalidInput naming it), not a per-row reason."""
    config = config or ValidationConfig()
    missing_columns = [s.name for s in schema if s.name not in df.columns]
    if missing_columns:
        raise InvalidInput(f"missing required feature(s): {', '.join(missing_columns)}", field=missing_columns[0])
    # Sparse: only flagged rows get a list, and raw values are only materialised for a column with bad values, so
    # a clean batch costs a few vectorised checks per column (a 50,000-row batch went from 150 ms to a few ms).
    reasons: dict[int, list[str]] = {}
    rules = set(config.row_checks)

    def add(mask: np.ndarray, text: Any) -> None:
        for i in np.flatnonzero(mask):
            reasons.setdefault(int(i), []).append(text(i) if callable(text) else text)

    for spec in schema:
        series = df[spec.name]
        ins = _inspect(series, spec, config.strict_dtypes)
        if "type" in rules and ins.bad_type.any():
            raw = series.to_numpy(dtype=object)
            add(ins.bad_type, lambda i, s=spec, r=raw: f"{s.name}: expected {s.dtype}, got {r[i]!r}")
        if "null" in rules and not spec.nullable:
            add(ins.missing, f"{spec.name}: missing (not nullable)")
        if "range" in rules and ins.numbers is not None:
            values = ins.numbers
            outside = np.zeros(len(values), dtype=bool)
            with np.errstate(invalid="ignore"):
                if spec.min is not None:
                    outside |= values < spec.min
                if spec.max is not None:
                    outside |= values > spec.max
            add(outside, lambda i, s=spec, v=values: f"{s.name}: {float(v[i])!r} outside [{s.min}, {s.max}]")
        if "category" in rules and ins.strings is not None and spec.categories is not None:
            allowed = set(spec.categories)
            unknown = ins.strings.map(lambda v, a=allowed: v is not None and v not in a).to_numpy(dtype=bool)
            add(unknown, lambda i, s=spec, st=ins.strings: f"{s.name}: unknown category {st.iloc[i]!r}")
    out = np.full(len(df), "", dtype=object)
    for i, texts in reasons.items():
        out[i] = "; ".join(texts)
    return pd.Series(out, index=df.index, dtype=object)


def split_rows(df: pd.DataFrame, schema: Sequence[FeatureSpec], config: ValidationConfig | None = None) -> RowSplit:
    reasons = row_reasons(df, schema, config)
    bad = (reasons != "").to_numpy()
    quarantined = df[bad].copy()
    quarantined[REASON_COLUMN] = reasons[bad]
    return RowSplit(df[~bad].copy(), quarantined)


def enforce_rows(df: pd.DataFrame, schema: Sequence[FeatureSpec], *, mode: str = "quarantine",
                 quarantine_path: str | Path | None = None, config: ValidationConfig | None = None) -> RowSplit:
    """Batch policy (SPEC S4.7): ``fail`` raises on any bad row; ``quarantine`` (default) returns the valid rows
    and writes the bad ones with their reasons to ``quarantine_path`` (Parquet, or CSV by suffix)."""
    if mode not in {"fail", "quarantine"}:
        raise InvalidInput(f"validation mode {mode!r} must be fail or quarantine", field="mode")
    split = split_rows(df, schema, config)
    n_bad = len(split.quarantined)
    if n_bad and mode == "fail":
        first = split.quarantined[REASON_COLUMN].iloc[0]
        raise DataValidationFailed(f"{n_bad} of {len(df)} row(s) failed validation; first: {first}",
                                   field=first.split(":", 1)[0], rows=n_bad)
    if n_bad:
        if quarantine_path is not None:
            path = Path(quarantine_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix.lower() == ".csv":
                split.quarantined.to_csv(path, index=False)
            else:
                _write_parquet(split.quarantined, path)
        logger.warning("quarantined %d of %d row(s)%s", n_bad, len(df),
                       f" to {quarantine_path}" if quarantine_path else " (kept in memory: no path given)")
    return split


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa

    try:
        df.to_parquet(path, index=False)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        # Bad rows are often bad because of mixed types ('abc' in a number column), which Parquet cannot hold in
        # one column: such columns are kept as text, missing values stay missing.
        mixed = {c: df[c].map(lambda v: v if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
                 for c in df.columns if df[c].dtype == object}
        df.assign(**mixed).to_parquet(path, index=False)


# -- serving ----------------------------------------------------------------------------------------------------
def _value_error(value: Any, spec: FeatureSpec, config: ValidationConfig) -> str | None:
    """Why one JSON value does not fit its feature, or None. Same rules as :func:`_inspect`, per value."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or \
            (isinstance(value, str) and value.strip() in MISSING_STRINGS):
        return None if spec.nullable else "missing (not nullable)"
    if not spec.is_numeric:
        if isinstance(value, dict | list):
            return f"expected a category, got {type(value).__name__}"
        return _range_or_category(str(value), spec, config)
    if isinstance(value, bool):
        if spec.dtype == "bool":
            return None
        return f"expected {spec.dtype}, got bool (bool is not a number)"
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return f"expected a number, got {value!r}"
    elif isinstance(value, int | float):
        number = float(value)
        if config.strict_dtypes and spec.dtype == "float" and isinstance(value, int):
            return "expected float, got int (strict dtypes)"
    else:
        return f"expected a number, got {type(value).__name__}"
    if math.isnan(number):
        return None if spec.nullable else "missing (not nullable)"
    if (spec.dtype in {"int", "bool"} and number != round(number)) or (spec.dtype == "bool" and number not in (0, 1)):
        return f"expected {spec.dtype}, got {value!r}"
    return _range_or_category(number, spec, config)


def _range_or_category(value: Any, spec: FeatureSpec, config: ValidationConfig) -> str | None:
    outside = isinstance(value, float) and (
        (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max))
    if "range" in config.row_checks and outside:
        return f"{value!r} outside [{spec.min}, {spec.max}]"
    if "category" in config.row_checks and isinstance(value, str) and spec.categories is not None \
            and value not in spec.categories:
        return f"unknown category {value!r}"
    return None


def validate_instances(instances: Sequence[Mapping[str, Any]], schema: Sequence[FeatureSpec],
                       config: ValidationConfig | None = None) -> None:
    """Serving's request check: InvalidInput (HTTP 422) naming the first bad field, with every error listed in
    ``details["errors"]`` as ``{index, field, message}``. Unknown categories are allowed (the transform maps them
    to the OOV slot) unless ``row_checks`` asks for them."""
    config = config or ValidationConfig()
    errors: list[dict[str, Any]] = []
    for index, instance in enumerate(instances):
        if not isinstance(instance, Mapping):
            errors.append({"index": index, "field": "instances", "message": "each instance must be an object"})
            continue
        for spec in schema:
            if spec.name not in instance:
                errors.append({"index": index, "field": spec.name, "message": "required feature is missing"})
                continue
            problem = _value_error(instance[spec.name], spec, config)
            if problem:
                errors.append({"index": index, "field": spec.name, "message": problem})
    if errors:
        first = errors[0]
        where = f"instance {first['index']}: " if len(instances) > 1 else ""
        raise InvalidInput(f"{where}{first['message']}", field=first["field"], errors=errors[:100],
                           error_count=len(errors))


def validate_instance(instance: Mapping[str, Any], schema: Sequence[FeatureSpec],
                      config: ValidationConfig | None = None) -> None:
    validate_instances([instance], schema, config)
