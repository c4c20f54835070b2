"""Driver side of distributed torch training: Ray Data shards, ``TorchTrainer`` with checkpoint, failure and
storage configs, a relay that streams epoch metrics back to the driver, and the best checkpoint's weights.

Resuming is Ray Train V2's own mechanism: a trainer built with the same ``RunConfig(storage_path, name)``
restores the checkpoint manager from storage and hands the latest checkpoint to the workers
(``Trainer.restore`` is deprecated in V2).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlplatform.artifacts.storage import join_uri
from mlplatform.config.train import TrainConfig
from mlplatform.errors import MLPlatformError, NotFound
from mlplatform.features.transform import TabularTransform
from mlplatform.learning.data import Splits
from mlplatform.learning.torch_core import (
    CHECKPOINT_FILE,
    EarlyStopping,
    TrainLoopConfig,
    matrices,
    model_shape,
    scaled_lr,
    training_matrix,
)
from mlplatform.training.torch_loop import WorkerHandles, train_loop_per_worker

log = logging.getLogger(__name__)
EpochHook = Callable[[int, int], None]


@dataclass
class TorchRunOutput:
    history: list[dict[str, Any]]
    restores: int
    stopped_early: bool
    best_epoch: int
    best_metrics: dict[str, Any]
    state_dict: dict[str, Any]
    architecture_shape: dict[str, Any]
    checkpoint_path: str
    kept_checkpoints: list[dict[str, Any]] = field(default_factory=list)


def resolve_use_gpu(setting: bool | str) -> bool:
    if setting != "auto":
        return bool(setting)
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def storage_path_for(artifact_uri: str) -> str:
    """Checkpoints live next to the artifacts: shared storage (s3://, gs://, NFS) on a multi-node cluster."""
    if "://" in artifact_uri:
        return join_uri(artifact_uri, "ray_train")
    return str(Path(artifact_uri).expanduser().resolve() / "ray_train")


def make_relay() -> Any:
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    import ray

    @ray.remote(num_cpus=0)
    class MetricRelay:
        """Holds what rank 0 reports until the driver drains it (the driver is the only store writer)."""

        def __init__(self) -> None:
            self._items: list[dict[str, Any]] = []

        def put(self, item: dict[str, Any]) -> None:
            self._items.append(item)

        def drain(self) -> list[dict[str, Any]]:
            items, self._items = self._items, []
            return items

    return MetricRelay.remote()  # type: ignore[attr-defined]  # added by @ray.remote, invisible to mypy


class EventDrainer(threading.Thread):
    """Moves relayed events into the store. An event the store refuses (a locked SQLite file, a PostgreSQL
    failover) stays queued, in order, and is retried at the next drain; nothing is dropped."""

    def __init__(self, relay: Any, on_event: Callable[[dict[str, Any]], None], interval: float = 0.5) -> None:
        super().__init__(name="metric-relay-drain", daemon=True)
        self._relay, self._on_event, self._interval = relay, on_event, interval
        self._done = threading.Event()
        self._lock = threading.Lock()
        self.pending: list[dict[str, Any]] = []

    def drain_once(self) -> None:
        # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
        import ray

        with self._lock:
            self.pending.extend(ray.get(self._relay.drain.remote()))
            while self.pending:
                try:
                    self._on_event(self.pending[0])
                except Exception:  # a store hiccup must not kill training: retried at the next drain
                    log.warning("could not record a training event; retrying", exc_info=True)
                    return
                self.pending.pop(0)

    def run(self) -> None:
        while not self._done.wait(self._interval):
            self.drain_once()

    def stop(self, attempts: int = 5) -> None:
        """Stop polling and drain what is left, retrying a refused event a few times with a short backoff."""
        self._done.set()
        if self.is_alive():
            self.join(timeout=10)
        for attempt in range(attempts):
            self.drain_once()
            if not self.pending:
                return
            self._done.wait(0.2 * 2**attempt)
        log.error("%d training event(s) not recorded after %d attempts; the final history re-logs the epochs",
                  len(self.pending), attempts)


SHARD_IN_MEMORY_LIMIT = 1 << 30


def train_torch(config: TrainConfig, *, run_id: str, storage_path: str, transform: TabularTransform,
                splits: Splits, labels: dict[str, np.ndarray], classes: list[Any] | None, params: dict[str, Any],
                warm_state: dict[str, Any] | None = None,
                on_event: Callable[[dict[str, Any]], None] | None = None,
                epoch_hook: EpochHook | None = None) -> TorchRunOutput:
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    ray.data.DataContext.get_current().enable_progress_bars = False  # epoch log lines are the progress display
    shape = model_shape(transform, classes, params)
    n_codes = len(shape["cardinalities"] or [])
    dense, codes = matrices(transform, splits.train, n_codes)
    train_matrix = training_matrix(dense, codes, labels["train"])
    val_dense, val_codes = matrices(transform, splits.validation, n_codes)
    validation = ray.put({"dense": val_dense, "codes": val_codes, "y": labels["validation"],
                          "n_outputs": shape["n_outputs"]})

    opt = config.training
    workers = config.scaling.num_workers
    shard_bytes = train_matrix.nbytes / workers
    in_memory = shard_bytes < SHARD_IN_MEMORY_LIMIT if opt.shard_in_memory == "auto" else bool(opt.shard_in_memory)
    relay = make_relay()
    loop = loop_config(config, params=params, shape=shape, labels=labels["train"], classes=classes,
                       n_dense=dense.shape[1], n_codes=n_codes, shard_in_memory=in_memory)
    handles = WorkerHandles(
        # In memory: one object-store copy that every rank strides over (see torch_loop.load_shard); streamed:
        # Ray Data splits it.
        train=ray.put(train_matrix) if in_memory else None, validation=validation,
        warm_state=ray.put(warm_state) if warm_state is not None else None, relay=relay, epoch_hook=epoch_hook)
    datasets: dict[str, Any] | None = None if in_memory else {"train": ray.data.from_numpy(train_matrix)}
    use_gpu = resolve_use_gpu(config.scaling.use_gpu)
    trainer = TorchTrainer(
        train_loop_per_worker,  # type: ignore[arg-type]  # Ray types the loop as returning None; ours returns its summary
        train_loop_config={"loop": loop, "handles": handles}, datasets=datasets,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                     placement_strategy=config.scaling.placement_strategy),
        run_config=RunConfig(
            name=run_id, storage_path=storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=config.checkpoint.num_to_keep,
                                               checkpoint_score_attribute=config.checkpoint.metric,
                                               checkpoint_score_order=config.checkpoint_order),
            failure_config=FailureConfig(max_failures=config.failure.max_failures),
        ),
    )
    drainer = EventDrainer(relay, on_event or (lambda item: None))
    drainer.start()
    log.info("training %s on %d worker(s) (gpu=%s), effective batch %d, storage %s/%s", config.model.family,
             workers, use_gpu, opt.batch_size * workers * opt.accumulation_steps, storage_path, run_id)
    try:
        result = trainer.fit()
    except Exception as exc:
        # the relay may be as dead as the run (e.g. Ray could not start its worker): the run's own error is the
        # one to raise, never the relay's
        with contextlib.suppress(Exception):
            drainer.stop()
        with contextlib.suppress(Exception):
            ray.kill(relay)
        raise _translate(exc, run_id) from exc
    drainer.stop()
    ray.kill(relay)
    return _best_output(config, result, shape, run_id)


