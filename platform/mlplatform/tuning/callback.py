"""A Ray Tune ``Callback`` that records a search in the evaluation store, from the driver (SPEC S3.4).

One sweep run (kind ``tune``, created by the caller) and one child run per trial (kind ``tune_trial``). A
trial's run id is ``uuid5(sweep run id, Tune trial id)``: Tune keeps trial ids across ``Tuner.restore``, and
``start_run`` with a given id is idempotent, so a resumed search finds its trials' runs instead of creating
new ones.

No duplicates: a result is keyed by its ``training_iteration`` (the step). The steps already in the store are
read once when a trial (re)starts, and a step that is already there is never written again -- a trial restored
from a checkpoint, or restarted from scratch after a failure, re-reports steps that are skipped.

Mutations recorded: PBT changes a trial's hyperparameters while it runs. Every result is checked against the
trial's last recorded config, and a change is appended to the trial run's ``config_history`` tag
(``[{"from_step": 1, "config": ...}, {"from_step": 5, "config": ...}]``, a step being the first result reported
under that config), so the store holds what each step actually ran with, not only the starting point. An exploit
restarts the trial from a cloned checkpoint, so it may report steps it had already reported under the old
config: those are written too (the newest rows of a step belong to the surviving branch).

Nothing lost: results are buffered and written in batches -- when the buffer is full, when a trial saves a
checkpoint (so every step a restored trial will not report again is in the store before Tune records the
checkpoint), when a trial ends or fails, and at the end of the experiment.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle
from ray.tune import Callback

from mlplatform.entities import RunKind, RunStatus

if TYPE_CHECKING:
    from mlplatform.client import Client

log = logging.getLogger(__name__)

# Keys Tune adds to every result, plus bookkeeping keys of our trainables: not metrics.
_SKIP_KEYS = {
    "training_iteration", "time_total_s", "time_this_iter_s", "time_since_restore", "timesteps_total",
    "episodes_total", "timesteps_since_restore", "iterations_since_restore", "timestamp", "date", "pid",
    "hostname", "node_ip", "done", "trial_id", "experiment_tag", "config", "checkpoint_dir_name",
    "should_checkpoint", "experiment_id",
}


def trial_run_id(sweep_run_id: str, trial_id: str) -> str:
    """Deterministic per (sweep, Tune trial): a resumed search maps each trial to the same run."""
    return str(uuid.uuid5(uuid.UUID(sweep_run_id), f"tune-trial:{trial_id}"))


class StoreCallback(Callback):
    """Records trials and their results. Picklable (Tune pickles the run config): the store client is made
    lazily in the driver and never pickled."""

    def __init__(self, *, sweep_run_id: str, experiment: str, store_url: str | None = None,
                 artifact_uri: str | None = None, seed: int | None = None, tags: dict[str, Any] | None = None,
                 describe: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 finished_key: str = "trial_finished", flush_rows: int = 500,
                 control_keys: frozenset[str] = frozenset({"trial_finished"}), heartbeat_s: float = 60.0) -> None:
        self.sweep_run_id = sweep_run_id
        self.experiment = experiment
        self.store_url, self.artifact_uri = store_url, artifact_uri
        self.seed = seed
        self.tags = dict(tags or {})
        self.describe = describe  # raw Tune config -> the canonical config stored on the trial run
        self.finished_key = finished_key
        self.control_keys = set(control_keys)
        self.flush_rows = flush_rows
        self.heartbeat_s = heartbeat_s
        self._reset()

    def _reset(self) -> None:
        self._client: Client | None = None
        self._runs: dict[str, str] = {}  # Tune trial id -> run id (known to exist)
        self._steps: dict[str, set[int]] = {}  # run id -> steps in the store or in the buffer
        self._buffer: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._buffered = 0
        self._last: dict[str, dict[str, Any]] = {}  # run id -> last result (for the end status)
        self._configs: dict[str, list[dict[str, Any]]] = {}  # run id -> config history (see the module doc)
        self._last_beat = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_client", "_runs", "_steps", "_buffer", "_buffered", "_last", "_last_beat", "_configs"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    # -- store access ------------------------------------------------------------------------------------------
    @property
    def client(self) -> Client:
        if self._client is None:
            # heavy: the SQL store loads where a client is opened (Tune's driver), not in every trial's worker
            from mlplatform.client import Client

            self._client = Client(store_url=self.store_url, artifact_uri=self.artifact_uri)
        return self._client

    def _ensure_run(self, trial: Any) -> str:
        run_id = self._runs.get(trial.trial_id)
        if run_id is not None:
            return run_id
        run_id = trial_run_id(self.sweep_run_id, trial.trial_id)
        config = self.describe(dict(trial.config)) if self.describe else dict(trial.config)
        run = self.client.runs.start_run(
            self.experiment, RunKind.TUNE_TRIAL, run_id=run_id, parent_run_id=self.sweep_run_id, seed=self.seed,
            config=config, name=f"trial-{trial.trial_id}",
            tags={**self.tags, "trial_id": trial.trial_id, "stage": "search",
                  "pattern": config.get("pattern"), "trial_dir": getattr(trial, "path", None)})
        if run.status != RunStatus.RUNNING.value:  # a resumed trial that failed or stopped before
            self.client.runs.end_run(run_id, RunStatus.RUNNING)
        self._steps[run_id] = {m.step for m in self.client.runs.get_metrics(run_id)}
        self._configs[run_id] = list(run.tags.get("config_history") or [{"from_step": 1, "config": run.config}])
        self._runs[trial.trial_id] = run_id
        return run_id

    def flush(self, run_id: str | None = None) -> int:
        """Write buffered rows (of one run, or all); one batched insert per run."""
        written = 0
        for rid in [run_id] if run_id is not None else list(self._buffer):
            rows = self._buffer.pop(rid, [])
            if rows:
                written += self.client.runs.log_metrics(rid, rows)
                self._buffered -= len(rows)
        return written

    # -- Tune hooks --------------------------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ensure_run(trial)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        run_id = self._ensure_run(trial)
        step = int(result.get("training_iteration", 0))
        self._last[run_id] = result
        self._record_config(run_id, step, result.get("config") or trial.config)
        if step in self._steps[run_id]:
            return  # re-reported after a restore: already recorded
        self._steps[run_id].add(step)
        rows = []
        for key, value in result.items():
            if key in _SKIP_KEYS or key in self.control_keys or isinstance(value, bool):
                continue
            if isinstance(value, int | float) and math.isfinite(value):
                split = "validation" if key.startswith("val_") else "train"
                rows.append({"key": key, "value": float(value), "step": step, "split": split})
        self._buffer[run_id].extend(rows)
        self._buffered += len(rows)
        if self._buffered >= self.flush_rows:
            self.flush()

    def _record_config(self, run_id: str, step: int, raw: dict[str, Any]) -> None:
        """Append the config a result ran with when it differs from the last recorded one (a PBT mutation)."""
        # JSON-normalised, as the store holds it (tuples become lists), so only a real change differs.
        config = json.loads(json.dumps(self.describe(dict(raw)) if self.describe else dict(raw), default=str))
        history = self._configs[run_id]
        if config == history[-1]["config"]:
            return
        history.append({"from_step": step, "config": config})
        self.client.runs.update_tags(run_id, {"config_history": history})
        # A PBT exploit restarts the trial from another trial's checkpoint: the steps from here on are new
        # measurements under the new config, not re-reports, so they are written (after the earlier branch's).
        self._steps[run_id] = {s for s in self._steps[run_id] if s < step}

    def on_checkpoint(self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any) -> None:
        run_id = self._runs.get(trial.trial_id)
        if run_id is not None:
            self.flush(run_id)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        run_id = self._ensure_run(trial)
        self.flush(run_id)
        last = self._last.get(run_id) or getattr(trial, "last_result", None) or {}
        if last.get(self.finished_key, 1.0) >= 1.0:
            self.client.runs.end_run(run_id, RunStatus.COMPLETED)
        else:  # stopped by the scheduler (ASHA) before it finished by itself
            self.client.runs.update_tags(run_id, {"early_stopped": True,
                                                  "stopped_at_step": int(last.get("training_iteration", 0))})
            self.client.runs.end_run(run_id, RunStatus.STOPPED, error="stopped early by the scheduler")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        run_id = self._ensure_run(trial)
        self.flush(run_id)
        self.client.runs.end_run(run_id, RunStatus.FAILED, error=_error_text(trial)[:4000])

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        run_id = self._runs.get(trial.trial_id)
        if run_id is not None:
            self.flush(run_id)
            self.client.runs.update_tags(run_id, {"last_error": _error_text(trial)[:2000]})

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        # Heartbeats keep long searches from being failed as stale (no heartbeat for 600 s).
        now = time.monotonic()
        if now - self._last_beat >= self.heartbeat_s:
            self._last_beat = now
            for rid in [self.sweep_run_id, *(self._runs[t.trial_id] for t in trials
                                              if t.status == "RUNNING" and t.trial_id in self._runs)]:
                self.client.runs.heartbeat(rid)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        started = time.monotonic()
        written = self.flush()
        log.debug("final flush wrote %d metric rows in %.3f s", written, time.monotonic() - started)


def _error_text(trial: Any) -> str:
    """The trial's exception as one line (``Type: message``). At ``on_trial_error`` time Tune has written the
    error files to the driver's staging directory (``trial.pickled_error_file`` / ``trial.error_file``) but not
    yet synced them to storage, so the local files come first."""
    error = None
    for read in (_local_pickled_error, lambda t: t.get_pickled_error()):
        try:
            error = read(trial)
        except Exception:  # a missing file, or an exception class that does not unpickle on the driver
            error = None
        if error is not None:
            cause = getattr(error, "cause", None) or error
            return f"{type(cause).__name__}: {cause}".strip()
    for read_text in (_local_error_text, lambda t: t.get_error()):
        try:
            text = read_text(trial)
        except Exception:
            text = None
        if text:
            lines = [line for line in str(text).strip().splitlines() if line.strip()]
            return lines[-1] if lines else str(text)
    return "trial failed (no error recorded by Tune)"


def _local_pickled_error(trial: Any) -> Any:
    path = trial.pickled_error_file
    if not path or not Path(path).is_file():
        return None
    # Written by Tune on this machine for this experiment, from the trial's own exception.
    return cloudpickle.loads(Path(path).read_bytes())


def _local_error_text(trial: Any) -> str | None:
    path = trial.error_file
    return Path(path).read_text() if path and Path(path).is_file() else None
