"""``MonitorConfig``: the typed monitoring YAML (SPEC S8.8-S8.10). Validated once at load through
:func:`mlplatform.config.base.load_config`; errors name the file and the field. Unknown levels or sinks fail here,
not when the first RED alert tries to page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mlplatform.config.base import StrictModel, load_config
from mlplatform.entities import AlertLevel
from mlplatform.entities.levels import DEFAULT_THRESHOLDS, Threshold, Thresholds, parse_level
from mlplatform.errors import InvalidInput


class SinkConfig(StrictModel):
    """Where notifications go: the log, stdout (one JSON line) or a webhook (JSON POST, retried)."""

    type: Literal["log", "stdout", "webhook"]
    url: str | None = Field(default=None, description="Webhook URL (webhook sinks only).")
    timeout_seconds: float = Field(default=2.0, gt=0, le=30, description="Per-attempt timeout of a webhook POST.")

    @model_validator(mode="after")
    def _url_for_webhooks(self) -> SinkConfig:
        if self.type == "webhook" and not self.url:
            raise ValueError("a webhook sink needs a url")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return self


class RetrainConfig(StrictModel):
    min_hours_between: float = Field(default=6.0, ge=0, description="Minimum time between automatic retrains.")
    max_per_day: int = Field(default=2, ge=0, description="Automatic retrains per model per UTC day.")
    psi_significant: float = Field(default=0.2, gt=0, description="A feature counts as drifted at PSI >= this.")
    min_drifted_features: int = Field(default=3, ge=1, description="Drifted features that recommend retraining.")


class FairnessConfig(StrictModel):
    protected_attributes: list[str] = Field(default_factory=list, description="Columns to slice by.")
    min_group: int = Field(default=30, ge=1, description="Smaller groups are insufficient_data.")
    positive_label: Any = Field(default=1, description="The favourable prediction whose rate is compared.")


def _default_sinks() -> dict[str, SinkConfig]:
    return {"log": SinkConfig(type="log")}


def _default_routing() -> dict[str, list[str]]:
    return {"YELLOW": ["log"], "ORANGE": ["log"], "RED": ["log"]}


class MonitorConfig(StrictModel):
    """Every field has a default; an empty file is a valid config."""

    models: list[str] = Field(default_factory=list, description="Model refs to check; empty: every champion.")
    last_n: int = Field(default=5000, ge=1, description="Window size when reading the prediction log.")
    critical_features: list[str] | None = Field(default=None, description="Features that set the PSI level "
                                                "(all: None).")
    sinks: dict[str, SinkConfig] = Field(default_factory=_default_sinks)
    routing: dict[str, list[str]] = Field(default_factory=_default_routing,
                                          description="Level name -> sink names notified at that level.")
    thresholds: dict[str, dict[str, float]] = Field(default_factory=dict,
                                                    description="Overrides: metric -> {LEVEL: value}.")
    renotify_minutes: float = Field(default=30.0, ge=0, description="An unchanged level re-notifies after this long.")
    resolve_after_green: int = Field(default=3, ge=1, description="Consecutive GREEN checks that resolve an alert.")
    min_samples: int = Field(default=100, ge=1)
    min_samples_for_level: int = Field(default=1000, ge=1)
    min_labels: int = Field(default=100, ge=1)
    psi_epsilon: float = Field(default=1e-4, gt=0, lt=0.01)
    runbook_url: str = Field(default="docs/RUNBOOK.md#monitoring", description="Linked from ORANGE and RED alerts.")
    interval_seconds: float = Field(default=3600.0, gt=0, description="train_jobs/monitor.py loop interval.")
    report_dir: str | None = Field(default=None, description="Where reports go (default MLPLATFORM_HOME/reports).")
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    fairness: FairnessConfig = Field(default_factory=FairnessConfig)

    @field_validator("routing")
    @classmethod
    def _known_levels(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        out = {}
        for name, sinks in value.items():
            level = parse_level(name, where=f"routing.{name}")
            if level is AlertLevel.GREEN:
                raise ValueError("GREEN is not routed; route YELLOW, ORANGE or RED")
            out[level.name] = sinks
        return out

    @field_validator("thresholds")
    @classmethod
    def _known_thresholds(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for metric, levels in value.items():
            if metric not in DEFAULT_THRESHOLDS:
                raise ValueError(f"unknown metric {metric!r}; known: {', '.join(sorted(DEFAULT_THRESHOLDS))}")
            for name in levels:
                parse_level(name, where=f"thresholds.{metric}.{name}")
        return value

    @model_validator(mode="after")
    def _known_sinks(self) -> MonitorConfig:
        for level, names in self.routing.items():
            unknown = [n for n in names if n not in self.sinks]
            if unknown:  # InvalidInput, not ValueError: pydantic would place a model-level error at the root
                raise InvalidInput(f"names unknown sinks {unknown}; defined: {sorted(self.sinks)}",
                                   field=f"routing.{level}")
        return self

    def threshold_table(self) -> Thresholds:
        table = dict(DEFAULT_THRESHOLDS)
        for metric, levels in self.thresholds.items():
            base = table[metric]
            table[metric] = Threshold(metric, {parse_level(k): float(v) for k, v in levels.items()},
                                      base.direction, base.min_n, base.unit, base.description)
        return Thresholds(table)

    def sinks_for(self, level: AlertLevel) -> list[str]:
        return list(self.routing.get(level.name, []))


def load_monitor_config(path: Path | str | None) -> MonitorConfig:
    """Read and validate a YAML file; ``None`` gives the defaults."""
    return MonitorConfig() if path is None else load_config(path, MonitorConfig)
