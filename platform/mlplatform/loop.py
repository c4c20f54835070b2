"""The loop that runs itself (SPEC S8.4, S9.3, issue 18): monitor -> decide -> retrain job -> gate -> rollout.

Stages meet here and nowhere else: monitoring checks and decides, training trains (inside a Ray job), serving's
rollout guard moves the challenger on (through ``client.rollouts``). Nothing here runs by hand: a schedule runs
``mlplatform loop run --config loop.yaml`` (a ``monitor`` schedule, ticked by ``train_jobs/scheduler.py`` or
``mlplatform schedule run-due``), and each tick, per model declared in the config:

1. finishes the open decision first: a retrain job still running is waited for (or left to the next tick); a
   finished one either registered a challenger, which starts a shadow rollout, or ended rejected/failed; a
   rollout under way is followed until the guard promoted (``promoted``) or rolled back (``rolled_back``). While a
   decision is open nothing new is decided, so the loop never stacks retrains.
2. otherwise checks the champion on the newest labelled window of the model's declared data source (a Parquet
   dataset with a timestamp column, or logged traffic joined to its labels) and decides. Retraining is called
   for by significant decay (realized on labels, or CBPE-estimated without them) or RED drift; the cooldown and
   the daily cap (``guard_verdict``, clocked by the ``retrain`` runs that :func:`run_retrain` records, which the
   manual ``mlplatform monitor retrain`` shares) can hold it back.
3. a retrain is submitted as a Ray job through the Jobs API (``train_jobs/retrain.py --decision ID``): it reads
   the same newest window, warm-starts a torch champion or refits an sklearn family, gates the candidate against
   the champion on the same newest holdout and registers a winner as challenger.

Every decision is one ``loop_decisions`` row: what fired, the numbers, the job id, the outcome, and a timeline of
every step. ``mlplatform loop status --model NAME`` prints it; the monitoring report draws it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pydantic import Field, model_validator
from sqlalchemy.engine import make_url

from mlplatform.client import Client
from mlplatform.config.base import StrictModel, load_config, read_yaml
from mlplatform.config.monitor import MonitorConfig, RetrainConfig, load_monitor_config
from mlplatform.config.train import load_train_config, train_config_from_dict
from mlplatform.entities import AlertLevel, RunKind, RunStatus
from mlplatform.entities.loop import OPEN_STATUSES, LoopDecision
from mlplatform.errors import GateFailed, InvalidInput, MLPlatformError, NotFound
from mlplatform.models.factory import default_factory
from mlplatform.monitoring.alerts import AlertCheck, AlertManager, AlertType
from mlplatform.monitoring.check import run_check
from mlplatform.monitoring.evaluation import join_labels, predictions_frame
from mlplatform.monitoring.retrain import guard_verdict

logger = logging.getLogger(__name__)

RETRAIN_EXPERIMENT = "retrain"
ABANDONED_AFTER = timedelta(hours=24)  # a "running" retrain this old died without ending its run
# Ray failed to set up the job's workers (e.g. "Failed to download runtime_env file package ... from the GCS",
# seen under load): no model was trained or judged, so the attempt does not count against the cooldown, and the
# loop submits the job again (a new submission uploads the working dir again).
INFRASTRUCTURE_ERRORS = frozenset({"RuntimeEnvSetupError"})
INFRASTRUCTURE_OUTCOME = "infrastructure_failed"
JOB_RESUBMISSIONS = 1
ROOT = Path(__file__).resolve().parents[2]  # the repository (train_jobs/ lives here) when run from a checkout


class DataSource(StrictModel):
    """Where the newest labelled window of a model comes from."""

    kind: Literal["parquet", "traffic"] = Field("parquet", description="A Parquet dataset with a timestamp "
                                                "column, or the prediction log joined to its labels.")
    path: str | None = Field(None, description="Parquet file or folder (kind parquet).")
    timestamp_column: str = Field("event_time", description="Orders the rows; the window is the newest ones.")
    window_days: float | None = Field(7.0, gt=0, description="The window: rows within this many days of the "
                                      "newest timestamp (kind parquet).")
    last_n: int | None = Field(None, ge=1, description="The window: the newest N rows (instead of window_days).")
    min_rows: int = Field(200, ge=1, description="A smaller labelled window decides nothing.")

    @model_validator(mode="after")
    def _path_for_parquet(self) -> DataSource:
        if self.kind == "parquet" and not self.path:
            raise ValueError("data.path is required when data.kind is 'parquet'")
        if self.kind == "traffic" and self.last_n is None:
            self.last_n = 5000
        return self


class LoopModel(StrictModel):
    """One model the loop looks after."""

    model: str = Field(..., description="Registered model name (its champion is checked).")
    train_config: str = Field(..., description="Training YAML of a retrain; its data is replaced by the window.")
    data: DataSource
    monitor_config: str | None = Field(None, description="Monitor YAML (thresholds); default: built-in.")
    retrain: RetrainConfig | None = Field(None, description="Cooldown and daily cap; default: the monitor "
                                          "config's retrain section.")
    rollout_policy: dict[str, Any] = Field(default_factory=dict, description="Rollout guard policy of the "
                                           "challenger's rollout (serving's GuardPolicy fields).")
    job_timeout_s: float = Field(1800.0, gt=0, description="A retrain job running longer is stopped.")


class LoopConfig(StrictModel):
    models: list[LoopModel] = Field(..., min_length=1)
    jobs_address: str | None = Field(None, description="Ray dashboard URL for the Jobs API; default: "
                                     "RAY_API_SERVER_ADDRESS / RAY_ADDRESS, as `ray job submit` finds it.")
    upload_working_dir: bool = Field(True, description="Ship working_dir to the cluster with the job (Ray's "
                                     "runtime_env working_dir). false: the job runs the code in place, for a Ray "
                                     "head on this machine (nothing uploaded, no package for Ray to lose).")
    working_dir: str | None = Field(None, description="The job's working dir (holds train_jobs/); default: "
                                    "the repository this package runs from.")
    wait: bool = Field(True, description="Wait within the tick for the retrain job, then start the rollout.")

    def model_for(self, name: str) -> LoopModel:
        for entry in self.models:
            if entry.model == name:
                return entry
        raise NotFound(f"model {name!r} is not in the loop config", field="model")


def load_loop_config(path: Path | str) -> LoopConfig:
    if not Path(path).is_file():
        raise NotFound(f"loop config {path} does not exist", field="config")
    return load_config(path, LoopConfig)


def _monitor_config(entry: LoopModel) -> MonitorConfig:
    return load_monitor_config(entry.monitor_config)


def guards_of(entry: LoopModel) -> RetrainConfig:
    return entry.retrain or _monitor_config(entry).retrain


# -- the newest labelled window --------------------------------------------------------------------------------


def newest_window(client: Client, entry: LoopModel, target: str) -> pd.DataFrame:
    """The newest labelled rows of the model's data source (rows without a label left out)."""
    source = entry.data
    if source.kind == "traffic":
        frame = _traffic_window(client, entry.model, source.last_n or 5000, target)
    else:
        frame = _parquet_window(source)
    if target not in frame.columns:
        raise InvalidInput(f"the newest window of {entry.model} has no label column {target!r}", field="data")
    frame = frame[frame[target].notna()].reset_index(drop=True)
    if len(frame) < source.min_rows:
        raise InvalidInput(f"the newest window of {entry.model} has {len(frame)} labelled rows, fewer than "
                           f"min_rows={source.min_rows}", field="data")
    return frame


