"""One validator for training gates, batch scoring and serving (SPEC S4.6, S4.7).

:func:`validate_frame` checks a DataFrame against the model's schema and, optionally, a reference profile
(:func:`mlplatform.features.datasets.profile_frame`) and returns a :class:`ValidationReport`. What a single value
must be (types, missing values, the reason vocabulary) is the row validator's, :mod:`mlplatform.features.rows`, which
batch scoring and serving call too; this module adds the dataset-level checks on top (missing rates, ranges and
categories by share, distribution against the reference).

Levels are ERROR > WARNING > INFO; a report ``passed`` only when its worst level is INFO. Nothing is dropped
silently: every quarantined row keeps its reason, and every check records what it saw.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mlplatform.errors import GateFailed
from mlplatform.features.datasets import ROBUST_SCALE
from mlplatform.features.rows import (
    COMMON_MISSING_MARKERS,
    MISSING_FIELD,
    NOT_FINITE,
    WRONG_TYPE,
    RowRules,
    check_column,
)
from mlplatform.features.schema import FeatureSpec

logger = logging.getLogger(__name__)

# Checks that judge a domain or a distribution (against the schema's ranges and categories or a reference profile),
# as opposed to checks of what a value is.
DRIFT_CHECKS = frozenset({"range", "categories", "mean_shift", "anomalies", "variance_ratio", "missing_markers"})


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
    missing_tokens: list[str] = Field(default_factory=list, description="strings read as missing values (the "
                                      "model's features.missing_tokens); by default only nulls and NaN are missing")
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
    drift_level: str = Field(default="ERROR", pattern="^(ERROR|WARNING)$",
                             description="the highest level a domain or distribution check (range, categories, "
                             "mean shift, anomalies) may reach; training against a champion's data uses WARNING")

    @property
    def row_rules(self) -> RowRules:
        return RowRules.of(self.missing_tokens, strict_dtypes=self.strict_dtypes)


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
        context = self.dataset or {}
        if context.get("against"):
            lines.append(f"  against {context['against']}")
        if "reference" in context:
            lines.append(f"  reference profile: {context['reference'] or 'none (schema checks only)'}")
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
                                      spec.name, "error", {"reason": MISSING_FIELD}))
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
    if config.drift_level == "WARNING":
        checks = [replace(c, level=Level.WARNING, status="warning")
                  if c.check in DRIFT_CHECKS and c.level == Level.ERROR else c for c in checks]
    return ValidationReport(checks, len(df), dataset)


def _column_checks(series: pd.Series, spec: FeatureSpec, ref: Mapping[str, Any] | None,
                   config: ValidationConfig) -> list[CheckResult]:
    name, n = spec.name, len(series)
    out: list[CheckResult] = []
    checked = check_column(series, spec, config.row_rules)
    for reason in (WRONG_TYPE, NOT_FINITE):
        issues = [i for i in checked.issues if i.reason == reason]
        if issues:  # the row validator's issues, with the rows they stand in (SPEC S4.6: a type failure is an error)
            out.append(CheckResult("dtype" if reason == WRONG_TYPE else reason, Level.ERROR,
                                   f"{len(issues)} value(s) refused ({reason}): {issues[0].message}", name, "error",
                                   {"reason": reason, "count": len(issues), "expected": spec.dtype,
                                    "rows": [i.row for i in issues[:1000]]}))
    n_bad = sum(1 for i in checked.issues if i.reason in (WRONG_TYPE, NOT_FINITE))
    if not n_bad:
        out.append(CheckResult("dtype", Level.INFO, f"values fit {spec.dtype}", name))
    n_missing = int(checked.missing.sum())
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
        out.extend(_numeric_checks(checked.values, spec, ref, config))
    else:
        strings = pd.Series(checked.values, dtype=object)
        out.extend(_category_checks(strings, spec, config))
        out.extend(_marker_checks(strings, spec, config))
    return out


def _marker_checks(strings: pd.Series, spec: FeatureSpec, config: ValidationConfig) -> list[CheckResult]:
    """Text such as "NA" or "" is a category unless the model declares it missing; say so when it occurs, since
    it often means the data's author meant a missing value (SPEC S4.6: 'nan', '', 'None' are caught)."""
    markers = COMMON_MISSING_MARKERS - set(config.missing_tokens)
    counts = strings[strings.isin(markers)].value_counts()
    if counts.empty:
        return []
    found = {str(k): int(v) for k, v in counts.items()}
    return [CheckResult("missing_markers", Level.WARNING, f"{int(counts.sum())} value(s) look like missing markers "
                        f"({', '.join(map(repr, found))}) and are read as categories; declare them in "
                        "features.missing_tokens if they mean a missing value", spec.name, "warning",
                        {"markers": found})]


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
