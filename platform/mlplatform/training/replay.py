"""``mlplatform runs replay RUN_ID`` (SPEC S9.8, issue 4 deliverable 7): re-run a recorded training run from its
stored config, seed and dataset version (content hash verified before training), compare every recorded test
metric, warn on code or environment differences, and record the replay as a new run (kind ``replay``) whose parent
is the original.

Tolerance: CPU runs that are deterministic by construction (sklearn, or torch on one CPU worker) must match to a
relative 1e-5; multi-worker or GPU torch runs within 0.01 absolute. Known non-determinism: with several workers the
order in which Ray Data hands blocks to the shards, and float reductions in all-reduce, vary between runs; GPU
kernels are not bitwise reproducible unless deterministic algorithms are forced.

A replay never registers a model and never compares against the current champion (the champion may have changed
since); its gate still runs so the baselines and lift are recomputed and compared like any other test metric.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mlplatform._internal.lineage import environment, git_state
from mlplatform.config.train import train_config_from_dict
from mlplatform.entities import RunKind, RunStatus
from mlplatform.errors import InvalidInput

if TYPE_CHECKING:  # annotations only: the SQL store loads where a client is opened
    from mlplatform.client import Client

log = logging.getLogger(__name__)

RTOL_EXACT = 1e-5
ATOL_LOOSE = 0.01
_MAX_PACKAGES_LISTED = 10


@dataclass
class MetricCheck:
    key: str
    slice: str | None
    original: float
    replay: float | None
    ok: bool

    @property
    def name(self) -> str:
        return self.key if self.slice is None else f"{self.key}[{self.slice}]"


@dataclass
class ReplayReport:
    original_run_id: str
    replay_run_id: str
    match: bool
    tolerance: dict[str, Any]
    data_version: str | None
    metrics: list[MetricCheck] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> list[MetricCheck]:
        return [m for m in self.metrics if not m.ok]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"mismatches": [m.name for m in self.mismatches]}


def replay(run_id: str, *, client: Client | None = None) -> ReplayReport:
    """Re-run ``run_id`` and compare; the caller decides what a mismatch means (the CLI exits 3)."""
    # heavy: scikit-learn loads only when an estimator is built or scored
    from mlplatform.training import pipeline

    client = client or pipeline._client()
    original = client.runs.get_run(run_id)
    if original.kind not in {RunKind.TRAIN.value, RunKind.REPLAY.value} or "train_config" not in original.config:
        raise InvalidInput(f"run {run_id} is not a training run (kind {original.kind}); only training runs replay",
                           field="run_id")
    recorded = _test_metrics(client, run_id)
    if not recorded:
        raise InvalidInput(f"run {run_id} ({original.status}) recorded no test metrics to compare; only a run that "
                           "reached evaluation can be replayed", field="run_id")
    stored = dict(original.config["train_config"])
    # Same data, split, model, seed and training budget; no registration and no champion comparison.
    stored["register_model"] = False
    stored["gate"] = {**stored.get("gate", {}), "compare_champion": False}
    config = train_config_from_dict(stored, source=f"run {run_id}")
    linked = [d for role, d in client.datasets.for_run(run_id) if role == "train"]
    data_version = linked[0].version if linked else None
    warnings = environment_warnings(original.tags)
    if data_version is None:
        warnings.append("the original run recorded no dataset version; the data could not be verified")
    if config.warm_start and "@" in config.warm_start:
        warnings.append(f"the run warm-started from the alias {config.warm_start}, which may point to another "
                        "version now")
    tolerance = _tolerance(config, original.tags)

    outcome = pipeline.train(config, client=client, force=True, kind=RunKind.REPLAY, parent_run_id=run_id,
                             expect_data_version=data_version,
                             tags={"replay_of": run_id, "tolerance": tolerance})
    again = _test_metrics(client, outcome.run_id)
    checks = [MetricCheck(key, slice_, value, again.get((key, slice_)),
                          _close(value, again.get((key, slice_)), tolerance))
              for (key, slice_), value in sorted(recorded.items(), key=lambda kv: (kv[0][1] or "", kv[0][0]))]
    report = ReplayReport(original_run_id=run_id, replay_run_id=outcome.run_id, match=all(c.ok for c in checks),
                          tolerance=tolerance, data_version=data_version, metrics=checks, warnings=warnings)
    client.runs.update_tags(outcome.run_id, {"replay": {"match": report.match, "warnings": warnings,
                                                        "mismatches": [m.name for m in report.mismatches]}})
    for warning in warnings:
        log.warning("replay of %s: %s", run_id, warning)
    if not report.match:
        detail = ", ".join(f"{m.name}: {m.original:.6g} -> {m.replay if m.replay is None else f'{m.replay:.6g}'}"
                           for m in report.mismatches[:5])
        client.runs.end_run(outcome.run_id, RunStatus.FAILED, error=f"metrics differ from run {run_id}: {detail}")
    return report


def _test_metrics(client: Client, run_id: str) -> dict[tuple[str, str | None], float]:
    """The last value of every test metric, overall and per slice."""
    latest: dict[tuple[str, str | None], float] = {}
    for metric in client.runs.get_metrics(run_id):  # ordered by key, step, id: the last one wins
        if metric.split == "test":
            latest[(metric.key, metric.slice)] = metric.value
    return latest


def _tolerance(config: Any, tags: dict[str, Any]) -> dict[str, Any]:
    gpus = (tags.get("environment") or {}).get("gpus") or []
    on_cpu = config.scaling.use_gpu is False or (config.scaling.use_gpu == "auto" and not gpus)
    if config.framework == "sklearn" or (config.scaling.num_workers == 1 and on_cpu):
        return {"mode": "exact", "rtol": RTOL_EXACT}
    return {"mode": "absolute", "atol": ATOL_LOOSE,
            "why": "multi-worker or GPU training is not bitwise reproducible"}


def _close(original: float, again: float | None, tolerance: dict[str, Any]) -> bool:
    if again is None:
        return False
    if tolerance["mode"] == "exact":
        return math.isclose(original, again, rel_tol=tolerance["rtol"], abs_tol=1e-12)
    return abs(original - again) <= tolerance["atol"]


def environment_warnings(tags: dict[str, Any]) -> list[str]:
    """Readable differences between the code/environment a run recorded and the current ones."""
    before_code, before_env = tags.get("code"), tags.get("environment")
    if not before_code or not before_env:
        return ["the original run recorded no code/environment snapshot; differences cannot be checked"]
    out: list[str] = []
    now_code, now_env = git_state(), environment()
    if before_code.get("commit") != now_code.get("commit"):
        out.append(f"code: git commit {str(before_code.get('commit'))[:12]} -> {str(now_code.get('commit'))[:12]}")
    if before_code.get("diff_sha256") != now_code.get("diff_sha256"):
        out.append("code: uncommitted changes differ from the original run's"
                   + (" (the original had none)" if not before_code.get("dirty") else ""))
    if before_env.get("python") != now_env.get("python"):
        out.append(f"environment: python {str(before_env.get('python')).split()[0]} -> "
                   f"{str(now_env.get('python')).split()[0]}")
    old, new = before_env.get("packages") or {}, now_env.get("packages") or {}
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        listed = ", ".join(f"{k} {old.get(k, '(absent)')} -> {new.get(k, '(absent)')}"
                           for k in changed[:_MAX_PACKAGES_LISTED])
        more = f" and {len(changed) - _MAX_PACKAGES_LISTED} more" if len(changed) > _MAX_PACKAGES_LISTED else ""
        out.append(f"environment: packages changed: {listed}{more}")
    if before_env.get("gpus") != now_env.get("gpus"):
        out.append(f"environment: GPUs {before_env.get('gpus')} -> {now_env.get('gpus')}")
    return out