def _parquet_window(source: DataSource) -> pd.DataFrame:
    path = Path(source.path or "")
    if "://" not in str(source.path) and not path.exists():
        raise NotFound(f"data source {source.path} does not exist", field="data.path")
    dataset = ds.dataset(str(source.path), format="parquet")
    column = source.timestamp_column
    if column not in dataset.schema.names:
        raise InvalidInput(f"{source.path} has no timestamp column {column!r}", field="data.timestamp_column")
    times = dataset.to_table(columns=[column]).column(column)
    if len(times) == 0:
        raise InvalidInput(f"data source {source.path} is empty", field="data.path")
    if source.last_n is not None:
        frame = dataset.to_table().to_pandas()
        return frame.sort_values(column, kind="stable").tail(source.last_n).reset_index(drop=True)
    newest = pc.max(times).as_py()
    since = newest - timedelta(days=float(source.window_days or 7.0))
    # the filter runs in Arrow, on the row groups that can hold newer rows: old history is never materialised
    table = dataset.to_table(filter=ds.field(column) > since)
    return table.to_pandas().sort_values(column, kind="stable").reset_index(drop=True)


def _traffic_window(client: Client, model: str, last_n: int, target: str) -> pd.DataFrame:
    """The last ``last_n`` logged predictions of ``model`` with their features, joined to the labels that
    arrived (by request id, or by entity and time)."""
    records = client.monitoring.predictions(model, limit=last_n)
    if not records:
        return pd.DataFrame(columns=[target])
    features = pd.DataFrame([r.features for r in records])
    features["request_id"] = [r.request_id for r in records]
    features["instance_index"] = [r.instance_index for r in records]
    entities = sorted({r.entity_id for r in records if r.entity_id is not None})
    labels = client.monitoring.labels(request_ids=sorted({r.request_id for r in records}),
                                      entity_ids=entities or None)
    joined = join_labels(predictions_frame(records), labels).joined
    keys = joined[["request_id", "instance_index", "label"]].rename(columns={"label": target})
    return features.merge(keys, on=["request_id", "instance_index"], how="inner").drop(
        columns=["request_id", "instance_index"])


