"""Monitoring job: check every monitored model once (``--once``) or on an interval (default hourly).

Submit with ``ray job submit --working-dir . -- python train_jobs/monitor.py --config train_jobs/configs/monitor.yaml``.
A failing model is logged and the loop goes on: one broken artifact must not stop monitoring of the others.
"""

from __future__ import annotations

import argparse
import logging
import time

logger = logging.getLogger("mlplatform.train_jobs.monitor")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="Monitor config YAML (default: built-in defaults).")
    parser.add_argument("--model", action="append", default=None, help="Model ref; repeat for more.")
    parser.add_argument("--once", action="store_true", help="One pass, then exit.")
    parser.add_argument("--interval", type=float, default=None, help="Seconds between passes (default: config).")
    parser.add_argument("--last", type=int, default=None, help="Window: the last N logged predictions.")
    parser.add_argument("--store-url", default=None, help="Store URL (Ray workers do not see local settings).")
    return parser.parse_args(argv)


def monitored_models(client, refs: list[str]) -> list[str]:
    if refs:
        return refs
    return [f"{m.name}@champion" for m in client.registry.list_models() if "champion" in m.aliases]


def run_pass(client, config, refs: list[str], last: int | None) -> dict[str, str]:
    from mlplatform.errors import MLPlatformError
    from mlplatform.monitoring.check import run_check

    levels = {}
    for ref in monitored_models(client, refs):
        try:
            result = run_check(client, ref, config=config, last_n=last)
            levels[ref] = result.level.name
        except MLPlatformError as exc:
            logger.error("monitoring %s failed: %s", ref, exc)
            levels[ref] = "error"
    logger.info("monitor pass: %s", levels)
    return levels


def main(argv: list[str] | None = None) -> int:
    from mlplatform.client import Client
    from mlplatform.config.monitor import load_monitor_config
    from mlplatform.logs import configure_logging

    configure_logging()
    args = parse_args(argv)
    config = load_monitor_config(args.config)
    refs = args.model or config.models
    interval = args.interval or config.interval_seconds
    with Client(store_url=args.store_url) as client:
        while True:
            started = time.monotonic()
            run_pass(client, config, refs, args.last)
            if args.once:
                return 0
            time.sleep(max(0.0, interval - (time.monotonic() - started)))


if __name__ == "__main__":
    raise SystemExit(main())
