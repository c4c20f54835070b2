"""One monitoring check of one model version: drift, evaluation, fairness, alerts, retraining decision.

The stages talk through the store: this reads the version's artifact (its reference profile) and what serving
logged, and writes a drift report, alerts and audit entries. It never changes the live model.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from mlplatform.config.monitor import MonitorConfig
from mlplatform.entities import AlertLevel, ModelVersion
from mlplatform.entities.levels import Thresholds, overall_level
from mlplatform.errors import InvalidInput, NotFound
from mlplatform.features.reference import DriftReference, load_drift_reference
from mlplatform.monitoring.alerts import AlertCheck, AlertManager, AlertOutcome, AlertType
from mlplatform.monitoring.drift import DriftResult, DriftSettings, FeatureDrift, compute_drift
from mlplatform.monitoring.estimation import estimate_performance
from mlplatform.monitoring.evaluation import (
    DecayResult,
    classification_metrics,
    concept_drift,
    detect_decay,
    fairness_report,
    relative_drop,
)
from mlplatform.monitoring.retrain import (
    RetrainDecision,
    decide_retrain,
    previous_recommendations,
    record_recommendation,
)
from mlplatform.monitoring.window import Window, window_from_file, window_from_log
from mlplatform.predictor import Predictor

if TYPE_CHECKING:  # annotations only: the SQL store loads where a client is opened
    from mlplatform.client import Client

logger = logging.getLogger(__name__)

DECAY_ALPHA = 0.05


@dataclass
class CheckResult:
    model_name: str
    version: int
    drift: DriftResult
    checks: list[AlertCheck]
    evaluation: dict[str, Any] = field(default_factory=dict)
    fairness: list[dict[str, Any]] = field(default_factory=list)
    retrain: RetrainDecision | None = None
    outcomes: list[AlertOutcome] = field(default_factory=list)
    drift_report_id: str | None = None

    @property
    def level(self) -> AlertLevel:
        return overall_level(c.level for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name, "version": self.version, "level": self.level.name,
            "n": self.drift.n, "status": self.drift.status, "drift": self.drift.to_dict(),
            "evaluation": self.evaluation, "fairness": self.fairness,
            "retrain": self.retrain.to_dict() if self.retrain else None, "drift_report_id": self.drift_report_id,
            "alerts": [{"type": c.type, "metric": c.metric, "level": c.level.name, "value": c.value,
                        "threshold": c.threshold, "message": c.message} for c in self.checks
                       if c.level > AlertLevel.GREEN],
            "actions": [{"metric": o.check.metric, "action": o.action, "notified": o.notified,
                         "failed_sinks": o.failed_sinks} for o in self.outcomes if o.action != "none"],
        }


def load_version_reference(client: Client, version: ModelVersion) -> tuple[DriftReference, Any]:
    """The stored reference profile and the predictor of a registered version (from its verified artifact)."""
    local = client.registry.fetch(version)
    try:
        reference = load_drift_reference(local)
        predictor = Predictor.from_dir(local, name=version.model_name, version=version.version)
    finally:
        shutil.rmtree(local, ignore_errors=True)
    if reference is None:
        raise NotFound(f"{version.ref} has no drift_reference.json; it was trained before reference profiles "
                       "existed: retrain it (training writes the profile) to monitor it", field="model")
    return reference, predictor


def _threshold_of(thresholds: Thresholds, metric: str, level: AlertLevel) -> float | None:
    table = thresholds[metric].levels
    return table.get(level) if level in table else min(table.values(), default=None)


def _drift_checks(result: DriftResult, reference: DriftReference, name: str, version: int,
                  config: MonitorConfig, thresholds: Thresholds) -> list[AlertCheck]:
    window = {"source": result.source, "n": result.n}
    checks = []
    for feature in result.features.values():
        checks.extend(_quality_checks(feature, reference.features[feature.name], name, version, window, thresholds))
        if feature.status == "ok" and feature.n >= config.min_samples_for_level:
            # only well-sized windows may confirm GREEN, so an empty window never resolves an alert
            checks.append(AlertCheck(
                AlertType.DATA_DRIFT, feature.level, name, version, feature.name,
                f"{feature.name}: PSI {feature.psi:.4f} ({feature.psi_band}), {feature.test} p={_p(feature)}",
                value=feature.psi, threshold=_threshold_of(thresholds, "psi", feature.level), method="psi",
                n=feature.n, window=window))
    prediction = result.prediction
    if prediction is not None and prediction.status == "ok" and prediction.n >= config.min_samples_for_level:
        value = prediction.statistic if prediction.level_metric == "prediction_ks" else prediction.psi
        metric = prediction.level_metric or "psi"
        checks.append(AlertCheck(
            AlertType.PREDICTION_DRIFT, prediction.level, name, version, "prediction",
            f"prediction distribution: {metric} {value:.4f}, PSI {prediction.psi:.4f}", value=value,
            threshold=_threshold_of(thresholds, metric, prediction.level), method=metric, n=prediction.n,
            window=window))
    return checks


def _p(feature: FeatureDrift) -> str:
    if feature.p_value is None:
        return "- (not run)"
    adjusted = "" if feature.p_adjusted is None else f" (BH-adjusted {feature.p_adjusted:.4g})"
    return f"{feature.p_value:.4g}{adjusted}"


def _quality_checks(feature: FeatureDrift, profile: dict[str, Any], name: str, version: int,
                    window: dict[str, Any], thresholds: Thresholds) -> list[AlertCheck]:
    """A missing feature is a DATA_QUALITY alert (never "no drift"); so is a missing rate clearly above the
    reference's (excess >= the violation-rate thresholds and a one-sided binomial p < 0.05)."""
    metric = f"missing:{feature.name}"
    if feature.status == "missing":
        return [AlertCheck(AlertType.DATA_QUALITY, AlertLevel.RED, name, version, metric,
                           f"feature {feature.name} is missing from the window", value=1.0,
                           threshold=_threshold_of(thresholds, "error_rate", AlertLevel.RED), method="missing",
                           window=window)]
    if feature.missing_rate is None or feature.status == "insufficient_data":
        return []
    total = feature.n / (1 - feature.missing_rate) if feature.missing_rate < 1 else float(window["n"])
    baseline = float(profile.get("missing_rate", 0.0))
    excess = max(0.0, feature.missing_rate - baseline)
    level = thresholds.level("error_rate", excess)
    if level > AlertLevel.GREEN and 0 < baseline < 1:
        k = round(feature.missing_rate * total)
        if stats.binomtest(k, round(total), baseline, alternative="greater").pvalue >= 0.05:
            level = AlertLevel.GREEN
    return [AlertCheck(AlertType.DATA_QUALITY, level, name, version, metric,
                       f"{feature.name}: missing rate {feature.missing_rate:.4f} (reference {baseline:.4f})",
                       value=feature.missing_rate, baseline=baseline, method="missing_rate",
                       threshold=_threshold_of(thresholds, "error_rate", level), n=round(total), window=window)]


