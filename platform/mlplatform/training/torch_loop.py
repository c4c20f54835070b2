"""The per-worker training loop run by Ray Train's ``TorchTrainer`` (SPEC S2.1-S2.5, S2.11).

Everything here runs inside Ray Train workers: no store access (the store may be a SQLite file on another
machine). Rank 0 pushes epoch metrics to a relay actor that the driver drains into the store, and reports a
checkpoint each epoch through ``ray.train.report``.

Invariants:
- every rank computes the same validation metrics (predictions are all-gathered, then scored identically), so
  the early-stopping decision is the same everywhere and no rank blocks in a collective the others skipped;
- the training shards are equal-sized (Ray's ``streaming_split(equal=True)``), so every rank runs the same number
  of DDP steps;
- RNGs are re-seeded from ``(seed, rank, epoch)`` at the start of each epoch, so a run restored from a checkpoint
  draws the same random numbers as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import tempfile
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch

log = logging.getLogger(__name__)
CHECKPOINT_FILE = "checkpoint.pt"
T = TypeVar("T")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    return seed + 1000 * rank + 7919 * (epoch + 1)


def rng_state() -> dict[str, Any]:
    """RNG states as plain lists/tensors so the checkpoint loads with ``weights_only=True``."""
    np_state = np.random.get_state()
    return {"python": list(random.getstate()[1]), "numpy": np_state[1].tolist(), "numpy_pos": int(np_state[2]),
            "torch": torch.get_rng_state()}


def _with_last(items: Iterable[T]) -> Iterator[tuple[T, bool]]:
    """Yield ``(item, is_last)`` with a one-item look-ahead (the last micro-batch must sync and step)."""
    iterator = iter(items)
    try:
        previous = next(iterator)
    except StopIteration:
        return
    for item in iterator:
        yield previous, False
        previous = item
    yield previous, True


def _build_optimizer(params: Iterable[torch.nn.Parameter], opt: dict[str, Any], lr: float) -> torch.optim.Optimizer:
    if opt["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=opt["momentum"], weight_decay=opt["weight_decay"])
    if opt["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=opt["weight_decay"])
    return torch.optim.AdamW(params, lr=lr, weight_decay=opt["weight_decay"])


def _build_scheduler(optimizer: torch.optim.Optimizer, opt: dict[str, Any]) -> Any:
    if opt["scheduler"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, opt["epochs"]))
    if opt["scheduler"] == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=opt["step_size"], gamma=opt["gamma"])
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def _amp(device: torch.device, enabled: bool) -> tuple[Any, Any]:
    """(autocast context factory, GradScaler or None): bf16 when the GPU supports it, else fp16 with a scaler;
    nothing on CPU."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext, None
    if torch.cuda.is_bf16_supported():
        return (lambda: torch.autocast("cuda", dtype=torch.bfloat16)), None
    return (lambda: torch.autocast("cuda", dtype=torch.float16)), torch.amp.GradScaler("cuda")


