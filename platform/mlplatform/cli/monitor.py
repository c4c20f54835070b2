"""``mlplatform monitor check|status|report``: drift and live-quality checks, current levels, HTML reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mlplatform.cli._output import JsonOption, client, emit, expected_errors, print_table

app = typer.Typer(help="Monitoring: drift, live metrics, alert levels and reports.", no_args_is_help=True)
ModelOption = typer.Option(..., "--model", help="name, name:version or name@alias")
WindowFileOption = typer.Option(None, "--window-file", help="A Parquet file of feature rows as the window.")
LastOption = typer.Option(None, "--last", min=1, help="The last N logged predictions as the window.")
ConfigOption = typer.Option(None, "--config", help="Monitor config YAML (sinks, routing, thresholds).")


def _window_args(window_file: Path | None, last: int | None) -> None:
    from mlplatform.errors import InvalidInput

    if window_file is not None and last is not None:
        raise InvalidInput("give either --window-file or --last, not both", field="window")


@app.command()
def check(model: str = ModelOption, window_file: Path = WindowFileOption, last: int = LastOption,
          config: Path = ConfigOption, as_json: bool = JsonOption) -> None:
    """Check one model version on a window; store the drift report and alerts, notify the sinks."""
    from mlplatform.monitoring.check import run_check
    from mlplatform.monitoring.config import load_monitor_config

    with expected_errors():
        _window_args(window_file, last)
        result = run_check(client(), model, config=load_monitor_config(config), window_file=window_file,
                           last_n=last)
    data = result.to_dict()
    emit(data, as_json, lambda: _render_check(data))


def _render_check(data: dict[str, Any]) -> None:
    rows = [{"feature": name, "kind": f["kind"], "status": f["status"], "n": f["n"], "psi": f["psi"],
             "test": f["test"], "p_value": f["p_value"], "drift": f["drift"], "level": f["level"]}
            for name, f in data["drift"]["features"].items()]
    if data["drift"]["prediction"]:
        p = data["drift"]["prediction"]
        rows.append({"feature": "(prediction)", "kind": p["kind"], "status": p["status"], "n": p["n"],
                     "psi": p["psi"], "test": p["test"], "p_value": p["p_value"], "drift": p["drift"],
                     "level": p["level"]})
    print_table(rows, ["feature", "kind", "status", "n", "psi", "test", "p_value", "drift", "level"],
                title=f"{data['model']}:{data['version']} on {data['drift']['source']} (n={data['n']})")
    if data["alerts"]:
        print_table(data["alerts"], ["type", "metric", "level", "value", "threshold", "message"], title="alerts")
    typer.echo(f"level: {data['level']}")
    if data["retrain"] and data["retrain"]["reasons"]:
        state = "recommended" if data["retrain"]["recommend"] else f"held ({data['retrain']['blocked_by']})"
        typer.echo(f"retraining {state}: {'; '.join(data['retrain']['reasons'])}")


@app.command()
def status(as_json: bool = JsonOption) -> None:
    """The current level per model version: the highest open alert (GREEN when none)."""
    from mlplatform.entities import AlertLevel
    from mlplatform.monitoring.alerts import current_levels

    with expected_errors():
        store = client().monitoring
        levels = current_levels(store)
        rows = []
        for registered in client().registry.list_models():
            versions = sorted({v for (name, v) in levels if name == registered.name and v is not None})
            champion = registered.aliases.get("champion")
            for version in versions or [champion or registered.latest_version]:
                level = levels.get((registered.name, version), AlertLevel.GREEN)
                open_alerts = [a for a in store.alerts(registered.name, status="open", limit=10_000)
                               if a.version == version and a.level != AlertLevel.GREEN.name]
                last = store.drift_reports(registered.name, limit=1)
                rows.append({"model": registered.name, "version": version, "level": level.name,
                             "open_alerts": len(open_alerts),
                             "aliases": [a for a, v in registered.aliases.items() if v == version],
                             "last_check": last[0].created_at if last else None})
    emit(rows, as_json, lambda: print_table(rows, ["model", "version", "aliases", "level", "open_alerts",
                                                   "last_check"], title="monitoring status"))


@app.command()
def report(model: str = ModelOption, window_file: Path = WindowFileOption, last: int = LastOption,
           out: Path = typer.Option(None, "--out", help="Directory (default MLPLATFORM_HOME/reports)."),
           config: Path = ConfigOption, as_json: bool = JsonOption) -> None:
    """Write a self-contained HTML report (+ JSON) and print its path. Stores nothing and notifies no one."""
    from mlplatform.monitoring.check import run_check
    from mlplatform.monitoring.config import load_monitor_config
    from mlplatform.monitoring.report import write_report

    with expected_errors():
        _window_args(window_file, last)
        monitor_config = load_monitor_config(config)
        c = client()
        result = run_check(c, model, config=monitor_config, window_file=window_file, last_n=last, record=False)
        out_dir = out or Path(monitor_config.report_dir or c.settings.home / "reports")
        html_path, json_path = write_report(result.to_dict(), out_dir,
                                            history=c.monitoring.drift_reports(result.model_name),
                                            alerts=c.monitoring.alerts(result.model_name))
    emit({"html": str(html_path), "json": str(json_path), "level": result.level.name}, as_json,
         lambda: typer.echo(str(html_path)))
