"""Alert levels and the SPEC S8 thresholds table.

Levels are :class:`mlplatform.entities.AlertLevel` (an IntEnum), so ``max()`` and ``>=`` compare rank. Comparing
level *names* or action strings would sort "immediate_retrain" below "no_action" and RED would never win.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from mlplatform.entities import AlertLevel
from mlplatform.errors import ConfigError

__all__ = ["DEFAULT_THRESHOLDS", "AlertLevel", "Threshold", "Thresholds", "overall_level", "parse_level"]

Direction = Literal["higher_is_worse", "lower_is_worse"]


@dataclass(frozen=True)
class Threshold:
    """A metric may define only some levels. Higher-is-worse reaches a level at ``value >= t`` (inclusive);
    lower-is-worse at ``value < t``."""

    metric: str
    levels: Mapping[AlertLevel, float]
    direction: Direction = "higher_is_worse"
    min_n: int = 0
    unit: str = ""
    description: str = ""

    def level_for(self, value: float) -> AlertLevel:
        for level in sorted(self.levels, reverse=True):
            limit = self.levels[level]
            if (value >= limit) if self.direction == "higher_is_worse" else (value < limit):
                return level
        return AlertLevel.GREEN

    def threshold_for(self, level: AlertLevel) -> float | None:
        return self.levels.get(level)


YEL, ORA, RED = AlertLevel.YELLOW, AlertLevel.ORANGE, AlertLevel.RED

DEFAULT_THRESHOLDS: dict[str, Threshold] = {t.metric: t for t in [
    Threshold("psi", {YEL: 0.10, ORA: 0.15, RED: 0.25}, min_n=1000, description="PSI, max over critical features"),
    Threshold("accuracy_drop_pct", {YEL: 2.0, ORA: 5.0, RED: 10.0}, min_n=100, unit="%",
              description="relative accuracy drop in percent"),
    Threshold("prediction_ks", {YEL: 0.05, ORA: 0.10, RED: 0.20}, min_n=1000, description="prediction KS statistic"),
    Threshold("feature_importance_tv", {YEL: 0.10, ORA: 0.20, RED: 0.35},
              description="feature-importance change (total variation)"),
    Threshold("error_rate", {YEL: 0.01, RED: 0.05}, description="error / data-quality violation rate"),
    Threshold("p99_latency_ms", {YEL: 50.0, RED: 100.0}, unit="ms", description="p99 latency"),
    Threshold("selection_rate_ratio", {ORA: 0.8}, direction="lower_is_worse",
              description="fairness selection-rate ratio (four-fifths rule)"),
]}

# What each level asks of people (SPEC S8.8); kept beside the levels, never used to order them.
ACTIONS: dict[AlertLevel, str] = {
    AlertLevel.GREEN: "none", AlertLevel.YELLOW: "investigate",
    AlertLevel.ORANGE: "schedule retraining within 48 h", AlertLevel.RED: "retrain now and page",
}


def parse_level(name: str | AlertLevel, *, where: str = "level") -> AlertLevel:
    if isinstance(name, AlertLevel):
        return name
    try:
        return AlertLevel[str(name).strip().upper()]
    except KeyError:
        known = ", ".join(level.name for level in AlertLevel)
        raise ConfigError(f"unknown alert level {name!r}; use one of {known}", field=where) from None


def overall_level(levels: Iterable[AlertLevel]) -> AlertLevel:
    """The maximum by rank; GREEN for nothing."""
    return max(levels, default=AlertLevel.GREEN)


@dataclass
class Thresholds:
    """The defaults with per-config overrides (same metric names, level names checked at load)."""

    table: dict[str, Threshold] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))

    def level(self, metric: str, value: float | None, n: int | None = None) -> AlertLevel:
        """GREEN below the metric's minimum sample size; a missing value is not a level (the caller raises a
        DATA_QUALITY alert instead of reading it as 0)."""
        if value is None:
            raise ValueError(f"metric {metric} has no value")
        threshold = self.table[metric]
        if n is not None and n < threshold.min_n:
            return AlertLevel.GREEN
        return threshold.level_for(float(value))

    def __getitem__(self, metric: str) -> Threshold:
        return self.table[metric]
