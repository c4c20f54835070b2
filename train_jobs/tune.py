"""Ray job entrypoint: a multi-pattern search on Ray Tune, recorded in the evaluation store.

    ray job submit --working-dir . -- python train_jobs/tune.py --config tune_configs/churn_multi_pattern.yaml
    ray job submit --working-dir . -- python train_jobs/tune.py --resume SWEEP_RUN_ID

Same code path as ``mlplatform tune`` (mlplatform.tuning.runner). Under ``ray job submit`` the driver joins the
cluster through RAY_ADDRESS; run directly, it starts a local Ray. Set MLPLATFORM_STORE_URL and
MLPLATFORM_ARTIFACT_URI (shared storage on a multi-node cluster: Tune keeps its experiment state there) in the
job's environment. Exit codes: 0 done, 2 invalid input/config, 3 promotion gate failed, 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="search YAML (tune_configs/*.yaml)")
    source.add_argument("--resume", metavar="EXPERIMENT", help="continue a stopped search (sweep run id)")
    parser.add_argument("--register-best", action="store_true", help="retrain, gate and register the best config")
    parser.add_argument("--warm-start-from", action="append", default=[], metavar="EXPERIMENT",
                        help="seed the search with the best configs of an earlier search (repeatable)")
    parser.add_argument("--force", action="store_true", help="register even when the promotion gate fails")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    # The working dir of a job holds the repository; make the package importable when it is not installed.
    platform_dir = Path(__file__).resolve().parents[1] / "platform"
    if platform_dir.is_dir() and str(platform_dir) not in sys.path:
        sys.path.insert(0, str(platform_dir))

    from mlplatform.errors import MLPlatformError
    from mlplatform.logs import configure_logging
    from mlplatform.tuning import runner

    configure_logging()
    try:
        if args.resume:
            outcome = runner.resume_search(args.resume, register_best=args.register_best, force=args.force)
        else:
            outcome = runner.search_from_file(args.config, warm_start_from=args.warm_start_from,
                                              register_best=args.register_best, force=args.force)
    except MLPlatformError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    data = outcome.to_dict()
    board = data["leaderboard"]
    board["trials"] = [{k: v for k, v in t.items() if k != "config"} for t in board["trials"]]
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