# -- one tick ----------------------------------------------------------------------------------------------------


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def _attempts(client: Client, model_name: str) -> list[Any]:
    """Retraining runs of this model that really started (refused triggers and attempts Ray could not start do
    not count), newest first: the clock of the cooldown and the daily cap, for the loop and `mlplatform monitor
    retrain` alike."""
    runs = client.runs.list_runs(kind="retrain", limit=1000)
    return [r for r in runs if r.tags.get("model") == model_name
            and r.tags.get("outcome") not in ("refused", INFRASTRUCTURE_OUTCOME)]


def evidence_of(check: Any) -> dict[str, Any]:
    """The numbers a decision rests on, from a monitoring check."""
    evaluation = check.evaluation or {}
    decay = evaluation.get("decay") or {}
    estimated = evaluation.get("estimated") or {}
    drifted = sorted(((f.name, round(float(f.psi), 4)) for f in check.drift.features.values()
                      if f.psi is not None and f.psi >= 0.2), key=lambda item: -item[1])
    return {
        "level": check.level.name, "drift_level": check.drift.level.name, "n": check.drift.n,
        "drifted_features": dict(drifted[:10]), "drift_report_id": check.drift_report_id,
        "accuracy": (evaluation.get("metrics") or {}).get("accuracy"),
        "decay": {k: decay.get(k) for k in ("decayed", "baseline", "current", "p_value", "n") if k in decay},
        "estimated_accuracy": estimated.get("accuracy"),
        "estimated_decay": {k: (estimated.get("decay") or {}).get(k) for k in ("decayed", "p_value")},
        "alerts": [f"{a.type}:{a.metric} {a.level.name}" for a in check.checks if a.level >= AlertLevel.ORANGE],
    }


def what_fired(evidence: dict[str, Any]) -> tuple[str | None, str]:
    """(trigger, reason): significant decay first (it is what a retrain repairs), then the CBPE estimate, then
    RED drift; (None, why not) when nothing calls for a retrain."""
    decay, estimated = evidence["decay"], evidence["estimated_decay"]
    if decay.get("decayed"):
        return "decay", (f"significant decay: accuracy {decay.get('current'):.4f} vs {decay.get('baseline'):.4f} "
                         f"(n={decay.get('n')}, p={decay.get('p_value'):.3g})")
    if estimated.get("decayed"):
        return "estimated_decay", (f"significant estimated decay (CBPE): accuracy {evidence['estimated_accuracy']:.4f}"
                                   f" (p={estimated.get('p_value'):.3g})")
    if evidence["drift_level"] == AlertLevel.RED.name:
        features = ", ".join(f"{k} PSI {v:.2f}" for k, v in list(evidence["drifted_features"].items())[:3])
        return "drift", f"RED drift ({features or 'prediction/label drift'})"
    return None, f"nothing significant: level {evidence['level']}, drift {evidence['drift_level']}"


def jobs_client(config: LoopConfig) -> Any:
    from ray.job_submission import JobSubmissionClient  # Ray's client only where a job is submitted

    return JobSubmissionClient(config.jobs_address or os.environ.get("RAY_API_SERVER_ADDRESS") or None)


def _job_env(client: Client, code_root: str = ".") -> dict[str, str]:
    """The job's view of this store: the MLPLATFORM_* settings of this process, and the store and artifacts the
    client really uses (a Ray worker has neither this process's environment nor its settings)."""
    env = {k: v for k, v in os.environ.items() if k.startswith("MLPLATFORM_")}
    settings = client.settings
    env.setdefault("MLPLATFORM_HOME", str(settings.home))
    # the client's own URL when it carries no password; otherwise the settings' (whose password stays in its
    # secret file, never in the job's environment)
    env["MLPLATFORM_STORE_URL"] = (client.display_url if make_url(client.display_url).password is None
                                   else settings.shareable_store_url())
    env["MLPLATFORM_ARTIFACT_URI"] = client.artifacts.root_uri
    # the repository: the uploaded working dir (relative), or the checkout in place (absolute, since Ray's workers
    # do not start in the driver's directory)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(code_root) / "platform"), code_root])
    return env


