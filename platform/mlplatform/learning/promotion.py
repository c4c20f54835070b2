"""The one ending of ``mlplatform train`` and ``mlplatform tune --register-best`` (SPEC S2.8, S2.9): fit the
baselines on the same split, judge the candidate with the promotion gate (baselines, floor, champion on the same
holdout), record the verdict, and register the candidate (challenger when a champion exists).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlplatform.artifacts.model_format import ModelManifest
from mlplatform.config.train import TrainConfig
from mlplatform.entities import RunKind, RunStatus
from mlplatform.errors import GateFailed, MLPlatformError, NotFound
from mlplatform.learning.data import Splits
from mlplatform.learning.gate import GateResult, evaluate_gate
from mlplatform.learning.metrics import evaluate_predictions

if TYPE_CHECKING:  # annotations only: the SQL store loads where a client is opened
    from mlplatform.client import Client

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    """A trained model waiting for the gate: its artifact, test scores and what registration records."""

    run_id: str
    artifact: Path
    predictor: Any
    test: pd.DataFrame
    test_metrics: dict[str, float]
    lineage: dict[str, Any]
    dataset_version: str
    parent: str | None = None
    slices: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Promotion:
    baselines: dict[str, dict[str, float]]
    gate: dict[str, Any]
    model_version: str | None = None
    alias: str | None = None


def evaluate_gate_and_register(config: TrainConfig, client: Client, candidate: Candidate, *, splits: Splits,
                               features: list[str], work: Path, force: bool, subject: str,
                               register: bool = True) -> Promotion:
    """Baselines, gate and registration. A failed gate ends the run REJECTED and raises ``GateFailed`` naming
    ``subject`` (e.g. "run X", "the best trial of search Y")."""
    baselines = fit_baselines(config, client, candidate.run_id, splits, features, work)
    gate = judge(config, client, candidate, baselines, force)
    promotion = Promotion(baselines=baselines, gate=gate.to_dict())
    client.runs.update_tags(candidate.run_id, {"gate": promotion.gate})
    if gate.lift is not None:
        client.runs.log_metrics(candidate.run_id, {f"lift_{gate.metric}": gate.lift}, split="test")
    if not gate.passed:
        reason = "; ".join(gate.reasons)
        client.runs.end_run(candidate.run_id, RunStatus.REJECTED, error=f"promotion gate failed: {reason}")
        raise GateFailed(f"promotion gate failed for {subject}: {reason} (use --force to register anyway)",
                         field="gate", run_id=candidate.run_id, reasons=gate.reasons)
    if register:
        register_candidate(config, client, candidate, promotion)
    return promotion


def fit_baselines(config: TrainConfig, client: Client, run_id: str, splits: Splits, features: list[str],
                  work: Path) -> dict[str, dict[str, float]]:
    """Baselines through the same split, transform fitting and evaluation code, each recorded as a child run
    tagged ``baseline``."""
    # heavy: scikit-learn loads only when an estimator is built or scored
    from mlplatform.learning.sklearn_fit import fit_sklearn_artifact

    results = {}
    for family in config.baselines:
        manifest = fit_sklearn_artifact(splits.train, target=config.data.target, features=features, family=family,
                                        out_dir=work / f"baseline-{family}", task=config.task, seed=config.seed,
                                        eval_data=splits.test, transform_config=config.features,
                                        declared=config.data.declared_schema)
        child = client.runs.start_run(config.experiment, RunKind.TRAIN, config={"family": family},
                                      seed=config.seed, parent_run_id=run_id, name=f"baseline-{family}",
                                      tags={"baseline": True, "family": family})
        client.runs.log_metrics(child.id, manifest.metrics, split="test")
        client.runs.end_run(child.id, RunStatus.COMPLETED)
        results[family] = dict(manifest.metrics)
    return results


def judge(config: TrainConfig, client: Client, candidate: Candidate, baselines: dict[str, dict[str, float]],
          force: bool) -> GateResult:
    """The gate's verdict on the candidate, with the champion scored on the candidate's own holdout."""
    test = candidate.test
    metric = config.primary_metric
    champion_value, champion_version, extra = None, None, []
    if config.gate.compare_champion:
        try:
            champion = client.registry.resolve(f"{config.model_name}@champion")
        except NotFound:
            champion = None
        if champion is not None:
            champion_version = champion.version
            try:
                scored = evaluate_predictions(client.registry.load(champion), test, config.data.target)
                champion_value = scored.get(metric)
            except MLPlatformError as exc:  # e.g. the champion needs features this data lacks
                extra.append(f"the champion (version {champion.version}) cannot be scored on this holdout "
                             f"({exc}); compare them on a common holdout or use --force")
    gate = evaluate_gate(metric, candidate.test_metrics, baselines, min_lift=config.gate.min_lift,
                         floor=config.gate.floor, champion=champion_value, champion_version=champion_version,
                         forced=force)
    if extra:
        gate = GateResult(**(gate.to_dict() | {"reasons": gate.reasons + extra, "passed": force,
                                                "forced": force}))
    majority = baselines.get("most_frequent", {}).get(metric)
    if majority is not None and not evaluate_gate(metric, candidate.test_metrics, {"m": {metric: majority}},
                                                  min_lift=1e-9).passed:
        log.warning("the model does not beat the majority baseline on %s: likely a pipeline bug", metric)
        client.runs.update_tags(candidate.run_id, {"likely_pipeline_bug": True})
    if gate.forced:
        log.warning("promotion gate overridden with --force: %s", "; ".join(gate.reasons))
    return gate


def register_candidate(config: TrainConfig, client: Client, candidate: Candidate, promotion: Promotion) -> None:
    """Write the test metrics and lineage into the manifest, register (champion if none, else challenger) and
    record the evaluations overall and per slice."""
    artifact = candidate.artifact
    manifest = ModelManifest.read(artifact)
    manifest.metrics = dict(candidate.test_metrics)
    manifest.lineage = {**manifest.lineage, **candidate.lineage, "gate": promotion.gate}
    manifest.write(artifact)
    try:
        client.registry.resolve(f"{config.model_name}@champion")
        alias = "challenger"
    except NotFound:
        alias = "champion"
    version = client.registry.register(config.model_name, artifact, alias=alias, parent=candidate.parent,
                                       source_run_id=candidate.run_id, lineage={"baselines": promotion.baselines})
    client.registry.add_evaluation(config.model_name, version.version, candidate.test_metrics,
                                   dataset_version=candidate.dataset_version, slice="all", n=len(candidate.test))
    for slice_name, values in candidate.slices.items():
        client.registry.add_evaluation(config.model_name, version.version, values,
                                       dataset_version=candidate.dataset_version, slice=slice_name)
    promotion.model_version, promotion.alias = version.ref, alias
    client.runs.update_tags(candidate.run_id, {"model_version": version.ref, "alias": alias})
    log.info("registered %s as %s", version.ref, alias)
