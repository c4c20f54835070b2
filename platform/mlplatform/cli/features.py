"""``mlplatform features apply|list|materialize|get``: the feature store from the command line."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import typer

from mlplatform.cli._output import JsonOption, emit, expected_errors, print_table
from mlplatform.errors import InvalidInput
from mlplatform.features import pit_join
from mlplatform.features.datasets import read_table
from mlplatform.features.pit_join import _json_value, get_online_features
from mlplatform.features.repo import apply_file, get_view, list_applied

app = typer.Typer(help="Feature views: declare, materialize to the online table, read online features.",
                  no_args_is_help=True)


def _parse_time(value: str | None, option: str) -> datetime | None:
    """ISO-8601; a time without an offset is taken as UTC (the store keeps every time in UTC)."""
    if value is None:
        return None

    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise InvalidInput(f"{option}: not an ISO-8601 time: {value!r}", field=option) from None
    if pd.isna(stamp):
        raise InvalidInput(f"{option}: not an ISO-8601 time: {value!r}", field=option)
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.to_pydatetime()


@app.command()
def apply(path: str = typer.Argument(..., help="YAML file of feature views (a list, or views: [...])."),
          as_json: bool = JsonOption) -> None:
    """Validate and record feature view declarations (all or nothing; relative sources are relative to the file)."""
    with expected_errors():
        results = apply_file(path)
    emit(results, as_json, lambda: print_table(results, ["name", "status", "version", "source"],
                                               title=f"feature views from {path}"))


@app.command("list")
def list_views(as_json: bool = JsonOption) -> None:
    """Applied feature views."""
    with expected_errors():
        records = [r.to_dict() for r in list_applied()]
    rows = [{"name": r["name"], "entity": r["view"]["entity"], "features": r["view"]["features"],
             "ttl": r["view"]["ttl"], "version": r["version"][:12], "applied_at": r["applied_at"]} for r in records]
    emit(records, as_json, lambda: print_table(rows, ["name", "entity", "features", "ttl", "version", "applied_at"],
                                               title="feature views"))


@app.command()
def materialize(view: str = typer.Argument(..., help="Name of an applied feature view."),
                end: str = typer.Option(None, "--end", help="As-of time, ISO-8601 (default: now; no offset: UTC)."),
                source: str = typer.Option(None, "--source", help="Read feature rows from here instead of the "
                                                                  "view's source (Parquet/CSV path or URI)."),
                overwrite: bool = typer.Option(False, "--overwrite",
                                               help="Replace a stored value that differs at the same event time."),
                as_json: bool = JsonOption) -> None:
    """Write each entity's latest in-TTL values as of --end to the online table."""
    with expected_errors():
        feature_view = get_view(view)
        end_time = _parse_time(end, "--end") or datetime.now(UTC)
        frame = read_table(source) if source else None
        counts = pit_join.materialize(feature_view, end_time=end_time, feature_df=frame, overwrite=overwrite)
    data: dict[str, Any] = {"view": view, "version": feature_view.version, "end_time": end_time.isoformat(),
                            **counts}
    emit(data, as_json, lambda: print_table([data], ["view", "end_time", "written", "unchanged", "skipped_older",
                                                     "expired_or_future"], title="materialized"))


@app.command()
def get(view: str = typer.Argument(..., help="Name of an applied feature view."),
        entity_ids: str = typer.Option(..., "--entity-ids", help="Comma-separated entity ids."),
        as_of: str = typer.Option(None, "--as-of", help="Apply the TTL as of this time (default: now)."),
        strict: bool = typer.Option(False, "--strict", help="Fail (not found, exit 2) when an id has no value."),
        full_feature_names: bool = typer.Option(False, "--full-feature-names",
                                                help="Name features view__feature (as get_historical_features "
                                                     "with full_feature_names)."),
        as_json: bool = JsonOption) -> None:
    """Online features of the given entities, in request order (unknown or expired ids: nulls)."""
    with expected_errors():
        ids = [e.strip() for e in entity_ids.split(",") if e.strip()]
        if not ids:
            raise InvalidInput("--entity-ids: give at least one id", field="--entity-ids")
        feature_view = get_view(view)
        frame = get_online_features(feature_view, ids, strict=strict, as_of=_parse_time(as_of, "--as-of"),
                                    full_feature_names=full_feature_names)
    rows = [{k: _json_value(v) for k, v in record.items()} for record in frame.to_dict("records")]
    emit(rows, as_json, lambda: print_table(rows, list(frame.columns), title=f"{view} (online)"))