def _split_columns(data: torch.Tensor, n_dense: int, n_codes: int, task: str
                   ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    dense = data[:, :n_dense]
    codes = data[:, n_dense:n_dense + n_codes].long() if n_codes else None
    target = data[:, n_dense + n_codes]
    return dense, codes, target.long() if task == "classification" else target


def _gather(value: Any, world: int) -> list[Any]:
    if world == 1:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * world
    dist.all_gather_object(out, value)
    return out


def _validate(model: torch.nn.Module, loss_fn: torch.nn.Module, val: dict[str, np.ndarray], rank: int,
              world: int, task: str, device: torch.device) -> dict[str, float]:
    """Score this rank's slice of the validation set, gather every slice, score the whole set identically."""
    from mlplatform.training.metrics import compute_metrics

    rows = np.arange(rank, len(val["y"]), world)
    model.eval()
    with torch.no_grad():
        dense = torch.from_numpy(val["dense"][rows]).to(device)
        codes = torch.from_numpy(val["codes"][rows]).to(device) if val["codes"] is not None else None
        outputs = model(dense, codes).float().cpu().numpy() if len(rows) else np.zeros((0, val["n_outputs"]))
    parts = _gather((rows, outputs), world)
    order = np.concatenate([p[0] for p in parts])
    out = np.concatenate([p[1] for p in parts])[np.argsort(order, kind="stable")]
    y = val["y"]
    if len(y) == 0:
        return {"val_loss": 0.0}
    with torch.no_grad():
        target = torch.tensor(y)
        loss = float(loss_fn.cpu()(torch.from_numpy(out), target))
    loss_fn.to(device)
    if task == "classification":
        proba = torch.softmax(torch.from_numpy(out).double(), dim=1).numpy()
        metrics = compute_metrics(task, y, proba.argmax(axis=1), proba, list(range(proba.shape[1])))
    else:
        metrics = compute_metrics(task, y.astype("float64"), out[:, 0].astype("float64"))
    return {"val_loss": loss, **{f"val_{k}": float(v) for k, v in metrics.items()}}


def _improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    import ray
    import ray.train
    import ray.train.torch

    from mlplatform.models.factory import default_factory
    from mlplatform.training.losses import build_loss

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(config["torch_threads"])
    device = ray.train.torch.get_device()
    opt, task, seed = config["optim"], config["task"], config["seed"]
    seed_everything(seed + 1000 * rank)

    model = default_factory().create(config["family"], task, config["params"], seed=seed, **config["shape"])
    if config.get("warm_state") is not None:
        model.load_state_dict(ray.get(config["warm_state"]), strict=True)  # checked on the driver already
    model.to(device)  # before the optimizer exists, so restored optimizer state lands on the same device
    loss_fn = build_loss(config["loss"], task, config["loss_params"], config["class_counts"]).to(device)
    optimizer = _build_optimizer(model.parameters(), opt, config["lr"])
    scheduler = _build_scheduler(optimizer, opt)
    autocast, scaler = _amp(device, opt["amp"])

    start_epoch, step, history = 0, 0, []
    best, best_epoch, bad_epochs, restores = None, None, 0, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:  # a replaced worker group or a resumed run: continue after the last checkpoint
        with checkpoint.as_directory() as directory:
            state = torch.load(os.path.join(directory, CHECKPOINT_FILE), map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, step, history = state["epoch"] + 1, state["step"], list(state["history"])
        best, best_epoch, bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]
        restores = state["restores"] + 1
        if rank == 0:
            _relay(config, {"event": "restored", "from_epoch": start_epoch, "restores": restores})
            log.info("restored from the checkpoint of epoch %d; continuing at epoch %d", state["epoch"], start_epoch)

    model = ray.train.torch.prepare_model(model)
    shard = ray.train.get_dataset_shard("train")
    val = ray.get(config["validation"])
    n_dense, n_codes, acc = config["n_dense"], config["n_codes"], opt["accumulation_steps"]
    stopped_early = bool(history and history[-1].get("stop"))
    mode, es_metric = config["early_stopping"]["mode"], config["early_stopping"]["metric"]
    shard_cache: dict[str, torch.Tensor] = {}

    for epoch in range(start_epoch, opt["epochs"]):
        if stopped_early:
            break
        if config.get("epoch_hook") is not None:
            config["epoch_hook"](epoch, rank)
        seed_everything(epoch_seed(seed, rank, epoch))
        started = time.perf_counter()  # the training pass only: validation and checkpointing are timed apart
        model.train()
        loss_sum, rows, pending = torch.zeros(2, dtype=torch.float64), 0, 0
        if config.get("shard_in_memory"):
            batches = _in_memory_batches(shard, shard_cache, opt["batch_size"], epoch_seed(seed, rank, epoch), device)
        else:
            batches = shard.iter_torch_batches(batch_size=opt["batch_size"], dtypes=torch.float32, device=device,
                                               local_shuffle_buffer_size=opt["batch_size"] * 4,
                                               local_shuffle_seed=epoch_seed(seed, rank, epoch))
        for batch, is_last in _with_last(batches):
            dense, codes, target = _split_columns(batch["data"], n_dense, n_codes, task)
            pending += 1
            sync = pending == acc or is_last
            # no_sync on non-final micro-batches: gradients are all-reduced once per optimizer step.
            no_sync = model.no_sync if (not sync and hasattr(model, "no_sync")) else contextlib.nullcontext
            with no_sync(), autocast():
                loss = loss_fn(model(dense, codes), target)
            scaled = loss / acc
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
            loss_sum += torch.tensor([float(loss.detach()) * len(target), len(target)], dtype=torch.float64)
            rows += len(target)
            if sync:
                if pending < acc:  # a trailing partial group: rescale so it is a mean over its own micro-batches
                    for p in model.parameters():
                        if p.grad is not None:
                            p.grad.mul_(acc / pending)
                if scaler is not None:
                    scaler.unscale_(optimizer)
                if opt["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), opt["grad_clip"])
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step, pending = step + 1, 0
        if world > 1:
            import torch.distributed as dist

            totals = loss_sum.to(device)
            dist.all_reduce(totals)
            loss_sum = totals.cpu()
        epoch_seconds = time.perf_counter() - started
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        metrics = {"epoch": epoch, "step": step, "lr": lr,
                   "train_loss": float(loss_sum[0] / loss_sum[1]) if loss_sum[1] > 0 else 0.0,
                   "train_rows": int(loss_sum[1]), "epoch_seconds": epoch_seconds,
                   **_validate(model, loss_fn, val, rank, world, task, device)}
        value = metrics[es_metric]
        if _improved(value, best, mode, config["early_stopping"]["min_delta"]):
            best, best_epoch, bad_epochs = value, epoch, 0
        else:
            bad_epochs += 1
        patience = config["early_stopping"]["patience"]
        stopped_early = patience > 0 and bad_epochs >= patience
        metrics["stop"] = stopped_early
        history.append(metrics)
        _report(config, model, optimizer, scheduler, scaler, metrics, history, step, epoch, rank,
                best=best, best_epoch=best_epoch, bad_epochs=bad_epochs, restores=restores)
    return {"history": history, "restores": restores, "stopped_early": stopped_early, "best_epoch": best_epoch}


def _in_memory_batches(shard: Any, cache: dict[str, torch.Tensor], batch_size: int, seed: int,
                       device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
    """The shard read once (first epoch) and shuffled in memory with a seeded permutation every epoch.

    Ray Data's per-batch iteration cost dominated small tabular epochs here (the 2-worker path ran at ~0.44x a
    single process); a shard that fits in memory does not need streaming. Every rank reads its whole shard in the
    same epoch, and Ray Train's equal split gives every rank the same number of rows, hence of batches, so the
    DDP all-reduces stay in lockstep."""
    if "data" not in cache:
        parts = [batch["data"] for batch in shard.iter_batches(batch_size=65536, batch_format="numpy")]
        cache["data"] = torch.from_numpy(np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)) if parts \
            else torch.zeros((0, 0), dtype=torch.float32)
    data = cache["data"]
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    for start in range(0, len(data), batch_size):
        yield {"data": data[order[start:start + batch_size]].to(device)}


def _relay(config: dict[str, Any], item: dict[str, Any]) -> None:
    if config.get("relay") is not None:
        config["relay"].put.remote(item)


def _report(config: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
            scaler: Any, metrics: dict[str, Any], history: list[dict[str, Any]], step: int, epoch: int, rank: int,
            **tracking: Any) -> None:
    """Every rank calls ``report`` (it is a barrier); only rank 0 attaches the checkpoint."""
    import json

    import ray.train

    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    _relay(config, {"event": "epoch", **metrics})
    log.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()
                                             if isinstance(v, float)))
    module = model.module if hasattr(model, "module") else model
    state = {
        "model": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None, "epoch": epoch, "step": step,
        "rng": rng_state(), "config": config["record"], "metrics": metrics, "history": history, **tracking,
    }
    with tempfile.TemporaryDirectory(prefix="mlp-ckpt-") as directory:
        # Written in a private temp dir; Ray copies the finished folder to storage and registers it only then,
        # so a checkpoint is complete or absent.
        torch.save(state, os.path.join(directory, CHECKPOINT_FILE))
        with open(os.path.join(directory, "meta.json"), "w") as handle:
            json.dump({"epoch": epoch, "metrics": metrics}, handle)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
