"""Retraining job: every ``--interval`` seconds (default 24 h) and whenever an open RED drift or decay alert calls
for it, retrain the model on the newest window; a winner becomes the challenger in a shadow rollout.

    ray job submit --working-dir . -- python train_jobs/retrain.py --model churn \
        --config train_jobs/configs/churn_hist_gbdt.yaml --window-file data/churn_recent.parquet

The guards (never while one runs, >= 6 h apart, <= 2 per UTC day) live in the store, so any number of these
jobs and `mlplatform monitor retrain` calls share them. A failed pass is recorded, alerted and logged; the
schedule goes on.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

logger = logging.getLogger("mlplatform.train_jobs.retrain")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Registered model name.")
    parser.add_argument("--config", required=True, type=Path, help="Training YAML.")
    parser.add_argument("--window-file", type=Path, default=None, help="Newest labelled window (Parquet/CSV).")
    parser.add_argument("--monitor-config", default=None, help="Monitor YAML (guards, sinks).")
    parser.add_argument("--interval", type=float, default=24 * 3600.0, help="Scheduled retrain period (s).")
    parser.add_argument("--poll", type=float, default=300.0, help="Seconds between alert polls.")
    parser.add_argument("--once", action="store_true", help="One pass (alert trigger or schedule), then exit.")
    parser.add_argument("--store-url", default=None, help="Store URL (Ray workers do not see local settings).")
    return parser.parse_args(argv)


def run_pass(client, args, config, scheduled: bool) -> dict | None:
    from mlplatform.monitoring.retrain import find_trigger, run_retrain

    try:
        champion = client.registry.resolve(f"{args.model}@champion")
        trigger, alert = find_trigger(client, args.model, champion.version)
        if trigger is None and not scheduled:
            return None
        result = run_retrain(client, args.model, args.config, trigger=trigger or "schedule",
                             alert_id=alert.id if alert else None, window_file=args.window_file,
                             monitor_config=config, actor="retrain-job")
    except Exception:  # the schedule must survive anything one pass does
        logger.exception("retrain pass for %s failed", args.model)
        return {"status": "error"}
    logger.info("retrain pass for %s: %s", args.model, result.status)
    return result.to_dict()


def main(argv: list[str] | None = None) -> int:
    platform_dir = Path(__file__).resolve().parents[1] / "platform"
    if platform_dir.is_dir() and str(platform_dir) not in sys.path:
        sys.path.insert(0, str(platform_dir))
    from mlplatform.client import Client
    from mlplatform.logs import configure_logging
    from mlplatform.monitoring.config import load_monitor_config

    configure_logging()
    args = parse_args(argv)
    config = load_monitor_config(args.monitor_config)
    next_scheduled = time.monotonic()
    with Client(store_url=args.store_url) as client:
        while True:
            scheduled = time.monotonic() >= next_scheduled
            result = run_pass(client, args, config, scheduled or args.once)
            if scheduled:
                next_scheduled = time.monotonic() + args.interval
            if args.once:
                sys.stdout.write(json.dumps(result, default=str) + "\n")
                return 0 if result and result.get("status") in ("completed", "refused", "rejected") else 1
            time.sleep(args.poll)


if __name__ == "__main__":
    raise SystemExit(main())
