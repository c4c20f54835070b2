"""``mlplatform loop run|status``: the automatic loop (monitor -> decide -> retrain job -> gate -> rollout) and its
decisions. ``loop run`` is what a schedule runs; ``loop status`` shows the timeline with the reasons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mlplatform.cli._output import JsonOption, client, emit, expected_errors, print_table

app = typer.Typer(help="The automatic loop: checks, decisions, retrain jobs and rollouts.", no_args_is_help=True)
COLUMNS = ["at", "trigger", "action", "status", "champion", "challenger", "job_id", "reason"]


def _line(row: dict[str, Any]) -> str:
    return (f"{row['at'][:19]}  {row['status']:<12} {row['trigger'] or '-':<16} "
            f"v{row['champion']} -> {('v' + str(row['challenger'])) if row['challenger'] else '-'}  "
            f"{row['reason'] or ''}")


def _print_timeline(rows: list[dict[str, Any]]) -> None:
    if not rows:
        typer.echo("no decisions yet")
    for row in rows:
        typer.echo(_line(row) + (f"  [job {row['job_id']}]" if row["job_id"] else ""))
        for step in row["timeline"]:
            extra = {k: v for k, v in step.items() if k not in ("at", "step") and v not in (None, "", {})}
            details = ", ".join(f"{k}={v}" for k, v in extra.items() if k not in ("gate", "metrics", "log_tail"))
            typer.echo(f"    {step['at'][11:19]}  {step['step']}" + (f": {details}" if details else ""))


@app.command()
def run(config: Path = typer.Option(..., "--config", help="Loop YAML: the models, their data sources, training "
                                    "configs, guards and rollout policy."),
        wait: bool = typer.Option(None, "--wait/--no-wait", help="Wait for a retrain job in this tick (default: "
                                  "the config's `wait`)."),
        as_json: bool = JsonOption) -> None:
    """One tick of the loop over every model of the config; prints the decisions and their reasons. Exit 1 when a
    decision failed."""
    # heavy: scikit-learn loads only when this command runs, not for --help
    from mlplatform.loop import load_loop_config, status_rows, tick

    with expected_errors():
        c = client()
        decisions = tick(c, load_loop_config(config), wait=wait)
        rows = [next(r for r in status_rows(c, d.model_name, limit=20) if r["id"] == d.id) for d in decisions]
    emit(rows, as_json, lambda: _print_timeline(rows))
    if any(r["status"] == "failed" for r in rows):
        raise typer.Exit(1)


@app.command()
def status(model: str = typer.Option(..., "--model", help="Registered model name."),
           limit: int = typer.Option(20, "--limit", min=1, help="Newest decisions to show."),
           as_json: bool = JsonOption) -> None:
    """The loop's decisions for a model, newest first: what fired, the numbers, the job, the outcome and every
    step with its time."""
    # heavy: scikit-learn loads only when this command runs, not for --help
    from mlplatform.loop import status_rows

    with expected_errors():
        rows = status_rows(client(), model, limit=limit)

    def render() -> None:
        print_table(rows, COLUMNS, title=f"loop decisions of {model}")
        _print_timeline(rows)

    emit(rows, as_json, render)