def submit_retrain(client: Client, config: LoopConfig, decision: LoopDecision, jobs: Any, attempt: int = 1) -> str:
    working_dir = config.working_dir or str(ROOT)
    if not (Path(working_dir) / "train_jobs" / "retrain.py").is_file():
        raise NotFound(f"{working_dir} holds no train_jobs/retrain.py; set working_dir in the loop config",
                       field="working_dir")
    command = f"python train_jobs/retrain.py --decision {decision.id}"
    if config.upload_working_dir:
        entrypoint = command
        runtime_env = {"working_dir": working_dir, "env_vars": _job_env(client),
                       "excludes": ["demo_output", ".mlplatform", "*.parquet", ".git"]}
    else:
        root = str(Path(working_dir).resolve())
        entrypoint = f"cd {shlex.quote(root)} && {command}"
        runtime_env = {"env_vars": _job_env(client, root)}
    deadline = time.monotonic() + 60
    while True:
        try:
            return jobs.submit_job(
                entrypoint=entrypoint,
                submission_id=f"retrain-{decision.model_name}-{decision.id[:8]}"
                              + (f"-{attempt}" if attempt > 1 else ""),
                runtime_env=runtime_env, metadata={"model": decision.model_name, "decision": decision.id})
        except RuntimeError as exc:
            # the job agent starts a few seconds after the dashboard ("No available agent to submit job")
            if "agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def tick(client: Client, config: LoopConfig, *, jobs: Any = None, now: datetime | None = None,
         wait: bool | None = None) -> list[LoopDecision]:
    """One pass over every model of the config (see the module docstring); one model's error is recorded and
    the others go on."""
    out = []
    for entry in config.models:
        try:
            out.append(step_model(client, config, entry, jobs=jobs, now=now, wait=wait))
        except Exception as exc:  # a broken model must not stop the loop of the others
            logger.exception("loop tick for %s failed", entry.model)
            out.append(client.loop.add(entry.model, action="none", status="failed", trigger=None,
                                       reason=f"{type(exc).__name__}: {exc}"[:2000], champion_version=None,
                                       evidence={}, created_at=now))
    return out


def step_model(client: Client, config: LoopConfig, entry: LoopModel, *, jobs: Any = None, now: datetime | None = None,
               wait: bool | None = None) -> LoopDecision:
    wait = config.wait if wait is None else wait
    now = now or datetime.now(UTC)
    for open_decision in client.loop.list(entry.model, statuses=OPEN_STATUSES, limit=10):
        current = reconcile(client, config, entry, open_decision, jobs=jobs, wait=wait)
        if current.status in OPEN_STATUSES:
            return current  # still under way: nothing new is decided for this model
    champion = client.registry.resolve(f"{entry.model}@champion")
    monitor_config = _monitor_config(entry)
    if entry.data.kind == "traffic":
        check = run_check(client, champion.ref, config=monitor_config, last_n=entry.data.last_n)
        window_info: dict[str, Any] = {"source": "traffic", "last_n": entry.data.last_n}
    else:
        target = client.registry.load(champion.ref).manifest.target
        frame = newest_window(client, entry, target)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "window.parquet"
            frame.to_parquet(path, index=False)
            check = run_check(client, champion.ref, config=monitor_config, window_file=path)
        column = entry.data.timestamp_column
        window_info = {"source": entry.data.path, "rows": len(frame),
                       "start": str(frame[column].min()), "end": str(frame[column].max())}
    evidence = evidence_of(check) | {"window": window_info, "config": entry.model_dump(mode="json")}
    trigger, reason = what_fired(evidence)
    if trigger is None:
        return client.loop.add(entry.model, action="none", status="no_action", trigger=None, reason=reason,
                               champion_version=champion.version, evidence=evidence, created_at=now,
                               details={"timeline": [{"at": now.isoformat(), "step": "checked", "reason": reason}]})
    blocked = guard_verdict([r.created_at for r in _attempts(client, entry.model)], now, guards_of(entry))
    if blocked is not None:
        return client.loop.add(entry.model, action="blocked", status="blocked", trigger=trigger,
                               reason=f"{reason}; held: {blocked}", champion_version=champion.version,
                               evidence=evidence, created_at=now,
                               details={"timeline": [{"at": now.isoformat(), "step": "held", "reason": blocked}]})
    decision = client.loop.add(entry.model, action="retrain", status="retraining", trigger=trigger, reason=reason,
                               champion_version=champion.version, evidence=evidence, created_at=now,
                               details={"timeline": [{"at": now.isoformat(), "step": "decided", "reason": reason}]})
    jobs = jobs or jobs_client(config)
    try:
        job_id = submit_retrain(client, config, decision, jobs)
    except Exception as exc:
        return client.loop.update(decision.id, status="failed", step={"step": "submit_failed", "error": str(exc)})
    decision = client.loop.update(decision.id, job_id=job_id, step={"step": "job_submitted", "job_id": job_id})
    logger.warning("loop: %s -> retrain job %s (%s)", entry.model, job_id, reason)
    return reconcile(client, config, entry, decision, jobs=jobs, wait=wait)


