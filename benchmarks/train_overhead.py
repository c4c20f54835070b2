"""Training overhead: the platform's 2-worker ``TorchTrainer`` path against a plain single-process torch loop, same
MLP, same 200,000 synthetic rows, batch 256, 3 epochs, in one run.

Platform path: :func:`mlplatform.training.torch_train.train_torch` exactly as ``mlplatform train`` calls it: Ray
Data shards, DDP over gloo, a checkpoint every epoch (K best kept) and epoch metrics streamed to a SQLite store
through the relay. Baseline: the same ``TabularMLP``, AdamW and gradient clipping over in-memory tensors, one torch
thread (as RAY_NOTES measured; on this loaded 2-core machine a 2-thread single process ran 20x slower, from thread
oversubscription, so it is no fair reference).

- steady-state samples/s: training rows / training-pass seconds of the epochs after the first (the loop's
  ``epoch_seconds``: from the first batch to the loss all-reduce, so validation and checkpointing are excluded for
  both; their cost per epoch is reported as ``per_epoch_validation_checkpoint_s``);
- ``startup_s``: from the ``train_torch`` call to the first training step of rank 0 (worker group, DDP, dataset
  split), what a user waits before training starts.

Targets (issue 17), through the one training core (:mod:`mlplatform.learning.torch_core`):
- ``platform_vs_bare_ddp`` >= 0.9: steady-state samples/s of the platform path over plain torch DDP (gloo, two
  processes, no Ray) on the same data, batch and workers;
- ``first_epoch_vs_steady`` >= 0.67: the platform's first-epoch samples/s over its steady state (the shard is read
  before the first epoch now; streaming it from Ray Data inside epoch 0 ran that epoch at 0.27x).
The old single-process target (0.8) is retired: bare DDP itself reaches only 0.73-0.87 of one process on 2 cores
with gloo; the single-process figure is still reported. startup_s is reported. Runs in about 1-2 minutes.
Env: BENCH_ROWS (200000), BENCH_EPOCHS (3).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import emit_target, print_table

ROWS = int(os.environ.get("BENCH_ROWS", "200000"))
EPOCHS = int(os.environ.get("BENCH_EPOCHS", "3"))
BATCH = 256
WORKERS = 2
SEED = 0


def _stamp(directory: str, epoch: int, rank: int) -> None:
    """Epoch hook run inside each worker: when the epoch's first step is about to happen."""
    Path(directory, f"epoch{epoch}-rank{rank}").write_text(repr(time.time()))


def _prepare() -> tuple[Any, Any, Any, dict[str, np.ndarray], list[Any]]:
    from mlplatform.config.train import train_config_from_dict
    from mlplatform.datasets.synthetic import make_churn
    from mlplatform.features.transform import TabularTransform
    from mlplatform.learning.data import Splits, encode_labels

    config = train_config_from_dict({
        "experiment": "bench", "model_name": "bench", "seed": SEED,
        "model": {"family": "mlp", "params": {"hidden": [64, 32], "dropout": 0.0}},
        "training": {"epochs": EPOCHS, "batch_size": BATCH, "lr": 1e-3, "early_stopping": {"patience": 0}},
        "scaling": {"num_workers": WORKERS, "use_gpu": False},
        "checkpoint": {"num_to_keep": 2, "metric": "val_loss"},
    })
    train = make_churn(ROWS, seed=SEED)
    validation = make_churn(5000, seed=SEED + 1)
    splits = Splits(train, validation, validation, "random", SEED)
    classes, labels = encode_labels(splits, "churned", "classification")
    from mlplatform.datasets.synthetic import FEATURES

    transform = TabularTransform.fit(train, list(FEATURES))
    return config, splits, transform, labels, classes


def bench_platform(home: Path) -> dict[str, Any]:
    import ray

    os.environ["MLPLATFORM_HOME"] = str(home)
    from mlplatform.client import Client
    from mlplatform.models.factory import default_factory
    from mlplatform.training.pipeline import _log_epoch
    from mlplatform.training.torch_train import storage_path_for, train_torch

    config, splits, transform, labels, classes = _prepare()
    client = Client()
    run = client.runs.start_run("bench", "train", config={"train_config": config.model_dump(mode="json")},
                                seed=SEED)
    params = default_factory().resolve_params("mlp", "classification", config.model.params)
    # 4 logical CPUs on 2 cores, as the test session does: 2 train workers plus Ray Data's split coordinator.
    ray.init(num_cpus=4, log_to_driver=False, include_dashboard=False)
    stamps = Path(tempfile.mkdtemp(prefix="bench-stamps-"))
    events: list[dict[str, Any]] = []

    def on_event(item: dict[str, Any]) -> None:
        events.append({**item, "received": time.time()})
        if item.get("event") == "epoch":
            _log_epoch(client, run.id, item)

    called = time.time()
    output = train_torch(config, run_id=run.id, storage_path=storage_path_for(str(home / "artifacts")),
                         transform=transform, splits=splits, labels=labels, classes=classes, params=params,
                         on_event=on_event, epoch_hook=functools.partial(_stamp, str(stamps)))
    finished = time.time()
    first_step = float(Path(stamps, "epoch0-rank0").read_text())
    starts = [float(Path(stamps, f"epoch{e}-rank0").read_text()) for e in range(EPOCHS)]
    history = output.history
    steady = history[1:]
    rows = sum(h["train_rows"] for h in steady)
    seconds = sum(h["epoch_seconds"] for h in steady)
    # Between two epoch starts: the training pass plus validation, checkpoint and report (epoch 1 onwards).
    gaps = [b - a - h["epoch_seconds"] for a, b, h in zip(starts[1:], starts[2:], history[1:], strict=False)]
    logged = len(client.runs.get_metrics(run.id, "epoch_seconds"))
    client.close()
    ray.shutdown()
    return {"samples_per_s": rows / seconds, "startup_s": first_step - called,
            "first_epoch_samples_per_s": history[0]["train_rows"] / history[0]["epoch_seconds"],
            "per_epoch_validation_checkpoint_s": float(np.mean(gaps)) if gaps else float("nan"),
            "total_s": finished - called, "epochs_logged_to_store": logged,
            "checkpoints_kept": len(output.kept_checkpoints)}


