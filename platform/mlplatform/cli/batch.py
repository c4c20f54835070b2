"""``mlplatform batch --model REF --input PATH_OR_GLOB --output DIR [...]``: batch scoring on Ray Data."""

from __future__ import annotations

import typer

from mlplatform.cli._output import JsonOption, client, emit, expected_errors, print_table

app = typer.Typer(help="Score Parquet or CSV files with a registered model version on Ray Data.")


def _columns(value: str | None) -> list[str]:
    return [c.strip() for c in (value or "").split(",") if c.strip()]


@app.callback(invoke_without_command=True)
def batch(
    model: str = typer.Option(..., "--model", help="name@alias or name:version (resolved once, at start)."),
    input_uri: str = typer.Option(..., "--input", help="Parquet/CSV file, folder or glob on any pyarrow filesystem."),
    output_uri: str = typer.Option(..., "--output", help="Output folder; results go to model=<name>/version=<v>/."),
    batch_size: int = typer.Option(10_000, "--batch-size", min=1, help="Rows per model call."),
    concurrency: int = typer.Option(None, "--concurrency", min=1,
                                    help="Concurrent scorers, tasks or actors (default: one per CPU, or GPU)."),
    compute: str = typer.Option("auto", "--compute",
                                help="tasks: read, score and write fused in one task per block (fastest on CPU); "
                                     "actors: an actor pool, one GPU each on GPU clusters; auto: actors for torch "
                                     "models when the cluster has GPUs, else tasks."),
    keep_columns: str = typer.Option(None, "--keep-columns", help="Comma-separated id columns to keep."),
    partition_by: str = typer.Option(None, "--partition-by", help="Write hive partitions by this input column."),
    max_quarantine: float = typer.Option(0.05, "--max-quarantine", min=0.0, max=1.0,
                                         help="Fail (exit 3, nothing published) at this fraction of bad rows."),
    on_invalid: str = typer.Option("quarantine", "--on-invalid",
                                   help="quarantine: bad rows go to _quarantine.parquet; fail: any bad row fails "
                                        "the job (exit 3, nothing published)."),
    online_key: str = typer.Option(None, "--online-key",
                                   help="Also write the latest prediction per value of this kept column to "
                                        "MLPLATFORM_HOME/online/<model>.parquet."),
    as_json: bool = JsonOption,
) -> None:
    """Score every row; rows that fail validation go to _quarantine.parquet with a reason."""
    from mlplatform.batch import run_batch

    keep = _columns(keep_columns)
    if online_key and online_key not in keep:
        keep.append(online_key)
    with expected_errors():
        result = run_batch(model, input_uri, output_uri, batch_size=batch_size, concurrency=concurrency,
                           keep_columns=keep, partition_by=partition_by, max_quarantine_fraction=max_quarantine,
                           on_invalid=on_invalid, online_key=online_key, compute=compute, client=client())
    data = result.to_dict()
    emit(data, as_json, lambda: print_table(
        [{"field": k, "value": data[k]} for k in ("model_name", "model_version", "run_id", "rows_in", "rows_scored",
                                                   "rows_quarantined", "reconciled", "duration_s", "rows_per_s",
                                                   "output_path", "quarantine_path", "online_path")],
        ["field", "value"], title="batch scoring"))