def _wait_for_job(jobs: Any, job_id: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        status = jobs.get_job_status(job_id)
        if status.is_terminal() or time.monotonic() > deadline:
            return str(status.value)
        time.sleep(1.0)


def reconcile(client: Client, config: LoopConfig, entry: LoopModel, decision: LoopDecision, *, jobs: Any = None,
              wait: bool = False) -> LoopDecision:
    """Move an open decision on as far as it can go now."""
    if decision.status == "retraining":
        decision = _follow_job(client, config, entry, decision, jobs=jobs, wait=wait)
    if decision.status == "retraining" and decision.challenger_version is not None:
        decision = _start_rollout(client, entry, decision)
    if decision.status == "rolling_out":
        decision = _follow_rollout(client, decision)
    return decision


def _follow_job(client: Client, config: LoopConfig, entry: LoopModel, decision: LoopDecision, *, jobs: Any,
                wait: bool) -> LoopDecision:
    if decision.job_id is None:
        return client.loop.update(decision.id, status="failed", step={"step": "failed", "error": "no job id"})
    jobs = jobs or jobs_client(config)
    if wait:
        age = (datetime.now(UTC) - _utc(decision.created_at)).total_seconds()
        status = _wait_for_job(jobs, decision.job_id, max(1.0, entry.job_timeout_s - age))
    else:
        status = str(jobs.get_job_status(decision.job_id).value)
    decision = client.loop.get(decision.id)  # the job wrote its outcome into the row
    if status in ("PENDING", "RUNNING"):
        age = (datetime.now(UTC) - _utc(decision.created_at)).total_seconds()
        if age <= entry.job_timeout_s:
            return decision
        jobs.stop_job(decision.job_id)
        return client.loop.update(decision.id, status="failed", step={
            "step": "failed", "error": f"retrain job {decision.job_id} ran over {entry.job_timeout_s:g} s; stopped"})
    if decision.status != "retraining" or decision.challenger_version is not None:
        return decision
    if _resubmittable(decision):
        return _resubmit(client, config, entry, decision, jobs=jobs, wait=wait)
    last = decision.timeline[-1] if decision.timeline else {}
    if last.get("step") == INFRASTRUCTURE_OUTCOME:
        return client.loop.update(decision.id, status="failed", step={
            "step": "failed", "error": f"Ray could not start the retrain job's workers "
                                       f"{1 + JOB_RESUBMISSIONS} times: {last.get('reason')}"})
    tail = ""
    with contextlib.suppress(Exception):  # the logs are a courtesy; the status is the fact
        tail = jobs.get_job_logs(decision.job_id)[-1500:]
    return client.loop.update(decision.id, status="failed", step={
        "step": "failed", "error": f"retrain job {decision.job_id} ended {status} without an outcome",
        "log_tail": tail})


def _resubmittable(decision: LoopDecision) -> bool:
    """The job ended because Ray could not start its workers, and it has not been submitted again too often."""
    steps = decision.timeline
    resubmitted = sum(1 for s in steps if s.get("step") == "job_resubmitted")
    return bool(steps) and steps[-1].get("step") == INFRASTRUCTURE_OUTCOME and resubmitted < JOB_RESUBMISSIONS


def _resubmit(client: Client, config: LoopConfig, entry: LoopModel, decision: LoopDecision, *, jobs: Any,
              wait: bool) -> LoopDecision:
    attempt = 2 + sum(1 for s in decision.timeline if s.get("step") == "job_resubmitted")
    try:
        job_id = submit_retrain(client, config, decision, jobs, attempt=attempt)
    except Exception as exc:
        return client.loop.update(decision.id, step={"step": "submit_failed", "error": str(exc)})
    logger.warning("loop: %s -> retrain job %s again: Ray could not start the last one", entry.model, job_id)
    decision = client.loop.update(decision.id, status="retraining", job_id=job_id,
                                  step={"step": "job_resubmitted", "job_id": job_id, "attempt": attempt})
    return _follow_job(client, config, entry, decision, jobs=jobs, wait=wait)


def _infrastructure_failure(exc: BaseException) -> bool:
    """Ray, not the model, failed: the exception or one it was raised from is a Ray setup error."""
    seen: BaseException | None = exc
    for _ in range(10):  # a bounded walk down the cause chain
        if seen is None:
            return False
        if type(seen).__name__ in INFRASTRUCTURE_ERRORS:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _start_rollout(client: Client, entry: LoopModel, decision: LoopDecision) -> LoopDecision:
    try:
        state = client.rollouts.start(entry.model, stage="shadow", policy=entry.rollout_policy or None,
                                      actor=f"loop (decision {decision.id[:8]})")
    except MLPlatformError as exc:  # e.g. an operator's rollout is active: the challenger waits for a human
        return client.loop.update(decision.id, status="failed", step={"step": "rollout_not_started",
                                                                      "error": str(exc)})
    return client.loop.update(decision.id, status="rolling_out", step={
        "step": "rollout_started", "stage": state.stage, "champion_version": state.champion_version,
        "challenger_version": state.challenger_version})


def _follow_rollout(client: Client, decision: LoopDecision) -> LoopDecision:
    state = client.rollouts.state(decision.model_name)
    if state is None or state.challenger_version != decision.challenger_version:
        return client.loop.update(decision.id, status="failed", step={
            "step": "rollout_replaced", "error": "another rollout replaced this challenger's"})
    seen = [s.get("stage") for s in decision.timeline if s.get("step") in ("rollout_started", "stage")]
    if state.status == "completed":
        return client.loop.update(decision.id, status="promoted", step={
            "step": "promoted", "stage": state.stage, "version": state.challenger_version})
    if state.status in ("rolled_back", "aborted"):
        last = state.details.get("last_rollback") or {}
        return client.loop.update(decision.id, status="rolled_back", step={
            "step": state.status, "stage": state.stage, "reason": last.get("reason") or state.status,
            "metrics": last.get("metrics")})
    if not seen or seen[-1] != state.stage:
        return client.loop.update(decision.id, step={"step": "stage", "stage": state.stage})
    return decision


def status_rows(client: Client, model: str, limit: int = 50) -> list[dict[str, Any]]:
    """The decisions of ``model``, newest first, for `mlplatform loop status` and the report."""
    rows = []
    for d in client.loop.list(model, limit=limit):
        evidence = {k: v for k, v in d.evidence.items() if k != "config"}
        rows.append({"id": d.id, "at": d.created_at.isoformat(), "trigger": d.trigger, "action": d.action,
                     "status": d.status, "reason": d.reason, "champion": d.champion_version,
                     "challenger": d.challenger_version, "job_id": d.job_id, "evidence": evidence,
                     "timeline": d.timeline})
    return rows


# -- one guarded retraining (the Ray job's body, and `mlplatform monitor retrain`) -------------------------------


@dataclass
class RetrainResult:
    model: str
    status: str  # completed | rejected | failed | infrastructure_failed | refused | skipped
    trigger: str
    alert_id: str | None = None
    window: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    training_run_id: str | None = None
    parent: str | None = None
    challenger: str | None = None
    gate: dict[str, Any] = field(default_factory=dict)
    rollout: dict[str, Any] | None = None
    reason: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

def _blocked(client: Client, model_name: str, mine: Any, config: RetrainConfig) -> str | None:
    """Judged after our own run row exists, against the runs created before it: of two racing triggers, the
    later one always sees the earlier and stands down, so two retrains never run at once."""
    earlier = [r for r in _attempts(client, model_name) if r.id != mine.id
               and (_utc(r.created_at), r.id) < (_utc(mine.created_at), mine.id)]
    for run in earlier:
        if run.status == "running":
            if _utc(mine.created_at) - _utc(run.created_at) < ABANDONED_AFTER:
                return f"retraining run {run.id} of {model_name} is still running"
            client.runs.end_run(run.id, "failed", error="abandoned: never ended")
    return guard_verdict([r.created_at for r in earlier], mine.created_at, config)


def _window_info(window_file: Path | None, config: Any) -> dict[str, Any]:
    if window_file is None:
        return {"source": config.data.source, "path": config.data.path, "n_rows": config.data.n_rows}

    info: dict[str, Any] = {"source": "file", "path": str(window_file)}
    if str(window_file).lower().endswith((".parquet", ".pq")):
        table = pq.read_table(window_file)
        info["n_rows"] = table.num_rows
        if "event_time" in table.column_names and table.num_rows:
            times = table.column("event_time").to_pandas()
            info["start"], info["end"] = str(times.min()), str(times.max())
    return info


def _step(result: RetrainResult, client: Client, name: str, **details: Any) -> None:
    result.steps.append({"step": name, "at": datetime.now(UTC).isoformat(), **details})
    if result.run_id:
        client.runs.update_tags(result.run_id, {"steps": result.steps})


def run_retrain(client: Client, model_name: str, train_config: Any, *, trigger: str = "manual",
                alert_id: str | None = None, window_file: Path | str | None = None,
                monitor_config: Any = None, start_rollout: bool = True, actor: str = "monitor") -> RetrainResult:
    """One guarded retraining of ``model_name`` (see the module docstring). Never promotes: the best it does is
    a challenger in shadow. Expected errors of training become a failed (recorded, alerted) result."""
    from mlplatform.training.pipeline import train  # torch and Ray Train: only the retrain job needs them

    monitor_config = monitor_config or MonitorConfig()
    if isinstance(train_config, str | Path) and window_file is not None:
        # the window replaces the YAML's data before validation: the YAML's own data file need not exist where
        # the retrain runs (a Ray job's working dir holds the code, not the data)
        raw = read_yaml(train_config)
        raw["data"] = {**raw.get("data", {}), "source": "file", "path": str(window_file)}
        config = train_config_from_dict(raw, source=str(train_config))
    else:
        config = train_config if not isinstance(train_config, str | Path) else load_train_config(train_config)
    if config.model_name != model_name:
        raise InvalidInput(f"the training config registers {config.model_name!r}, not {model_name!r}",
                           field="config")
    champion = client.registry.resolve(f"{model_name}@champion")
    window_path = Path(window_file) if window_file is not None else None
    data = config.model_dump(mode="json")
    if window_path is not None:  # the newest window replaces the config's data; everything else is kept
        data["data"] = data["data"] | {"source": "file", "path": str(window_path),
                                       "name": f"{model_name}_window"}
    data["gate"] = data["gate"] | {"compare_champion": True}  # a retrain must beat the champion, always
    config = train_config_from_dict(data, source="retrain")
    warm = default_factory().get(config.model.family).warm_start and champion.framework == config.framework
    result = RetrainResult(model_name, "running", trigger, alert_id, _window_info(window_path, config),
                           parent=champion.ref)
    run = client.runs.start_run(RETRAIN_EXPERIMENT, RunKind.RETRAIN, name=f"retrain-{model_name}",
                                seed=config.seed, config={"trigger": trigger, "alert_id": alert_id,
                                                          "window": result.window, "champion": champion.ref,
                                                          "warm_start": warm, "train_config": data},
                                tags={"model": model_name, "trigger": trigger, "alert_id": alert_id,
                                      "champion": champion.ref})
    result.run_id = run.id
    blocked = _blocked(client, model_name, run, monitor_config.retrain)
    if blocked is not None:
        result.status, result.reason = "refused", blocked
        client.runs.update_tags(run.id, {"outcome": "refused", "blocked_by": blocked})
        _step(result, client, "refused", reason=blocked)
        client.runs.end_run(run.id, RunStatus.STOPPED, error=f"refused: {blocked}")
        client.monitoring.audit(actor, "retrain_refused", f"model:{model_name}:{champion.version}", blocked)
        logger.warning("retraining of %s refused: %s", model_name, blocked)
        return result
    _step(result, client, "started", champion=champion.ref, warm_start=warm)
    client.monitoring.audit(actor, "retrain_start", f"model:{model_name}:{champion.version}",
                            f"trigger {trigger}" + (f", alert {alert_id}" if alert_id else ""))
    try:
        outcome = train(config, client=client, warm_start=champion.ref if warm else None, parent=champion.ref)
    except GateFailed as exc:
        result.training_run_id = exc.details.get("run_id")
        if result.training_run_id:
            client.runs.update_tags(result.training_run_id, {"retrain_run_id": run.id, "trigger": trigger})
        return _finish(client, result, RunStatus.REJECTED, "rejected", f"not better than the champion: {exc}",
                       monitor_config, champion.version, actor)
    except Exception as exc:  # any failure is recorded and alerted, never silent
        logger.exception("retraining of %s failed", model_name)
        label = INFRASTRUCTURE_OUTCOME if _infrastructure_failure(exc) else "failed"
        return _finish(client, result, RunStatus.FAILED, label, f"{type(exc).__name__}: {exc}",
                       monitor_config, champion.version, actor)
    result.training_run_id, result.challenger, result.gate = outcome.run_id, outcome.model_version, outcome.gate
    client.runs.update_tags(outcome.run_id, {"retrain_run_id": run.id, "trigger": trigger, "alert_id": alert_id})
    client.runs.update_tags(run.id, {"training_run_id": outcome.run_id, "challenger": outcome.model_version})
    _step(result, client, "challenger_registered", version=outcome.model_version, alias=outcome.alias,
          training_run_id=outcome.run_id, parent=outcome.parent)
    client.monitoring.audit(actor, "retrain_challenger", f"model:{outcome.model_version}",
                            f"parent {champion.ref}, run {run.id}")
    if start_rollout and outcome.alias == "challenger":
        result.rollout = _start_shadow(client, model_name, actor, run.id)
        _step(result, client, "rollout", **result.rollout)
    return _finish(client, result, RunStatus.COMPLETED, "completed", None, monitor_config, champion.version, actor)


def _start_shadow(client: Client, model_name: str, actor: str, run_id: str) -> dict[str, Any]:
    try:
        state = client.rollouts.start(model_name, stage="shadow", actor=f"{actor} (retrain {run_id})")
    except ImportError:  # a platform without the rollout feature: the challenger waits for a human
        return {"started": False, "reason": "rollout is not available"}
    except MLPlatformError as exc:  # e.g. a rollout is already active: leave it alone
        logger.warning("retrained challenger of %s: rollout not started: %s", model_name, exc)
        return {"started": False, "reason": str(exc)}
    return {"started": True, "stage": state.stage, "champion_version": state.champion_version,
            "challenger_version": state.challenger_version}


def _finish(client: Client, result: RetrainResult, status: Any, label: str, reason: str | None, monitor_config: Any,
            version: int, actor: str) -> RetrainResult:
    assert result.run_id is not None, "_finish ends the retraining run that run_retrain started"
    result.status, result.reason = label, reason
    _step(result, client, label, **({"reason": reason} if reason else {}))
    client.runs.update_tags(result.run_id, {"outcome": label, "training_run_id": result.training_run_id})
    client.runs.end_run(result.run_id, status, error=reason[:2000] if reason else None)
    if label != "completed":
        client.monitoring.audit(actor, f"retrain_{label}", f"model:{result.model}:{version}", reason)
        # a failure pages (ORANGE); a candidate that lost to the champion is worth a look (YELLOW)
        level = AlertLevel.ORANGE if label in ("failed", INFRASTRUCTURE_OUTCOME) else AlertLevel.YELLOW
        AlertManager(client.monitoring, monitor_config).record(AlertCheck(
            AlertType.RETRAIN, level, result.model, version, f"retrain_{label}",
            f"retraining run {result.run_id} {label}: {reason}", method="retrain_loop"))
    return result


def run_retrain_job(client: Client, decision_id: str) -> RetrainResult:
    """The body of ``train_jobs/retrain.py --decision ID``: retrain on the decision's model's newest window and
    write the outcome into the decision (challenger, or rejected/failed with the reason)."""
    decision = client.loop.get(decision_id)
    entry = LoopModel.model_validate(decision.evidence["config"])
    champion = client.registry.resolve(f"{entry.model}@champion")
    target = client.registry.load(champion.ref).manifest.target
    client.loop.update(decision.id, step={"step": "job_started", "champion": champion.ref})
    try:
        frame = newest_window(client, entry, target)
    except Exception as exc:
        client.loop.update(decision.id, status="failed", step={"step": "failed", "error": str(exc)})
        raise
    monitor_config = _monitor_config(entry).model_copy(update={"retrain": guards_of(entry)})
    with tempfile.TemporaryDirectory() as tmp:
        window = Path(tmp) / f"{entry.model}_window.parquet"
        frame.to_parquet(window, index=False)
        result = run_retrain(client, entry.model, entry.train_config, trigger=decision.trigger or "loop",
                             window_file=window, monitor_config=monitor_config, start_rollout=False,
                             actor=f"loop (decision {decision.id[:8]})")
    result.window = {k: v for k, v in result.window.items() if k != "path"} | {"source": entry.data.path or
                                                                               entry.data.kind}
    if result.status == "completed" and result.challenger:
        version = client.registry.resolve(result.challenger).version
        client.loop.update(decision.id, challenger_version=version, step={
            "step": "challenger_registered", "version": version, "gate": result.gate,
            "retrain_run_id": result.run_id, "training_run_id": result.training_run_id})
    elif result.status == INFRASTRUCTURE_OUTCOME:  # the decision stays open: the loop submits the job again
        client.loop.update(decision.id, step={"step": result.status, "reason": result.reason,
                                              "retrain_run_id": result.run_id})
    else:
        status = "rejected" if result.status in ("rejected", "refused") else "failed"
        client.loop.update(decision.id, status=status, step={
            "step": result.status, "reason": result.reason, "retrain_run_id": result.run_id,
            "gate": result.gate or None})
    return result
