"""The per-worker training loop run by Ray Train's ``TorchTrainer`` (SPEC S2.1-S2.5, S2.11).

Everything here runs inside Ray Train workers: no store access (the store may be a SQLite file on another
machine). Rank 0 reports a checkpoint each epoch through ``ray.train.report`` and then pushes the epoch's metrics
to a relay actor that the driver drains into the store. The epoch itself is
:func:`mlplatform.learning.torch_core.run_epoch`, the same pass a Tune trial runs.

The loop is three steps: :func:`restore` (model, optimizer, scheduler and progress from the latest checkpoint),
:func:`train_one_epoch` (data, training pass, loss all-reduce, validation, early stopping) and :func:`report`
(checkpoint, then the relay).

Invariants:
- every rank computes the same validation metrics (predictions are all-gathered, then scored identically), so
  the early-stopping decision is the same everywhere and no rank blocks in a collective the others skipped;
- every rank holds the same number of rows (an in-memory shard is the rank's stride of one object-store matrix
  cut to an equal length; a streamed one is Ray's ``streaming_split(equal=True)``), so every rank runs the same
  number of DDP steps;
- RNGs are re-seeded from ``(seed, rank, epoch)`` at the start of each epoch and an in-memory shard is the same
  rows in every worker group, so a run restored from a checkpoint draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mlplatform.learning.torch_core import (
    CHECKPOINT_FILE,
    Progress,
    TrainLoopConfig,
    build_amp,
    build_loss_fn,
    build_model,
    build_optimizer,
    build_scheduler,
    epoch_seed,
    in_memory_batches,
    rng_state,
    run_epoch,
    seed_everything,
    unwrap_ddp,
    validate,
)

log = logging.getLogger(__name__)
__all__ = ["CHECKPOINT_FILE", "WorkerHandles", "train_loop_per_worker"]


@dataclass(frozen=True)
class WorkerHandles:
    """Ray objects the workers share with the driver (not configuration: they live only for this fit)."""

    train: Any = None  # ObjectRef of the whole training matrix when shards are in memory, else None (Ray Data)
    validation: Any = None  # ObjectRef of {"dense", "codes", "y", "n_outputs"}
    warm_state: Any = None  # ObjectRef of a state_dict checked on the driver, or None
    relay: Any = None  # the MetricRelay actor, or None
    epoch_hook: Callable[[int, int], None] | None = None  # tests and benchmarks: (epoch, rank) at epoch start


@dataclass
class WorkerState:
    """What one worker carries from epoch to epoch; a checkpoint holds all of it."""

    model: torch.nn.Module
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    autocast: Callable[[], Any]
    scaler: Any
    device: torch.device
    rank: int
    world: int
    next_epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    progress: Progress = field(default_factory=Progress)
    restores: int = 0

    @property
    def stopped(self) -> bool:
        return bool(self.history and self.history[-1].get("stop"))


def train_loop_per_worker(train_loop_config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train's entry point: ``{"loop": TrainLoopConfig, "handles": WorkerHandles}``."""
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    import ray.train.torch

    config: TrainLoopConfig = train_loop_config["loop"]
    handles: WorkerHandles = train_loop_config["handles"]
    state = restore(config, handles)
    state.model = ray.train.torch.prepare_model(state.model)
    shard = load_shard(config, handles, state)
    val = ray.get(handles.validation)
    for epoch in range(state.next_epoch, config.epochs):
        if state.stopped:
            break
        metrics = train_one_epoch(config, handles, state, shard, val, epoch)
        report(config, handles, state, metrics, epoch)
    return {"history": state.history, "restores": state.restores, "stopped_early": state.stopped,
            "best_epoch": state.progress.best_epoch}


def restore(config: TrainLoopConfig, handles: WorkerHandles) -> WorkerState:
    """A fresh model (or the warm start's weights), then the latest checkpoint when Ray hands one over: a replaced
    worker group or a resumed run continues after it."""
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    import ray
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(config.torch_threads)
    device = ray.train.torch.get_device()
    seed_everything(config.seed + 1000 * rank)
    model = build_model(config)
    if handles.warm_state is not None:
        model.load_state_dict(ray.get(handles.warm_state), strict=True)  # checked on the driver already
    model.to(device)  # before the optimizer exists, so restored optimizer state lands on the same device
    optimizer = build_optimizer(model.parameters(), config)
    autocast, scaler = build_amp(device, config.amp)
    state = WorkerState(model=model, loss_fn=build_loss_fn(config).to(device), optimizer=optimizer,
                        scheduler=build_scheduler(optimizer, config), autocast=autocast, scaler=scaler,
                        device=device, rank=rank, world=world)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return state
    with checkpoint.as_directory() as directory:
        saved = torch.load(os.path.join(directory, CHECKPOINT_FILE), map_location="cpu", weights_only=True)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    if scaler is not None and saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])
    state.next_epoch, state.step, state.history = saved["epoch"] + 1, saved["step"], list(saved["history"])
    state.progress = Progress(saved["best"], saved["best_epoch"], saved["bad_epochs"])
    state.restores = saved["restores"] + 1
    if rank == 0:
        _relay(handles, {"event": "restored", "from_epoch": state.next_epoch, "restores": state.restores})
        log.info("restored from the checkpoint of epoch %d; continuing at epoch %d", saved["epoch"],
                 state.next_epoch)
    return state


