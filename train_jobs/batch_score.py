"""Batch scoring as a Ray job (SPEC S5.1).

    ray job submit --working-dir . \
        --runtime-env-json '{"env_vars": {"MLPLATFORM_STORE_URL": "postgresql+psycopg://...",
                                          "MLPLATFORM_ARTIFACT_URI": "s3://bucket/artifacts"}}' \
        -- python train_jobs/batch_score.py --model churn@champion --input s3://bucket/scoring/2026-01-02/ \
           --output s3://bucket/predictions --keep-columns customer_id

or ``-- python train_jobs/batch_score.py --config batch.yaml`` with the same options as BatchConfig fields (model,
input, output, keep_columns, ...); flags given beside ``--config`` replace its keys.

The job's driver runs on the head node and is the only process that talks to the store; the scoring actors get
the verified model files from it. ``ray job submit`` reads the cluster's auth token from ``~/.ray/auth_token``
(Ray 2.60 turns token authentication on by default). Exit code: 0 done, 2 bad input or unknown model, 3 too many
quarantined rows, 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the job imports the package only after parsing its flags (a fast --help)
    from mlplatform.config.batch import BatchConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    # Flags default to None: a flag given replaces the --config YAML's key, and every default lives in BatchConfig.
    parser = argparse.ArgumentParser(description="Score Parquet/CSV with a registered model version on Ray Data.")
    parser.add_argument("--config", default=None, help="batch YAML (BatchConfig fields); flags replace its keys")
    parser.add_argument("--model", default=None, help="name@alias or name:version")
    parser.add_argument("--input", default=None, help="file, folder or glob on any pyarrow filesystem")
    parser.add_argument("--output", default=None, help="output folder (model=<name>/version=<v>/ inside)")
    parser.add_argument("--batch-size", type=int, default=None, help="rows per model call (default 10,000)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="concurrent scorers (default: one per CPU, or GPU)")
    parser.add_argument("--compute", choices=["auto", "tasks", "actors"], default=None,
                        help="fused tasks (fastest on CPU) or an actor pool (GPU clusters); auto (default) picks")
    parser.add_argument("--keep-columns", default=None, help="comma-separated id columns")
    parser.add_argument("--partition-by", default=None)
    parser.add_argument("--max-quarantine", type=float, default=None, help="default 0.05")
    parser.add_argument("--on-invalid", choices=["quarantine", "fail"], default=None, help="default quarantine")
    parser.add_argument("--online-key", default=None, help="also update MLPLATFORM_HOME/online/<model>.parquet")
    return parser.parse_args(argv)


def batch_config(args: argparse.Namespace) -> BatchConfig:
    """The job's BatchConfig: the --config YAML (if any) with the flags given on top; ConfigError names the field."""
    from mlplatform.config.batch import batch_config_from_dict, load_batch_config

    flags = {"model": args.model, "input": args.input, "output": args.output, "batch_size": args.batch_size,
             "concurrency": args.concurrency, "compute": args.compute, "partition_by": args.partition_by,
             "max_quarantine_fraction": args.max_quarantine, "on_invalid": args.on_invalid,
             "online_key": args.online_key,
             "keep_columns": None if args.keep_columns is None
             else [c.strip() for c in args.keep_columns.split(",") if c.strip()]}
    given = {k: v for k, v in flags.items() if v is not None}
    return load_batch_config(args.config, given) if args.config else batch_config_from_dict(given, "batch options")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from mlplatform.batch import run_batch
    from mlplatform.errors import MLPlatformError
    from mlplatform.logs import configure_logging

    configure_logging()
    try:
        result = run_batch(batch_config(args))
    except MLPlatformError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(result.to_dict(), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