def _evaluation(window: Window, version: ModelVersion, classes: list[Any] | None, config: MonitorConfig,
                thresholds: Thresholds) -> tuple[dict[str, Any], list[AlertCheck], bool]:
    if window.labels is None or window.labelled_predicted is None:
        return {"status": "no_labels", "n": 0}, [], False
    positive = classes[1] if classes and len(classes) == 2 else 1
    metrics = classification_metrics(window.labels, window.labelled_predicted, positive, config.min_labels)
    baseline = version.metrics.get("accuracy")
    decay = detect_decay(metrics["k"], metrics["n"], baseline, min_n=config.min_labels)
    concept = concept_drift(metrics["k"], metrics["n"], baseline, min_n=config.min_labels)
    evaluation = {"metrics": metrics, "decay": decay.to_dict(), "concept_drift": concept,
                  "unmatched_labels": window.unmatched_labels}
    checks: list[AlertCheck] = []
    if decay.status == "ok" and baseline is not None:
        level, drop = decay_level(decay, thresholds)
        checks.append(AlertCheck(
            AlertType.DECAY, level, version.model_name, version.version, "accuracy",
            f"accuracy {decay.current:.4f} vs registered {baseline:.4f} (drop {drop * 100:.2f} %, "
            f"n={decay.n}, binomtest p={decay.p_value:.4g}, decay={'yes' if decay.decayed else 'no'})",
            value=decay.current, baseline=baseline, method="binomtest", n=decay.n,
            threshold=_threshold_of(thresholds, "accuracy_drop_pct", level)))
    if concept["status"] == "ok":
        # the error ratio is an effect size too: it alerts only with the binomial test behind it (on 100 labels a
        # 0.20 error rate reads above 0.24 in one window of six by chance)
        significant = decay.p_value is not None and decay.p_value < DECAY_ALPHA
        checks.append(AlertCheck(
            AlertType.CONCEPT_DRIFT, AlertLevel.ORANGE if concept["drift"] and significant else AlertLevel.GREEN,
            version.model_name, version.version, "error",
            f"labelled error {concept['error']:.4f} vs baseline error {concept['baseline_error']:.4f} x 1.2",
            value=concept["error"], baseline=concept["baseline_error"], method="error_ratio", n=concept["n"]))
    return evaluation, checks, decay.decayed


