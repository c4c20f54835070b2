"""The one torch training core (SPEC S2.1, S2.5, S2.11): what a Ray Train worker and a Tune trial both run.

- :class:`TrainLoopConfig` is the typed config that crosses the Ray boundary. It carries ONE learning rate,
  ``scaled_lr``: the rate the optimizer starts at, already multiplied by workers x accumulation when linear
  scaling is on (the old 20-key dict held both the scaled and the unscaled rate, and nothing said which one the
  optimizer used).
- :func:`build_optimizer` / :func:`build_scheduler` build both from it.
- :func:`run_epoch` is one training pass: gradient accumulation (loss divided by the steps, ``no_sync`` on
  non-final micro-batches, a trailing partial group rescaled and flushed), AMP on GPU (bf16, else fp16 with a
  ``GradScaler``), clipping after unscaling.
- :func:`validate` scores the whole validation set identically on every rank; :func:`improved` is the
  early-stopping comparison.

Runs inside Ray workers and trials: no store access here.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
import torch

from mlplatform.models.factory import default_factory

if TYPE_CHECKING:
    from mlplatform.config.train import OptimSection

CHECKPOINT_FILE = "checkpoint.pt"
T = TypeVar("T")


@dataclass(frozen=True)
class EarlyStopping:
    metric: str = "val_loss"
    mode: str = "min"
    patience: int = 5  # 0 disables
    min_delta: float = 0.0


@dataclass(frozen=True)
class TrainLoopConfig:
    """Everything the per-epoch loop needs, fixed before the first epoch."""

    task: str
    seed: int
    family: str
    params: dict[str, Any]
    shape: dict[str, Any]  # n_inputs, n_outputs, cardinalities, categorical_names (see ``model_shape``)
    loss: str
    loss_params: dict[str, Any]
    class_counts: list[int] | None
    epochs: int
    batch_size: int  # rows per worker per micro-batch
    scaled_lr: float  # the optimizer's starting rate: lr x workers x accumulation when scale_lr, else lr
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    momentum: float = 0.9
    scheduler: str = "cosine"
    step_size: int = 10
    gamma: float = 0.5
    grad_clip: float | None = 1.0
    accumulation_steps: int = 1
    amp: bool = True
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)
    n_dense: int = 0
    n_codes: int = 0
    shard_in_memory: bool = True
    torch_threads: int = 1
    record: dict[str, Any] = field(default_factory=dict)  # the run's config as JSON, saved in every checkpoint

    @classmethod
    def from_optim(cls, optim: OptimSection, *, scaled_lr: float, **fields: Any) -> TrainLoopConfig:
        """The optimizer/scheduler/accumulation settings of a validated ``OptimSection`` plus the rest."""
        return cls(epochs=optim.epochs, batch_size=optim.batch_size, scaled_lr=scaled_lr, optimizer=optim.optimizer,
                   weight_decay=optim.weight_decay, momentum=optim.momentum, scheduler=optim.scheduler,
                   step_size=optim.step_size, gamma=optim.gamma, grad_clip=optim.grad_clip,
                   accumulation_steps=optim.accumulation_steps, amp=optim.amp, **fields)


def scaled_lr(optim: OptimSection, workers: int) -> float:
    """Linear scaling (SPEC S2.1): the rate grows with the effective batch when ``scale_lr`` is on."""
    return optim.lr * workers * optim.accumulation_steps if optim.scale_lr else optim.lr


# -- seeds -----------------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    return seed + 1000 * rank + 7919 * (epoch + 1)


def rng_state() -> dict[str, Any]:
    """RNG states as plain lists/tensors so the checkpoint loads with ``weights_only=True``."""
    np_state = cast(tuple[Any, ...], np.random.get_state(legacy=True))
    return {"python": list(random.getstate()[1]), "numpy": np_state[1].tolist(), "numpy_pos": int(np_state[2]),
            "torch": torch.get_rng_state()}


# -- builders --------------------------------------------------------------------------------------------------
def build_model(config: TrainLoopConfig) -> torch.nn.Module:
    return default_factory().create(config.family, config.task, config.params, seed=config.seed, **config.shape)


def build_loss_fn(config: TrainLoopConfig) -> torch.nn.Module:
    # heavy: torch takes seconds to import; only the torch path pays for it
    from mlplatform.models.losses import build_loss

    return build_loss(config.loss, config.task, config.loss_params, config.class_counts)


def build_optimizer(params: Iterable[torch.nn.Parameter], config: TrainLoopConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.scaled_lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.scaled_lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.scaled_lr, weight_decay=config.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainLoopConfig) -> Any:
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, config.epochs))
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def build_amp(device: torch.device, enabled: bool) -> tuple[Callable[[], Any], Any]:
    """(autocast context factory, GradScaler or None): bf16 when the GPU supports it, else fp16 with a scaler;
    nothing on CPU."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext, None
    if torch.cuda.is_bf16_supported():
        return (lambda: torch.autocast("cuda", dtype=torch.bfloat16)), None
    return (lambda: torch.autocast("cuda", dtype=torch.float16)), torch.amp.GradScaler("cuda")


