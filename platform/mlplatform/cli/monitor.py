"""``mlplatform monitor check|status|report|retrain|replay``: drift and live-quality checks, current levels, HTML
reports, the guarded retraining loop and offline replay of logged requests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from mlplatform.cli._output import JsonOption, client, emit, expected_errors, print_table
from mlplatform.config.monitor import load_monitor_config
from mlplatform.entities import AlertLevel
from mlplatform.errors import InvalidInput
from mlplatform.monitoring.replay import run_replay
from mlplatform.monitoring.retrain import find_trigger

app = typer.Typer(help="Monitoring: drift, live metrics, alert levels and reports.", no_args_is_help=True)
ModelOption = typer.Option(..., "--model", help="name, name:version or name@alias")
WindowFileOption = typer.Option(None, "--window-file", help="A Parquet file of feature rows as the window.")
LastOption = typer.Option(None, "--last", min=1, help="The last N logged predictions as the window.")
ConfigOption = typer.Option(None, "--config", help="Monitor config YAML (sinks, routing, thresholds).")


def _window_args(window_file: Path | None, last: int | None) -> None:
    if window_file is not None and last is not None:
        raise InvalidInput("give either --window-file or --last, not both", field="window")


@app.command()
def check(model: str = ModelOption, window_file: Path = WindowFileOption, last: int = LastOption,
          config: Path = ConfigOption, as_json: bool = JsonOption) -> None:
    """Check one model version on a window; store the drift report and alerts, notify the sinks."""
    # heavy: scikit-learn loads only when this command runs, not for --help
    from mlplatform.monitoring.check import run_check

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
    # heavy: scikit-learn loads only when this command runs, not for --help
    from mlplatform.monitoring.estimation import performance_rows

    performance = performance_rows(data.get("evaluation") or {})
    if performance:
        print_table(performance, ["metric", "realized", "estimated"],
                    title="performance: realized (labels) and estimated (CBPE, no labels; blind to concept drift)")
    if data["alerts"]:
        print_table(data["alerts"], ["type", "metric", "level", "value", "threshold", "message"], title="alerts")
    typer.echo(f"level: {data['level']}")
    if data["retrain"] and data["retrain"]["reasons"]:
        state = "recommended" if data["retrain"]["recommend"] else f"held ({data['retrain']['blocked_by']})"
        typer.echo(f"retraining {state}: {'; '.join(data['retrain']['reasons'])}")


@app.command()
def status(as_json: bool = JsonOption) -> None:
    """The current level per model version: the highest open alert (GREEN when none)."""
    # heavy: the web stack loads only when this command runs, not for --help
    from mlplatform.monitoring.alerts import current_levels

    with expected_errors():
        store = client().monitoring
        levels = current_levels(store)
        rows = []
        for registered in client().registry.list_models():
            versions = sorted({v for (name, v) in levels if name == registered.name and v is not None})
            champion = registered.aliases.get("champion")
            # a model with no version yet still gets its row (version None)
            shown: list[int | None] = [*versions] or [champion or registered.latest_version]
            for version in shown:
                level = levels.get((registered.name, version), AlertLevel.GREEN)
                open_alerts = [a for a in store.alerts(registered.name, status="open", limit=10_000)
                               if a.version == version and a.level != AlertLevel.GREEN.name]
                last = store.drift_reports(registered.name, limit=1)
                evaluation = (last[0].summary.get("evaluation") or {}) if last else {}
                rows.append({"model": registered.name, "version": version, "level": level.name,
                             "open_alerts": len(open_alerts),
                             "aliases": [a for a, v in registered.aliases.items() if v == version],
                             "last_check": last[0].created_at if last else None,
                             "accuracy": (evaluation.get("metrics") or {}).get("accuracy"),
                             "estimated_accuracy": (evaluation.get("estimated") or {}).get("accuracy")})
    emit(rows, as_json, lambda: print_table(rows, ["model", "version", "aliases", "level", "open_alerts",
                                                   "accuracy", "estimated_accuracy", "last_check"],
                                            title="monitoring status"))


@app.command()
def report(model: str = ModelOption, window_file: Path = WindowFileOption, last: int = LastOption,
           out: Path = typer.Option(None, "--out", help="Directory (default MLPLATFORM_HOME/reports)."),
           config: Path = ConfigOption, as_json: bool = JsonOption) -> None:
    """Write a self-contained HTML report (+ JSON) and print its path. Stores nothing and notifies no one."""
    # heavy: scikit-learn loads only when this command runs, not for --help
    from mlplatform.monitoring.check import run_check
    from mlplatform.monitoring.report import write_report

    with expected_errors():
        _window_args(window_file, last)
        monitor_config = load_monitor_config(config)
        c = client()
        result = run_check(c, model, config=monitor_config, window_file=window_file, last_n=last, record=False)
        out_dir = out or Path(monitor_config.report_dir or c.settings.home / "reports")
        html_path, json_path = write_report(result.to_dict(), out_dir,
                                            history=c.monitoring.drift_reports(result.model_name),
                                            alerts=c.monitoring.alerts(result.model_name),
                                            decisions=c.loop.list(result.model_name, limit=20))
    emit({"html": str(html_path), "json": str(json_path), "level": result.level.name}, as_json,
         lambda: typer.echo(str(html_path)))


_RETRAIN_EXIT = {"completed": 0, "skipped": 0, "refused": 5, "rejected": 3, "failed": 1, "infrastructure_failed": 1}


@app.command()
def retrain(model: str = typer.Option(..., "--model", help="Registered model name."),
            train_config: Path = typer.Option(..., "--config", help="Training YAML (train_jobs/configs/*.yaml)."),
            window_file: Path = typer.Option(None, "--window-file", help="The newest labelled data window "
                                             "(Parquet/CSV); replaces the config's data."),
            only_on_alert: bool = typer.Option(False, "--only-on-alert", help="Retrain only when an open RED "
                                               "drift or decay alert calls for it."),
            rollout: bool = typer.Option(True, "--rollout/--no-rollout", help="Start a shadow rollout of the "
                                         "new challenger."),
            monitor_config: Path = typer.Option(None, "--monitor-config", help="Monitor config YAML (guards, "
                                                "sinks)."),
            as_json: bool = JsonOption) -> None:
    """Retrain on the newest window from the champion; a winner becomes the challenger in shadow. Guarded:
    never while one runs, >= 6 h apart, <= 2 per UTC day. Exit 0 done/skipped, 3 lost to the champion,
    5 refused by a guard, 1 failed."""
    # heavy: scikit-learn loads only when this command runs, not for --help
    from mlplatform.loop import RetrainResult, run_retrain

    with expected_errors():
        c = client()
        champion = c.registry.resolve(f"{model}@champion")
        trigger, alert = find_trigger(c, model, champion.version)
        if trigger is None and only_on_alert:
            result = RetrainResult(model, "skipped", "none", reason="no open RED drift or decay alert")
        else:
            result = run_retrain(c, model, train_config, trigger=trigger or "manual",
                                 alert_id=alert.id if alert else None, window_file=window_file,
                                 monitor_config=load_monitor_config(monitor_config), start_rollout=rollout,
                                 actor="cli")
    data = result.to_dict()
    emit(data, as_json, lambda: typer.echo(
        f"retrain {data['status']}: {data['challenger'] or '-'} (trigger {data['trigger']}, parent "
        f"{data['parent'] or '-'}, run {data['run_id'] or '-'})" + (f": {data['reason']}" if data["reason"] else "")))
    if _RETRAIN_EXIT[result.status]:
        raise typer.Exit(_RETRAIN_EXIT[result.status])


def _instant(value: str | None, option: str) -> Any:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{option} {value!r} is not an ISO-8601 time", field=option.lstrip("-")) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command()
def replay(model: str = ModelOption,
           candidate: str = typer.Option(..., "--candidate", help="The version to replay the requests through."),
           start: str = typer.Option(None, "--start", help="ISO time; requests logged at or after it."),
           end: str = typer.Option(None, "--end", help="ISO time; requests logged before it."),
           as_json: bool = JsonOption) -> None:
    """Re-score the requests MODEL answered with CANDIDATE, offline; compare the answers. Stores one replay run,
    nothing else."""
    with expected_errors():
        summary = run_replay(client(), model, candidate, start=_instant(start, "--start"),
                             end=_instant(end, "--end"))

    def render() -> None:
        typer.echo(f"{summary['candidate']} vs logged {summary['model']}: n={summary['n']} agreement "
                   f"{summary['agreement_rate']} ({summary['disagreements']} differ)")
        if summary["score_diff"]:
            d = summary["score_diff"]
            typer.echo(f"confidence diff: max {d['max']:.3g} mean {d['mean']:.3g}, {d['above_tolerance']} > "
                       f"{d['tolerance']:g}")
        lab = summary["labelled"]
        typer.echo(f"labelled rows {lab['n']}: logged accuracy {lab['logged_accuracy']}, candidate "
                   f"{lab['candidate_accuracy']}; run {summary.get('run_id')}")

    emit(summary, as_json, render)
