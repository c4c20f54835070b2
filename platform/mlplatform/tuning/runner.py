"""Run, resume and finish a search (SPEC S3.1-S3.5): one code path for ``mlplatform tune`` and
``train_jobs/tune.py``.

The sweep run (kind ``tune``) is created before Tune starts and records everything a resume needs: the search
config, the Tune experiment directory, the dataset version and the split id. Trials share that one split; its
train and validation parts travel to the trials once, through the object store.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplatform._internal.ray_runtime import ensure_ray
from mlplatform.artifacts.storage import join_uri
from mlplatform.config.tune import BASELINE_PATTERN, TuneSearchConfig, load_tune_config, tune_config_from_dict
from mlplatform.entities import RunKind, RunStatus
from mlplatform.errors import Conflict, MLPlatformError, NotFound
from mlplatform.tuning.results import find_sweep, leaderboard, register_best_trial, warm_start_configs
from mlplatform.tuning.space import (
    canonical_config,
    define_by_run,
    grid_configs,
    param_space,
    pbt_mutations,
    warm_points,
)
from mlplatform.tuning.trial import (
    CONTROL_KEYS,
    EPOCH_KEY,
    FINISHED_KEY,
    PreparedData,
    TrialData,
    prepare_data,
    run_trial,
)

if TYPE_CHECKING:
    from mlplatform.client import Client

log = logging.getLogger(__name__)


@dataclass
class SearchOutcome:
    sweep_run_id: str
    status: str
    experiment_path: str
    split_id: str
    counts: dict[str, int] = field(default_factory=dict)
    leaderboard: dict[str, Any] = field(default_factory=dict)
    registered: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _client() -> Client:
    # heavy: the SQL store loads where a client is opened, not on import (CLI --help, Ray workers)
    from mlplatform.client import Client

    return Client()


def tune_storage_path(artifact_uri: str) -> str:
    """Tune's experiment state lives next to the artifacts (shared storage on a multi-node cluster)."""
    if "://" in artifact_uri:
        return join_uri(artifact_uri, "ray_tune")
    return str(Path(artifact_uri).expanduser().resolve() / "ray_tune")


def trial_dirname(trial: Any) -> str:
    # Tune's default directory name spells out the whole config; with every pattern's sub-space that runs past
    # path-length limits. The trial id is unique within the experiment.
    return f"trial_{trial.trial_id}"


def search_from_file(path: Path | str, **kwargs: Any) -> SearchOutcome:
    return run_search(load_tune_config(path), **kwargs)


def run_search(config: TuneSearchConfig, *, client: Client | None = None, warm_start_from: list[str] | None = None,
               register_best: bool = False, force: bool = False, storage_path: str | None = None,
               trainable: Any = None, callbacks: list[Any] | None = None) -> SearchOutcome:
    """Start a new search. ``trainable`` replaces the standard one (tests, benchmarks); it receives
    ``data=TrialData`` through ``tune.with_parameters``. ``callbacks`` are extra Tune callbacks (they are
    pickled with the experiment and come back on resume)."""
    client = client or _client()
    ensure_ray(client.settings.ray_address)
    prepared = prepare_data(config)
    dataset = client.datasets.register(
        prepared.dataset_name, prepared.dataset_version, uri=prepared.dataset_uri,
        row_count=len(prepared.trial_data.train) + len(prepared.trial_data.validation) + len(prepared.test),
        schema={"columns": {c: str(t) for c, t in prepared.trial_data.train.dtypes.items()}})
    sources = list(dict.fromkeys([*config.warm_start_from, *(warm_start_from or [])]))
    warm = warm_start_configs(client, sources, prepared.dataset_version, top_k=config.warm_start_top_k) \
        if sources else []
    sweep_run_id = str(uuid.uuid4())
    tune_name = f"{config.name}-{sweep_run_id[:8]}"
    storage = storage_path or tune_storage_path(client.artifacts.root_uri)
    client.runs.start_run(
        config.experiment, RunKind.TUNE, run_id=sweep_run_id, seed=config.seed, name=config.name,
        config={"tune_config": config.model_dump(mode="json", by_alias=True)},
        tags={"storage_path": storage, "tune_name": tune_name, "split_id": prepared.trial_data.split_id,
              "split": prepared.split_summary, "dataset_version": prepared.dataset_version,
              "dataset": f"{prepared.dataset_name}@{prepared.dataset_version[:12]}", "metric": config.metric,
              "mode": config.resolved_mode, "algorithm": config.search.algorithm,
              "scheduler": config.search.scheduler, "warm_start_from": sources, "warm_start_points": len(warm),
              "stage": "search"})
    client.runs.link_dataset(sweep_run_id, dataset.id, role="train")
    tuner = build_tuner(config, prepared.trial_data, sweep_run_id=sweep_run_id, storage_path=storage,
                        name=tune_name, warm=warm, trainable=trainable, callbacks=callbacks)
    return _fit_and_finish(tuner, config, client, sweep_run_id, join_uri(storage, tune_name), prepared,
                           register_best=register_best, force=force)


