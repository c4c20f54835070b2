"""Epoch hooks shipped to Ray Train workers by the training tests (importable by reference in workers)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def kill_worker(epoch: int, rank: int, *, marker_dir: str, epochs: tuple[int, ...], at_rank: int = 1) -> None:
    """Kill this worker process (no cleanup, like a lost node) once at the start of each epoch in ``epochs``.

    It waits 3 s first: Ray Train registers a reported checkpoint when its controller next polls the workers,
    and a worker lost inside that window loses the report too (then training resumes one epoch earlier)."""
    marker = Path(marker_dir) / f"killed-at-{epoch}"
    if epoch in epochs and rank == at_rank and not marker.exists():
        marker.write_text("killed")
        time.sleep(3)
        os._exit(1)
