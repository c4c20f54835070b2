"""``mlplatform schedule add|list|pause|resume|remove|run-due|runs``: cron schedules kept in the store (SPEC S9.3)."""

from __future__ import annotations

from typing import Any

import typer

from mlplatform.cli._output import JsonOption, client, emit, expected_errors, print_table
from mlplatform.scheduler import add_schedule, set_paused
from mlplatform.scheduler import run_due as tick

app = typer.Typer(help="Schedules: cron jobs (monitor, retrain, batch) run by the scheduler.", no_args_is_help=True)
NameArgument = typer.Argument(..., help="Schedule name.")
COLUMNS = ["name", "kind", "cron", "status", "last_run_at", "last_status", "next_run_at", "consecutive_failures",
           "command"]


def _row(schedule: Any) -> dict[str, Any]:
    return {"name": schedule.name, "kind": schedule.kind, "cron": schedule.cron, "status": schedule.status,
            "last_run_at": schedule.last_run_at, "last_status": schedule.last_status,
            "last_error": schedule.last_error, "next_run_at": schedule.next_run_at,
            "consecutive_failures": schedule.consecutive_failures, "command": " ".join(schedule.command)}


@app.command()
def add(name: str = NameArgument,
        cron: str = typer.Option(..., "--cron", help="5-field cron expression, UTC (e.g. '0 * * * *')."),
        command: str = typer.Option(..., "--command", help="The mlplatform command line to run, e.g. "
                                    "'monitor check --model churn@champion --last 5000'."),
        kind: str = typer.Option("command", "--kind", help="monitor, retrain, batch or command."),
        timeout_s: float = typer.Option(3600.0, "--timeout", help="Seconds a run may take (and the lease)."),
        due_now: bool = typer.Option(False, "--due-now", help="Make the first run due at once (the next tick "
                                     "runs it), then follow the cron."),
        as_json: bool = JsonOption) -> None:
    """Add a schedule; its first run is the first cron slot from now (or now, with --due-now)."""
    with expected_errors():
        row = _row(add_schedule(client(), name, cron=cron, command=command, kind=kind, timeout_s=timeout_s,
                                 due_now=due_now))
    emit(row, as_json, lambda: print_table([row], COLUMNS, title="schedule added"))


@app.command("list")
def list_(as_json: bool = JsonOption) -> None:
    """Every schedule with its last run, next run and status."""
    with expected_errors():
        rows = [_row(s) for s in client().schedules.list()]
    emit(rows, as_json, lambda: print_table(rows, COLUMNS, title="schedules"))


def _set(name: str, paused: bool, as_json: bool) -> None:
    with expected_errors():
        row = _row(set_paused(client(), name, paused))
    emit(row, as_json, lambda: print_table([row], COLUMNS))


@app.command()
def pause(name: str = NameArgument, as_json: bool = JsonOption) -> None:
    """Pause a schedule (its slots are not run, nor caught up on resume)."""
    _set(name, True, as_json)


@app.command()
def resume(name: str = NameArgument, as_json: bool = JsonOption) -> None:
    """Resume a paused schedule from its next slot."""
    _set(name, False, as_json)


@app.command()
def remove(name: str = NameArgument) -> None:
    """Delete a schedule (its run history stays)."""
    with expected_errors():
        client().schedules.remove(name)
    typer.echo(f"removed schedule {name}")


@app.command("run-due")
def run_due(as_json: bool = JsonOption) -> None:
    """One scheduler tick: run every due schedule (catching up missed slots), then exit. Exit 1 when a run
    failed."""
    with expected_errors():
        outcomes = [o.to_dict() for o in tick(client())]
    emit(outcomes, as_json, lambda: print_table(outcomes, ["schedule", "slot", "status", "error"],
                                                 title=f"{len(outcomes)} slot(s) handled"))
    if any(o["status"] == "failed" for o in outcomes):
        raise typer.Exit(1)


@app.command()
def runs(name: str = typer.Argument(None, help="Only this schedule."),
         limit: int = typer.Option(50, "--limit", min=1), as_json: bool = JsonOption) -> None:
    """Recorded runs, newest slot first: succeeded, failed (with the error) or skipped (with the reason)."""
    with expected_errors():
        rows = [r.to_dict() for r in client().schedules.runs(name, limit=limit)]
    emit(rows, as_json, lambda: print_table(rows, ["schedule_name", "scheduled_for", "status", "owner",
                                                   "started_at", "finished_at", "error"], title="schedule runs"))