def resume_search(experiment: str, *, client: Client | None = None, register_best: bool = False, force: bool = False,
                  trainable: Any = None) -> SearchOutcome:
    """Continue a stopped search with ``Tuner.restore``: finished trials are not rerun, errored ones resume from
    their latest checkpoint, and the store gets no duplicate rows (see the callback)."""
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    from ray import tune

    client = client or _client()
    sweep = find_sweep(client, experiment)
    if sweep.status == RunStatus.COMPLETED.value:
        raise Conflict(f"search {sweep.id} already completed; start a new one (--warm-start-from {sweep.id})",
                       field="resume")
    config = tune_config_from_dict(sweep.config["tune_config"], source=f"run {sweep.id}")
    ensure_ray(client.settings.ray_address)
    prepared = prepare_data(config)
    if prepared.trial_data.split_id != sweep.tags.get("split_id"):
        raise Conflict(f"the data or split changed since search {sweep.id} started (split "
                       f"{sweep.tags.get('split_id')} -> {prepared.trial_data.split_id}); start a new search",
                       field="data")
    path = join_uri(sweep.tags["storage_path"], sweep.tags["tune_name"])
    if not tune.Tuner.can_restore(path):
        raise NotFound(f"no Tune experiment state at {path} (the search stopped before Tune saved any)",
                       field="resume")
    client.runs.end_run(sweep.id, RunStatus.RUNNING)
    tuner = tune.Tuner.restore(path, trainable=_trainable(config, prepared.trial_data, trainable),
                               resume_errored=True)
    return _fit_and_finish(tuner, config, client, sweep.id, path, prepared, register_best=register_best,
                           force=force)


def _trainable(config: TuneSearchConfig, data: TrialData, trainable: Any = None) -> Any:
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    from ray import tune

    wrapped = tune.with_parameters(trainable or run_trial, data=data)  # one object-store copy for every trial
    return tune.with_resources(wrapped, {"cpu": config.resources.cpu, "gpu": config.resources.gpu})


def build_tuner(config: TuneSearchConfig, data: TrialData, *, sweep_run_id: str, storage_path: str, name: str,
                warm: list[dict[str, Any]] | None = None, trainable: Any = None,
                callbacks: list[Any] | None = None) -> Any:
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from mlplatform.tuning.callback import StoreCallback

    algorithm, mode = config.search.algorithm, config.resolved_mode
    points = warm_points(config, warm or [])
    space: dict[str, Any] = {}
    if algorithm == "optuna":
        # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        from mlplatform.tuning.searchers import FixedFirst

        inner = OptunaSearch(space=define_by_run(config), metric=config.metric, mode=mode,
                             points_to_evaluate=points or None, sampler=optuna.samplers.TPESampler(seed=config.seed))
        search_alg: Any = FixedFirst(inner, [{"pattern": BASELINE_PATTERN}])
    elif algorithm == "grid":
        space = {"trial": tune.grid_search(grid_configs(config, points))}
        search_alg = BasicVariantGenerator(random_state=config.seed, max_concurrent=config.max_concurrent_trials)
    else:
        space = param_space(config)
        search_alg = BasicVariantGenerator(points_to_evaluate=[{"pattern": BASELINE_PATTERN}, *points],
                                           random_state=config.seed, max_concurrent=config.max_concurrent_trials)
    callback = StoreCallback(
        sweep_run_id=sweep_run_id, experiment=config.experiment, seed=config.seed,
        tags={"split_id": data.split_id, "sweep_run_id": sweep_run_id},
        describe=_Describe(data.families), finished_key=FINISHED_KEY, control_keys=frozenset(CONTROL_KEYS))
    return tune.Tuner(
        _trainable(config, data, trainable),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=config.metric, mode=mode, search_alg=search_alg, scheduler=_scheduler(config),
            num_samples=1 if algorithm == "grid" else config.budget.num_samples,
            # BasicVariantGenerator limits concurrency itself (Tune ignores max_concurrent_trials for it).
            max_concurrent_trials=config.max_concurrent_trials if algorithm == "optuna" else None,
            time_budget_s=config.budget.time_budget_s,
            reuse_actors=True,  # a new actor per trial costs ~200% overhead here (RAY_NOTES), reuse ~10%
            trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=name, storage_path=storage_path, callbacks=[callback, *(callbacks or [])], verbose=0,
            # Keep every trial checkpoint (small; bounded by epochs x trials): a num_to_keep forces an experiment
            # snapshot each time a trial saves that many, which dominates short epochs.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            failure_config=tune.FailureConfig(max_failures=0)),
    )