def load_shard(config: TrainLoopConfig, handles: WorkerHandles, state: WorkerState) -> Any:
    """This rank's rows, read before the first epoch.

    In memory: rank r takes rows r, r + world, ... of the one object-store matrix, cut to ``len // world`` so every
    rank runs the same number of steps. Reading it here, not inside epoch 0, keeps the first epoch as fast as the
    rest (streaming it from Ray Data inside the first epoch ran that epoch at 0.27x the steady state), and the same
    rows land on the same rank in every worker group, so a restored run trains on what an uninterrupted one did.
    Streamed (``shard_in_memory: false``): Ray Data's shard, iterated every epoch."""
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    import ray
    import ray.train

    if handles.train is None:
        return ray.train.get_dataset_shard("train")
    full = ray.get(handles.train)
    per_rank = len(full) // state.world
    rows = np.ascontiguousarray(full[state.rank::state.world][:per_rank], dtype=np.float32)
    return torch.from_numpy(rows)


def _batches(config: TrainLoopConfig, shard: Any, state: WorkerState, epoch: int) -> Any:
    seed = epoch_seed(config.seed, state.rank, epoch)
    if isinstance(shard, torch.Tensor):
        return in_memory_batches(shard, config.batch_size, seed, state.device)
    return (batch["data"] for batch in shard.iter_torch_batches(
        batch_size=config.batch_size, dtypes=torch.float32, device=state.device,
        local_shuffle_buffer_size=config.batch_size * 4, local_shuffle_seed=seed))


def train_one_epoch(config: TrainLoopConfig, handles: WorkerHandles, state: WorkerState, shard: Any,
                    val: dict[str, Any], epoch: int) -> dict[str, Any]:
    """The training pass (timed alone: validation and checkpointing are timed apart), the loss all-reduced over
    ranks, validation, and the early-stopping decision; returns the epoch's metrics."""
    if handles.epoch_hook is not None:
        handles.epoch_hook(epoch, state.rank)
    seed_everything(epoch_seed(config.seed, state.rank, epoch))
    started = time.perf_counter()
    result = run_epoch(state.model, _batches(config, shard, state, epoch), state.loss_fn, state.optimizer, config,
                       step=state.step, autocast=state.autocast, scaler=state.scaler)
    loss_sum = result.loss_sum
    if state.world > 1:
        # heavy: torch takes seconds to import; only the torch path pays for it
        import torch.distributed as dist

        totals = loss_sum.to(state.device)
        dist.all_reduce(totals)
        loss_sum = totals.cpu()
    epoch_seconds = time.perf_counter() - started
    state.step = result.step
    lr = state.optimizer.param_groups[0]["lr"]
    state.scheduler.step()
    metrics = {"epoch": epoch, "step": state.step, "lr": lr,
               "train_loss": float(loss_sum[0] / loss_sum[1]) if loss_sum[1] > 0 else 0.0,
               "train_rows": int(loss_sum[1]), "epoch_seconds": epoch_seconds,
               **validate(state.model, state.loss_fn, val, state.rank, state.world, config.task, state.device)}
    rule = config.early_stopping
    metrics["stop"] = state.progress.update(metrics[rule.metric], epoch, rule)
    state.history.append(metrics)
    return metrics


def report(config: TrainLoopConfig, handles: WorkerHandles, state: WorkerState, metrics: dict[str, Any],
           epoch: int) -> None:
    """Every rank calls ``report`` (it is a barrier); only rank 0 attaches the checkpoint, and relays the metrics
    after it, so the driver hears of an epoch only once its checkpoint is saved."""
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    import ray.train

    if state.rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    log.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
    module = unwrap_ddp(state.model)
    progress = state.progress
    saved = {
        "model": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
        "optimizer": state.optimizer.state_dict(), "scheduler": state.scheduler.state_dict(),
        "scaler": state.scaler.state_dict() if state.scaler is not None else None, "epoch": epoch,
        "step": state.step, "rng": rng_state(), "config": config.record, "metrics": metrics,
        "history": state.history, "best": progress.best, "best_epoch": progress.best_epoch,
        "bad_epochs": progress.bad_epochs, "restores": state.restores,
    }
    with tempfile.TemporaryDirectory(prefix="mlp-ckpt-") as directory:
        # Written in a private temp dir; Ray copies the finished folder to storage and registers it only then,
        # so a checkpoint is complete or absent.
        torch.save(saved, os.path.join(directory, CHECKPOINT_FILE))
        with open(os.path.join(directory, "meta.json"), "w") as handle:
            json.dump({"epoch": epoch, "metrics": metrics}, handle)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
    _relay(handles, {"event": "epoch", **metrics})


def _relay(handles: WorkerHandles, item: dict[str, Any]) -> None:
    if handles.relay is not None:
        handles.relay.put.remote(item)