def loop_config(config: TrainConfig, *, params: dict[str, Any], shape: dict[str, Any], labels: np.ndarray,
                classes: list[Any] | None, n_dense: int, n_codes: int, shard_in_memory: bool) -> TrainLoopConfig:
    """The typed loop config of a training run: the one learning rate is the scaled one."""
    opt = config.training
    metric = config.early_stopping_metric
    return TrainLoopConfig.from_optim(
        opt, scaled_lr=scaled_lr(opt, config.scaling.num_workers), task=config.task, seed=config.seed,
        family=config.model.family, params=params, shape=shape, loss=config.loss_name,
        loss_params=config.loss.params,
        class_counts=np.bincount(labels, minlength=len(classes)).tolist() if classes else None,
        early_stopping=EarlyStopping(metric=metric, mode=_mode(metric), patience=opt.early_stopping.patience,
                                     min_delta=opt.early_stopping.min_delta),
        n_dense=n_dense, n_codes=n_codes, shard_in_memory=shard_in_memory, torch_threads=1,
        record=config.model_dump(mode="json"))


def _mode(metric: str) -> str:
    # heavy: scikit-learn loads only when an estimator is built or scored
    from mlplatform.learning.metrics import metric_mode

    return metric_mode(metric[4:] if metric.startswith("val_") else metric)


def _translate(exc: Exception, run_id: str) -> MLPlatformError:
    failures = getattr(exc, "worker_failures", None) or {}
    for failure in failures.values():
        if isinstance(failure, MLPlatformError):
            return failure
    first = str(exc).strip().splitlines()
    return MLPlatformError(f"training run {run_id} failed: {first[-1] if first else type(exc).__name__}; "
                           f"`mlplatform train --resume {run_id}` continues from its latest checkpoint")


def _best_output(config: TrainConfig, result: Any, shape: dict[str, Any], run_id: str) -> TorchRunOutput:
    # heavy: torch takes seconds to import; only the torch path pays for it
    import torch

    kept = list(result.best_checkpoints or [])
    if not kept:
        raise NotFound(f"training run {run_id} reported no checkpoint yet; nothing to register", field="checkpoint")
    metric, reverse = config.checkpoint.metric, config.checkpoint_order == "max"
    kept.sort(key=lambda item: (item[1][metric], -item[1]["epoch"] if reverse else item[1]["epoch"]),
              reverse=reverse)
    best_checkpoint, best_metrics = kept[0]
    with best_checkpoint.as_directory() as directory:
        state = torch.load(os.path.join(directory, CHECKPOINT_FILE), map_location="cpu", weights_only=True)
    latest = result.checkpoint
    with latest.as_directory() as directory:
        latest_state = torch.load(os.path.join(directory, CHECKPOINT_FILE), map_location="cpu", weights_only=True)
    returned = result.return_value or {}
    return TorchRunOutput(
        history=list(latest_state["history"]), restores=int(returned.get("restores", latest_state["restores"])),
        stopped_early=bool(latest_state["history"][-1].get("stop")), best_epoch=int(state["epoch"]),
        best_metrics=dict(best_metrics), state_dict=state["model"], architecture_shape=shape,
        checkpoint_path=best_checkpoint.path,
        kept_checkpoints=[{"path": c.path, "epoch": m["epoch"], metric: m[metric]} for c, m in kept],
    )