class _Describe:
    """Raw Tune config -> canonical config (picklable, unlike a closure)."""

    def __init__(self, pattern_families: dict[str, str]) -> None:
        self.families = pattern_families

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any]:
        return canonical_config(raw, self.families)


def _scheduler(config: TuneSearchConfig) -> Any:
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    search = config.search
    if search.scheduler == "asha":
        # Time is the epoch, which only epoch-based (torch) trials report: ASHA skips results without it, so a
        # one-shot sklearn trial's final score never sets the cutoff for a torch trial's first epoch.
        return ASHAScheduler(time_attr=EPOCH_KEY, max_t=max(config.max_iterations, search.grace_period),
                             grace_period=search.grace_period, reduction_factor=search.reduction_factor)
    if search.scheduler == "pbt":
        return PopulationBasedTraining(time_attr="training_iteration",
                                       perturbation_interval=search.perturbation_interval,
                                       quantile_fraction=search.quantile_fraction, synch=search.synch,
                                       hyperparam_mutations=pbt_mutations(config))
    return FIFOScheduler()


def _fit_and_finish(tuner: Any, config: TuneSearchConfig, client: Client, sweep_run_id: str, path: str,
                    prepared: PreparedData, *, register_best: bool, force: bool) -> SearchOutcome:
    started = time.monotonic()
    try:
        # Tune prints its progress tables to stdout; send them to stderr so stdout carries only the result
        # (``--json`` output stays parseable).
        with contextlib.redirect_stdout(sys.stderr):
            grid = tuner.fit()
    except KeyboardInterrupt:
        client.runs.end_run(sweep_run_id, RunStatus.STOPPED, error=f"interrupted; resume with "
                                                                   f"`mlplatform tune --resume {sweep_run_id}`")
        raise
    except Exception as exc:
        client.runs.end_run(sweep_run_id, RunStatus.FAILED, error=str(exc)[:2000])
        raise MLPlatformError(f"search {sweep_run_id} failed: {exc}") from exc
    n_trials = len(grid)
    # Interrupted (SIGINT/SIGUSR1): trials left unfinished, or fewer trials than the budget without the time
    # budget running out (Tune does not say it was interrupted; fit() returns normally).
    unfinished = n_trials - grid.num_terminated - grid.num_errors
    expected = len(grid_configs(config)) if config.search.algorithm == "grid" else config.budget.num_samples
    time_up = config.budget.time_budget_s is not None and time.monotonic() - started >= config.budget.time_budget_s
    if n_trials < expected and not time_up:
        unfinished = max(unfinished, expected - n_trials)
    if unfinished:
        for run in client.runs.list_runs(parent_run_id=sweep_run_id, kind=RunKind.TUNE_TRIAL.value,
                                         status=RunStatus.RUNNING.value, limit=100_000):
            client.runs.end_run(run.id, RunStatus.STOPPED, error="search interrupted; resumes with the search")
    counts = _counts(client, sweep_run_id)
    board = leaderboard(client, sweep_run_id)
    client.runs.update_tags(sweep_run_id, {"trial_counts": counts, "n_trials": n_trials,
                                           "best_trial_run_id": (board.get("overall_best") or {}).get("run_id")})
    outcome = SearchOutcome(sweep_run_id=sweep_run_id, status="", experiment_path=path,
                            split_id=prepared.trial_data.split_id, counts=counts, leaderboard=board)
    if unfinished:
        client.runs.end_run(sweep_run_id, RunStatus.STOPPED, error=f"{unfinished} trial(s) unfinished; resume "
                            f"with `mlplatform tune --resume {sweep_run_id}`")
        outcome.status = RunStatus.STOPPED.value
        return outcome
    searched = [t for t in board["trials"] if t["pattern"] != BASELINE_PATTERN]
    if searched and all(t["status"] == RunStatus.FAILED.value for t in searched):
        errors = sorted({(t.get("error") or "?")[:200] for t in searched})
        message = f"every trial failed ({len(searched)}): " + " | ".join(errors[:3])
        client.runs.end_run(sweep_run_id, RunStatus.FAILED, error=message)
        raise MLPlatformError(f"search {sweep_run_id}: {message}")
    client.runs.end_run(sweep_run_id, RunStatus.COMPLETED)
    outcome.status = RunStatus.COMPLETED.value
    if register_best:
        outcome.registered = register_best_trial(client, sweep_run_id, force=force, prepared=prepared)
    return outcome


def _counts(client: Client, sweep_run_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in client.runs.list_runs(parent_run_id=sweep_run_id, kind=RunKind.TUNE_TRIAL.value, limit=100_000):
        counts[run.status] = counts.get(run.status, 0) + 1
    return counts
