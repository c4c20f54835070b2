"""The scheduler: one long-lived process that runs due schedules (SPEC S9.3) every ``--interval`` seconds.

Submit with ``ray job submit --working-dir . -- python train_jobs/scheduler.py`` so it shows in ``ray job list``
and the dashboard. Several may run against one store: a lease per schedule and a unique row per slot keep a job
from running twice. A tick's error is logged and the loop goes on; it never dies with its first exception.
"""

from __future__ import annotations

import argparse
import logging
import time

logger = logging.getLogger("mlplatform.train_jobs.scheduler")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=30.0, help="Seconds between ticks.")
    parser.add_argument("--once", action="store_true", help="One tick, then exit.")
    parser.add_argument("--max-ticks", type=int, default=None, help="Stop after this many ticks (tests).")
    parser.add_argument("--store-url", default=None, help="Store URL (Ray workers do not see local settings).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from mlplatform.client import Client
    from mlplatform.logs import configure_logging
    from mlplatform.scheduler import default_owner, run_due

    configure_logging()
    args = parse_args(argv)
    owner = default_owner()
    ticks = 0
    with Client(store_url=args.store_url) as client:
        logger.info("scheduler %s started (interval %.0f s)", owner, args.interval)
        while True:
            started = time.monotonic()
            try:
                for outcome in run_due(client, owner=owner):
                    logger.info("schedule %s slot %s: %s %s", outcome.schedule, outcome.slot.isoformat(),
                                outcome.status, outcome.error or "")
            except Exception:  # the store may be away for a moment: log, and try again next tick
                logger.exception("scheduler tick failed")
            ticks += 1
            if args.once or (args.max_ticks is not None and ticks >= args.max_ticks):
                return 0
            time.sleep(max(0.0, args.interval - (time.monotonic() - started)))


if __name__ == "__main__":
    raise SystemExit(main())
