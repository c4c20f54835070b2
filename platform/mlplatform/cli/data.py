"""``mlplatform data version|validate|profile``."""

from __future__ import annotations

import shutil
from typing import Any

import typer
from rich.table import Table

from mlplatform.cli._output import JsonOption, _cell, client, console, emit, expected_errors, print_json
from mlplatform.entities import DatasetVersion
from mlplatform.errors import InvalidInput, NotFound
from mlplatform.features.datasets import profile_frame, read_table, version_dataset
from mlplatform.features.schema import schema_from_json
from mlplatform.features.transform import TabularTransform
from mlplatform.features.validation import DataValidationFailed, Level, ValidationConfig, validate_frame

app = typer.Typer(help="Dataset versions, profiles and validation against a model's schema.", no_args_is_help=True)


def print_table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    """Like the shared table, but cells fold instead of being cut: hashes and column names stay whole."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*[_cell(row.get(c)) for c in columns])
    console().print(table)


@app.command()
def version(path: str = typer.Argument(..., help="Parquet or CSV file or directory (local path or URI)."),
            name: str = typer.Option(..., "--name", help="Dataset name (exact match on lookup)."),
            as_json: bool = JsonOption) -> None:
    """Hash the content, profile it and record the version in the store."""
    with expected_errors():
        record = version_dataset(path, name, client=client())
    data = record.to_dict()
    emit(data, as_json,
         lambda: print_table([{"field": k, "value": data[k]} for k in ("name", "version", "uri", "row_count",
                                                                       "created_at")],
                             ["field", "value"], title=f"dataset {name}"))


@app.command()
def profile(path: str = typer.Argument(..., help="Parquet or CSV file or directory (local path or URI)."),
            as_json: bool = JsonOption) -> None:
    """Per-column statistics: count, missing rate, mean, sd, min, max, quantiles, category frequencies."""
    with expected_errors():
        data = profile_frame(read_table(path))

    def render() -> None:
        rows = []
        for column, stats in data["columns"].items():
            top = stats.get("frequencies") or {}
            rows.append({"column": column, "dtype": stats["dtype"], "missing": stats["missing_rate"],
                         "mean": stats.get("mean"), "sd": stats.get("sd"), "min": stats.get("min"),
                         "max": stats.get("max"), "top": ",".join(list(top)[:3]) if top else None})
        print_table(rows, ["column", "dtype", "missing", "mean", "sd", "min", "max", "top"],
                    title=f"{path}: {data['row_count']} rows")

    emit(data, as_json, render)


def _reference_profile(ref: str | None, version: Any) -> tuple[dict[str, Any], str]:
    """The profile to compare against: ``--reference name[@version]``, else the profile of the model's training
    dataset. Missing is an error, never a silent skip of the distribution checks."""
    datasets = client().datasets
    if ref:
        name, _, at = ref.partition("@")
        record = datasets.get(name, at or None)
        if not record.profile:
            raise InvalidInput(f"dataset {record.name}@{record.version[:12]} has no profile", field="--reference")
        return record.profile, f"{record.name}@{record.version[:12]} (--reference)"
    entry = (version.lineage or {}).get("dataset") or {}
    if entry.get("name") and entry.get("version"):
        try:
            trained: DatasetVersion | None = datasets.get(entry["name"], entry["version"])
        except NotFound:
            trained = None
        if trained is not None and trained.profile:
            return trained.profile, f"{trained.name}@{trained.version[:12]} (the training data of {version.ref})"
    raise InvalidInput(f"{version.ref} has no reference profile (its training dataset was not recorded with one); "
                       "pass --reference NAME[@VERSION], or --no-reference for the schema checks alone",
                       field="--reference")


def _missing_tokens(version: Any) -> list[str]:
    """The model's own missing tokens (its transform, SHA-256 verified on fetch): data is read as the model reads it."""
    local = client().registry.fetch(version)
    try:
        return list(TabularTransform.load(local).config.missing_tokens)
    finally:
        shutil.rmtree(local, ignore_errors=True)


@app.command()
def validate(path: str = typer.Argument(..., help="Parquet or CSV file or directory (local path or URI)."),
             model: str = typer.Option(..., "--model", help="name, name:version or name@alias"),
             reference: str = typer.Option(None, "--reference",
                                           help="dataset name[@version] whose profile is the reference "
                                                "(default: the model's training dataset, when recorded)"),
             no_reference: bool = typer.Option(False, "--no-reference",
                                               help="schema checks only, without distribution checks"),
             ignore: list[str] = typer.Option([], "--ignore", help="columns never reported as unexpected "
                                              "(repeat the option or give a comma-separated list)"),
             as_json: bool = JsonOption) -> None:
    """Validate data against a model's input schema; exit code 3 when any check is at ERROR level."""
    with expected_errors():
        version = client().registry.resolve(model)
        schema = schema_from_json(version.input_schema)
        df = read_table(path)  # a missing file is the first thing to say
        ref_profile, ref_name = (None, None) if no_reference else _reference_profile(reference, version)
        ignored = [c.strip() for item in ignore for c in item.split(",") if c.strip()]
        report = validate_frame(df, schema, ref_profile, ValidationConfig(
                                    ignore_columns=ignored, missing_tokens=_missing_tokens(version)),
                                dataset={"path": path, "model": version.ref, "reference": ref_name})
    if as_json:
        print_json(report.to_dict())
    else:
        console().print(report.to_text(), markup=False, highlight=False)
    if report.level == Level.ERROR:
        raise typer.Exit(DataValidationFailed.exit_code)
