"""Ray job entrypoint: train, evaluate, gate and register a model from a YAML config.

    ray job submit --working-dir . -- python train_jobs/train.py --config train_jobs/configs/churn_mlp.yaml

Same code path as ``mlplatform train`` (mlplatform.training.pipeline). Under ``ray job submit`` the driver joins
the cluster through RAY_ADDRESS; run directly, it starts a local Ray. Set MLPLATFORM_STORE_URL and
MLPLATFORM_ARTIFACT_URI (shared storage on a multi-node cluster) in the job's environment. Exit codes: 0 done,
2 invalid input/config, 3 promotion gate failed, 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="training YAML (train_jobs/configs/*.yaml)")
    source.add_argument("--resume", metavar="RUN_ID", help="continue a stopped run from its latest checkpoint")
    parser.add_argument("--warm-start", metavar="REF", help="initialise from name@alias or name:version")
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
    from mlplatform.training import pipeline

    configure_logging()
    try:
        if args.resume:
            outcome = pipeline.resume(args.resume, force=args.force)
        else:
            outcome = pipeline.train_from_file(args.config, warm_start=args.warm_start, force=args.force)
    except MLPlatformError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    sys.stdout.write(json.dumps(outcome.to_dict(), indent=2, sort_keys=True, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
