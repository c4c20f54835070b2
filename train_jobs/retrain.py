"""Retraining job of the automatic loop: retrain one model for one loop decision, then exit.

Submitted by the loop (:mod:`mlplatform.loop`) through Ray's Jobs API, never typed by hand:

    python train_jobs/retrain.py --decision <loop decision id>

The decision row holds the model's loop config: the data source whose newest labelled window is read, and the
training config. The job warm-starts a torch champion or refits an sklearn family on that window, gates the
candidate against the champion on the same newest holdout and registers a winner as challenger; the outcome
(challenger, or rejected/failed with the reason) goes back into the decision, and the loop starts the rollout.
Exit codes: 0 challenger registered, 3 lost to the champion or refused by a guard, 1 failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decision", required=True, help="The loop decision this job carries out.")
    parser.add_argument("--store-url", default=None, help="Store URL (default: MLPLATFORM_STORE_URL).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    platform_dir = Path(__file__).resolve().parents[1] / "platform"
    if platform_dir.is_dir() and str(platform_dir) not in sys.path:
        sys.path.insert(0, str(platform_dir))
    from mlplatform.client import Client
    from mlplatform.logs import configure_logging
    from mlplatform.loop import run_retrain_job

    configure_logging()
    args = parse_args(argv)
    with Client(store_url=args.store_url) as client:
        result = run_retrain_job(client, args.decision)
    sys.stdout.write(json.dumps(result.to_dict(), default=str) + "\n")
    return {"completed": 0, "rejected": 3, "refused": 3}.get(result.status, 1)


if __name__ == "__main__":
    raise SystemExit(main())