def _timed_epochs(model: Any, x: Any, y: Any, optimizer: Any, loss_fn: Any, seed: int) -> list[float]:
    """The plain torch loop both baselines run: seeded shuffle, batch, clip at 1.0, step; seconds per epoch."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    timings = []
    for _ in range(EPOCHS):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), BATCH):
            index = order[i:i + BATCH]
            loss = loss_fn(model(x[index], None), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        timings.append(time.perf_counter() - started)
    return timings


def bench_single_process(threads: int) -> dict[str, Any]:
    import torch

    from mlplatform.learning.torch_core import model_shape
    from mlplatform.models.factory import default_factory
    from mlplatform.models.losses import build_loss

    config, splits, transform, labels, classes = _prepare()
    params = default_factory().resolve_params("mlp", "classification", config.model.params)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = default_factory().create("mlp", "classification", params, seed=SEED,
                                         **model_shape(transform, classes, params))
        x = torch.tensor(transform.transform(splits.train))
        y = torch.tensor(labels["train"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        loss_fn = build_loss("cross_entropy", "classification", {}, None)
        timings = _timed_epochs(model, x, y, optimizer, loss_fn, seed=SEED)
    finally:
        torch.set_num_threads(previous)
    steady = timings[1:]
    return {"samples_per_s": len(x) * len(steady) / sum(steady), "first_epoch_samples_per_s": len(x) / timings[0]}


def _bare_ddp_worker(rank: int, port: int, x: Any, y: Any, out: Any) -> None:
    """One rank of plain torch DDP (gloo, no Ray): the same model, optimizer and per-rank batch as the platform."""
    import torch
    import torch.distributed as dist

    from mlplatform.models.factory import default_factory

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORKERS)
    params = default_factory().resolve_params("mlp", "classification", {"hidden": [64, 32], "dropout": 0.0})
    model = default_factory().create("mlp", "classification", params, seed=SEED, n_inputs=x.shape[1], n_outputs=2)
    model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    timings = _timed_epochs(model, x[rank::WORKERS], y[rank::WORKERS], optimizer, loss_fn, seed=SEED + rank)
    if rank == 0:
        steady = timings[1:]
        out.put(len(x) * len(steady) / sum(steady))
    dist.destroy_process_group()


def bench_bare_ddp() -> float:
    """Plain torch DDP over gloo on this machine, two processes, no Ray, no data pipeline, no checkpoints: the
    floor any data-parallel path on 2 cores sits on (each step waits for one gradient all-reduce)."""
    import socket

    import torch
    import torch.multiprocessing as mp

    _config, splits, transform, labels, _classes = _prepare()
    x = torch.tensor(transform.transform(splits.train))
    y = torch.tensor(labels["train"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("spawn")
    out = context.SimpleQueue()
    mp.start_processes(_bare_ddp_worker, args=(port, x, y, out), nprocs=WORKERS, start_method="spawn")
    return float(out.get())


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    single = bench_single_process(threads=1)
    bare_ddp = bench_bare_ddp()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as home:
        platform = bench_platform(Path(home))
    ratio = platform["samples_per_s"] / single["samples_per_s"]
    print_table(f"train overhead: {ROWS:,} rows, batch {BATCH}, {EPOCHS} epochs (steady state = epochs 2..)", [
        {"path": f"platform TorchTrainer, {WORKERS} workers (gloo, checkpoints, store)",
         "steady_samples_per_s": platform["samples_per_s"],
         "first_epoch_samples_per_s": platform["first_epoch_samples_per_s"]},
        {"path": f"bare torch DDP, {WORKERS} processes (gloo, no Ray)", "steady_samples_per_s": bare_ddp,
         "first_epoch_samples_per_s": float("nan")},
        {"path": "single process, 1 torch thread", "steady_samples_per_s": single["samples_per_s"],
         "first_epoch_samples_per_s": single["first_epoch_samples_per_s"]},
    ])
    print_table("platform run", [{k: v for k, v in platform.items() if k not in {"samples_per_s"}}])
    ok = emit_target("train_overhead", "platform_vs_bare_ddp", platform["samples_per_s"] / bare_ddp, 0.9)
    first = platform["first_epoch_samples_per_s"] / platform["samples_per_s"]
    ok = emit_target("train_overhead", "first_epoch_vs_steady", first, 0.67) and ok
    # Reported, no target (retired): both data-parallel paths against one process on this 2-core machine.
    for metric, value in (("throughput_ratio_vs_single_process", ratio),
                          ("bare_ddp_ratio_vs_single_process", bare_ddp / single["samples_per_s"])):
        print(json.dumps({"benchmark": "train_overhead", "metric": metric, "value": round(value, 3),
                          "target": None, "ok": True}))
    # Reported, no target: the start-up a user waits before the first training step.
    print(json.dumps({"benchmark": "train_overhead", "metric": "startup_s", "value": round(platform["startup_s"], 2),
                      "target": None, "ok": True}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