def decay_level(decay: DecayResult, thresholds: Thresholds) -> tuple[AlertLevel, float]:
    """The level of a decay result and its relative drop: the effect size sets the level only once the drop is
    significant (SPEC S8.7). 44/100 against a 0.5 baseline is a 12 % drop, but binomtest p = 0.14 is noise, and
    a RED there would start a retrain."""
    if decay.status != "ok" or decay.baseline is None:
        return AlertLevel.GREEN, 0.0
    drop = relative_drop(decay.baseline, decay.current or 0.0) or 0.0
    if decay.p_value is None or decay.p_value >= DECAY_ALPHA:
        return AlertLevel.GREEN, drop
    return thresholds.level("accuracy_drop_pct", max(0.0, drop * 100), decay.n), drop


def _estimation(window: Window, reference: DriftReference, version: ModelVersion, threshold: float | None,
                config: MonitorConfig, thresholds: Thresholds) -> tuple[dict[str, Any], list[AlertCheck], bool]:
    """Label-free estimate (CBPE, :mod:`mlplatform.monitoring.estimation`) of the window's accuracy, F1 and ROC
    AUC, and its own ESTIMATED_DECAY alert: the same significance test as realized decay, on the expected success
    count. It sees covariate shift, not concept drift."""
    estimate = estimate_performance(reference.calibration, window.scores, threshold, min_n=config.min_labels)
    out: dict[str, Any] = estimate.to_dict()
    baseline = version.metrics.get("accuracy")
    if estimate.status != "ok" or baseline is None:
        return out, [], False
    decay = detect_decay(round(estimate.expected_correct), estimate.n, baseline, min_n=config.min_labels)
    level, drop = decay_level(decay, thresholds)
    out["decay"] = decay.to_dict()
    check = AlertCheck(
        AlertType.ESTIMATED_DECAY, level, version.model_name, version.version, "estimated_accuracy",
        f"estimated accuracy (CBPE, no labels) {estimate.accuracy:.4f} vs registered {baseline:.4f} "
        f"(drop {drop * 100:.2f} %, n={estimate.n}, p={decay.p_value:.4g})",
        value=estimate.accuracy, baseline=baseline, method="cbpe", n=estimate.n,
        threshold=_threshold_of(thresholds, "accuracy_drop_pct", level))
    return out, [check], decay.decayed


def _fairness(window: Window, version: ModelVersion, config: MonitorConfig,
              thresholds: Thresholds) -> tuple[list[dict[str, Any]], list[AlertCheck]]:
    reports: list[dict[str, Any]] = []
    checks: list[AlertCheck] = []
    if window.predicted is None:
        return reports, checks
    frame = window.frame.assign(prediction=window.predicted)
    if window.labels is not None and len(window.labels) == len(frame):
        frame = frame.assign(label=window.labels)
    for attribute in config.fairness.protected_attributes:
        if attribute not in frame.columns:
            continue
        report = fairness_report(frame, attribute, label="label" if "label" in frame.columns else None,
                                 positive=config.fairness.positive_label, min_group=config.fairness.min_group)
        reports.append(report)
        ratio = report.get("selection_rate_ratio")
        if ratio is not None:
            level = thresholds.level("selection_rate_ratio", ratio)
            checks.append(AlertCheck(AlertType.FAIRNESS, level, version.model_name, version.version,
                                     f"selection_rate_ratio:{attribute}",
                                     f"selection-rate ratio over {attribute}: {ratio:.4f} (four-fifths rule 0.8)",
                                     value=ratio, threshold=0.8, method="four_fifths", n=len(frame)))
    return reports, checks


