"""Joining Ray, shared by every stage that starts Ray work from a driver."""

from __future__ import annotations

import os


def ensure_ray(address: str | None = None) -> None:
    """Join the cluster of a ``ray job submit`` driver (RAY_ADDRESS), the configured address, or start locally."""
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    import ray

    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, log_to_driver=True)
