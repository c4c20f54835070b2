"""Cheap trainables and callbacks for the tuning tests (importable by reference in Tune's trial actors, and
unpickled again when a test restores an experiment)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback


def sampled_c(raw: dict[str, Any]) -> float:
    """The logistic C of a random-search trial; the baseline trial counts as 0.5."""
    if raw["pattern"] == "most_frequent":
        return 0.5
    return float(raw["logistic"]["params"]["C"])


def flaky(raw: dict[str, Any], data: Any) -> None:
    """Two iterations; fails before reporting anything when C > 0.9, after one report when C < 0.2."""
    from ray import tune

    c = sampled_c(raw)
    if c > 0.9:
        raise RuntimeError(f"boom before any report (C={c:.4f})")
    tune.report({"val_roc_auc": c})
    if c < 0.2:
        raise RuntimeError(f"boom after one report (C={c:.4f})")
    time.sleep(0.02)
    tune.report({"val_roc_auc": c + 0.01, "trial_finished": 1.0})


def epochs(raw: dict[str, Any], data: Any) -> None:
    """Four epochs whose score grows with the sampled lr: ASHA can stop the weak ones."""
    from ray import tune

    lr = 0.0 if raw["pattern"] == "most_frequent" else float(raw["mlp"]["training"]["lr"])
    for epoch in range(1, 5):
        tune.report({"val_roc_auc": lr * (0.5 + 0.1 * epoch), "epoch": epoch, "trial_finished": float(epoch == 4)})
        time.sleep(0.02)


class InterruptAfter(Callback):
    """Sends this process SIGUSR1 (which Tune handles like Ctrl+C: stop and save the experiment state) once
    ``n`` trials have completed. A marker file makes it fire once, also after the experiment is restored."""

    def __init__(self, n: int, marker: str) -> None:
        self.n, self.marker, self.done = n, marker, 0

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.done += 1
        if self.done >= self.n and not Path(self.marker).exists():
            Path(self.marker).write_text("interrupted")
            os.kill(os.getpid(), signal.SIGUSR1)
