"""``mlplatform batch --model REF --input PATH_OR_GLOB --output DIR [...]`` (or ``--config batch.yaml``): batch
scoring on Ray Data."""

from __future__ import annotations

import typer

from mlplatform.batch import run_batch
from mlplatform.cli._output import JsonOption, client, emit, expected_errors, print_table
from mlplatform.config.batch import batch_config_from_dict, load_batch_config

app = typer.Typer(help="Score Parquet or CSV files with a registered model version on Ray Data.")


def _columns(value: str | None) -> list[str]:
    return [c.strip() for c in (value or "").split(",") if c.strip()]


@app.callback(invoke_without_command=True)
def batch(
    config: str = typer.Option(None, "--config", help="Batch YAML (BatchConfig fields: model, input, output, "
                               "batch_size, ...); flags given here replace its keys."),
    model: str = typer.Option(None, "--model", help="name@alias or name:version (resolved once, at start)."),
    input_uri: str = typer.Option(None, "--input", help="Parquet/CSV file, folder or glob on any pyarrow filesystem."),
    output_uri: str = typer.Option(None, "--output", help="Output folder; results go to model=<name>/version=<v>/."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Rows per model call (default 10,000)."),
    concurrency: int = typer.Option(None, "--concurrency", min=1,
                                    help="Concurrent scorers, tasks or actors (default: one per CPU, or GPU)."),
    compute: str = typer.Option(None, "--compute",
                                help="tasks: read, score and write fused in one task per block (fastest on CPU); "
                                     "actors: an actor pool, one GPU each on GPU clusters; auto (default): actors "
                                     "for torch models when the cluster has GPUs, else tasks."),
    keep_columns: str = typer.Option(None, "--keep-columns", help="Comma-separated id columns to keep."),
    partition_by: str = typer.Option(None, "--partition-by", help="Write hive partitions by this input column."),
    max_quarantine: float = typer.Option(None, "--max-quarantine", min=0.0, max=1.0,
                                         help="Fail (exit 3, nothing published) at this fraction of bad rows "
                                              "(default 0.05)."),
    on_invalid: str = typer.Option(None, "--on-invalid",
                                   help="quarantine (default): bad rows go to _quarantine.parquet; fail: any bad "
                                        "row fails the job (exit 3, nothing published)."),
    online_key: str = typer.Option(None, "--online-key",
                                   help="Also write the latest prediction per value of this kept column to "
                                        "MLPLATFORM_HOME/online/<model>.parquet."),
    as_json: bool = JsonOption,
) -> None:
    """Score every row; rows that fail validation go to _quarantine.parquet with a reason."""
    flags = {"model": model, "input": input_uri, "output": output_uri, "batch_size": batch_size,
             "concurrency": concurrency, "compute": compute, "partition_by": partition_by,
             "max_quarantine_fraction": max_quarantine, "on_invalid": on_invalid, "online_key": online_key,
             "keep_columns": _columns(keep_columns) if keep_columns is not None else None}
    given = {k: v for k, v in flags.items() if v is not None}  # the model's defaults live in one place: BatchConfig
    with expected_errors():
        options = load_batch_config(config, given) if config else batch_config_from_dict(given, "batch options")
        result = run_batch(options, client=client())
    data = result.to_dict()
    emit(data, as_json, lambda: print_table(
        [{"field": k, "value": data[k]} for k in ("model_name", "model_version", "run_id", "rows_in", "rows_scored",
                                                   "rows_quarantined", "reconciled", "duration_s", "rows_per_s",
                                                   "output_path", "quarantine_path", "online_path")],
        ["field", "value"], title="batch scoring"))