# -- data ------------------------------------------------------------------------------------------------------
def model_shape(transform: Any, classes: list[Any] | None, params: dict[str, Any]) -> dict[str, Any]:
    """The factory's shape arguments for a fitted ``TabularTransform``."""
    embeddings = params.get("embedding_dim", 0) != 0
    return {"n_inputs": transform.n_outputs, "n_outputs": len(classes) if classes else 1,
            "cardinalities": transform.cardinalities if embeddings else None,
            "categorical_names": [c.name for c in transform.categorical] if embeddings else None}


def matrices(transform: Any, frame: Any, n_codes: int) -> tuple[np.ndarray, np.ndarray | None]:
    dense = transform.transform(frame)
    codes = transform.category_codes(frame) if n_codes else None
    return dense, codes


def training_matrix(dense: np.ndarray, codes: np.ndarray | None, y: np.ndarray) -> np.ndarray:
    """One float32 matrix ``[dense | codes | target]``: the row format both loops batch over (codes are small
    integers, exact in float32)."""
    columns = [dense.astype(np.float32, copy=False)]
    if codes is not None:
        columns.append(codes.astype(np.float32))
    columns.append(y.astype(np.float32)[:, None])
    return np.hstack(columns)


def split_columns(data: torch.Tensor, config: TrainLoopConfig) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                        torch.Tensor]:
    n_dense, n_codes = config.n_dense, config.n_codes
    dense = data[:, :n_dense]
    codes = data[:, n_dense:n_dense + n_codes].long() if n_codes else None
    target = data[:, n_dense + n_codes]
    return dense, codes, target.long() if config.task == "classification" else target


def in_memory_batches(data: torch.Tensor, batch_size: int, seed: int, device: torch.device
                      ) -> Iterator[torch.Tensor]:
    """The rows shuffled with a seeded permutation, in batches."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    for start in range(0, len(data), batch_size):
        yield data[order[start:start + batch_size]].to(device)


def with_last(items: Iterable[T]) -> Iterator[tuple[T, bool]]:
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


# -- the epoch -------------------------------------------------------------------------------------------------
@dataclass
class EpochResult:
    loss_sum: torch.Tensor  # float64 [sum of row losses, rows] on this rank
    step: int  # optimizer steps so far (across epochs)


def run_epoch(model: torch.nn.Module, batches: Iterable[torch.Tensor], loss_fn: torch.nn.Module,
              optimizer: torch.optim.Optimizer, config: TrainLoopConfig, *, step: int,
              autocast: Callable[[], Any] = contextlib.nullcontext, scaler: Any = None) -> EpochResult:
    """One training pass over ``batches`` (float32 ``[dense | codes | target]`` tensors on the device)."""
    acc = config.accumulation_steps
    model.train()
    loss_sum, pending = torch.zeros(2, dtype=torch.float64), 0
    for batch, is_last in with_last(batches):
        dense, codes, target = split_columns(batch, config)
        pending += 1
        sync = pending == acc or is_last
        # no_sync on non-final micro-batches: gradients are all-reduced once per optimizer step.
        no_sync = cast(Callable[[], contextlib.AbstractContextManager[Any]], model.no_sync) \
            if (not sync and hasattr(model, "no_sync")) else contextlib.nullcontext
        with no_sync(), autocast():
            loss = loss_fn(model(dense, codes), target)
        scaled = loss / acc
        (scaler.scale(scaled) if scaler is not None else scaled).backward()
        loss_sum += torch.tensor([float(loss.detach()) * len(target), len(target)], dtype=torch.float64)
        if sync:
            if pending < acc:  # a trailing partial group: rescale so it is a mean over its own micro-batches
                for p in model.parameters():
                    if p.grad is not None:
                        p.grad.mul_(acc / pending)
            if scaler is not None:
                scaler.unscale_(optimizer)
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step, pending = step + 1, 0
    return EpochResult(loss_sum=loss_sum, step=step)


def _gather(value: Any, world: int) -> list[Any]:
    if world == 1:
        return [value]
    # heavy: torch takes seconds to import; only the torch path pays for it
    import torch.distributed as dist

    out: list[Any] = [None] * world
    dist.all_gather_object(out, value)
    return out


def validate(model: torch.nn.Module, loss_fn: torch.nn.Module, val: dict[str, Any], rank: int, world: int,
             task: str, device: torch.device) -> dict[str, float]:
    """Score this rank's slice of the validation set, gather every slice, score the whole set identically."""
    # heavy: scikit-learn loads only when an estimator is built or scored
    from mlplatform.learning.metrics import compute_metrics

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


def improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


@dataclass
class Progress:
    """What early stopping tracks across epochs (checkpointed, so a restored run decides identically)."""

    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0

    def update(self, value: float, epoch: int, rule: EarlyStopping) -> bool:
        """Record one epoch's value; True when training should stop."""
        if improved(value, self.best, rule.mode, rule.min_delta):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return rule.patience > 0 and self.bad_epochs >= rule.patience


def unwrap_ddp(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself): what checkpoints save."""
    inner = getattr(model, "module", model)
    return inner if isinstance(inner, torch.nn.Module) else model