def run_check(client: Client, ref: str, *, config: MonitorConfig | None = None, window_file: Path | str | None = None,
              last_n: int | None = None, start: datetime | None = None, end: datetime | None = None,
              record: bool = True, now: Callable[[], datetime] | None = None) -> CheckResult:
    """Check ``ref`` on a window. ``record=False`` computes everything and stores nothing (reports)."""
    config = config or MonitorConfig()
    now = now or (lambda: datetime.now(UTC))
    thresholds = config.threshold_table()
    version = client.registry.resolve(ref)
    reference, predictor = load_version_reference(client, version)
    classes = predictor.manifest.classes
    if window_file is not None:
        window = window_from_file(window_file, predictor, predictor.manifest.target)
    else:
        if last_n is None and start is None and end is None:
            last_n = config.last_n
        window = window_from_log(client, version, last_n=last_n, start=start, end=end, classes=classes,
                                    threshold=predictor.manifest.threshold)
    settings = DriftSettings(epsilon=config.psi_epsilon, min_samples=config.min_samples,
                             min_samples_for_level=config.min_samples_for_level,
                             critical_features=tuple(config.critical_features) if config.critical_features else None)
    drift = compute_drift(reference, window.frame, predictions=window.scores,
                          labels=window.labels if window.labels is not None and len(window.labels) else None,
                          settings=settings, thresholds=thresholds, window_start=window.start,
                          window_end=window.end, source=window.source)
    checks = _drift_checks(drift, reference, version.model_name, version.version, config, thresholds)
    evaluation, eval_checks, decayed = _evaluation(window, version, classes, config, thresholds)
    estimated, estimate_checks, estimated_decay = _estimation(window, reference, version,
                                                              predictor.manifest.threshold, config, thresholds)
    evaluation["estimated"] = estimated
    eval_checks += estimate_checks
    fairness, fairness_checks = _fairness(window, version, config, thresholds)
    checks += eval_checks + fairness_checks
    eligible = [f for f in drift.features.values() if f.status == "ok" and f.n >= config.min_samples_for_level]
    drifted = [f.name for f in eligible if f.psi is not None and f.psi >= config.retrain.psi_significant]
    result = CheckResult(version.model_name, version.version, drift, checks, evaluation, fairness)
    if not record:
        result.retrain = decide_retrain(drifted, decayed, [], now(), config.retrain, drift.level,
                                        estimated_decay=estimated_decay)
        return result
    monitoring = client.monitoring
    result.retrain = decide_retrain(drifted, decayed, previous_recommendations(monitoring, version.model_name),
                                    now(), config.retrain, drift.level, estimated_decay=estimated_decay)
    manager = AlertManager(monitoring, config, now=now)
    if result.retrain.recommend:
        record_recommendation(monitoring, version.model_name, version.version, result.retrain)
        level = AlertLevel.RED if AlertLevel[result.retrain.level] >= AlertLevel.RED else AlertLevel.ORANGE
        checks.append(AlertCheck(AlertType.RETRAIN, level, version.model_name, version.version, "retrain",
                                 "retraining recommended: " + "; ".join(result.retrain.reasons),
                                 value=float(len(drifted)), method="retrain_policy"))
    report = monitoring.save_drift_report(
        version.model_name, version.version, n=drift.n, level=result.level.name, window_start=window.start,
        window_end=window.end, summary=_json_safe(result.to_dict()))
    result.drift_report_id = report.id
    for check in checks:
        result.outcomes.append(manager.record(check))
    logger.info("monitor check %s:%s on %s: %s (n=%d)", version.model_name, version.version, window.source,
                result.level.name, drift.n)
    return result


def _json_safe(value: Any) -> Any:
    """Plain JSON for the store: NumPy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def resolve_window_args(last_n: int | None, window_file: Path | None) -> None:
    if last_n is not None and window_file is not None:
        raise InvalidInput("give either --last or --window-file, not both", field="window")
