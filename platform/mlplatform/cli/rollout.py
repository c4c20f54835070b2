"""``mlplatform rollout start|status|advance|abort --model NAME``: staged champion -> challenger rollouts.

The state lives in the store; running serving replicas follow it within their poll interval (default 10 s).
"""

from __future__ import annotations

from typing import Any

import typer

from mlplatform.cli._output import JsonOption, client, emit, expected_errors, print_table
from mlplatform.rollouts import control
from mlplatform.rollouts.routing import parse_stages

app = typer.Typer(help="Staged rollout of a challenger: shadow, canary 95/5, 70/30, full (promote).",
                  no_args_is_help=True)
ModelOption = typer.Option(..., "--model", help="Registered model name.")
ReasonOption = typer.Option(None, "--reason", help="Why (kept in the rollout history and the audit log).")


def _actor() -> str:
    # heavy: the SQL store loads only when this command runs, not for --help
    from mlplatform.client import current_actor

    return current_actor()


def _summary(state: Any) -> dict[str, Any]:
    weight = state.challenger_weight
    return {"model": state.model_name, "status": state.status, "stage": state.stage,
            "split": {"champion": 100.0 - weight, "challenger": weight}, "mirror_challenger": state.mirror_challenger,
            "champion_version": state.champion_version, "challenger_version": state.challenger_version,
            "revision": state.revision}


def _print_summary(data: dict[str, Any]) -> None:
    split = data["split"]
    typer.echo(f"{data['model']}: {data['status']} at stage {data['stage']} "
               f"(champion v{data['champion_version']} {split['champion']:g}% / "
               f"challenger v{data['challenger_version']} {split['challenger']:g}%"
               f"{', challenger mirrored' if data['mirror_challenger'] else ''})")


@app.command()
def start(model: str = ModelOption,
          stage: str = typer.Option(None, "--stage", help="First stage (default: the first, shadow)."),
          stages: str = typer.Option(None, "--stages", help="Custom stages, e.g. "
                                     "'shadow:0:mirror,canary:5,gradual:30,full:100' (weight = challenger %)."),
          min_requests: int = typer.Option(None, "--min-requests", help="Requests per variant before deciding."),
          stage_min_seconds: float = typer.Option(None, "--stage-min-seconds", help="Minimum time per stage."),
          max_error_rate: float = typer.Option(None, "--max-error-rate", help="Challenger error rate that "
                                               "rolls back (default 0.01)."),
          auto_advance: bool = typer.Option(True, "--auto-advance/--manual",
                                            help="Let the guard advance stages when the challenger is not worse."),
          replace: bool = typer.Option(False, "--replace", help="Replace an active rollout."),
          as_json: bool = JsonOption) -> None:
    """Start routing between the champion and the challenger aliases."""
    policy: dict[str, Any] = {"auto_advance": auto_advance}
    for key, value in (("min_requests", min_requests), ("stage_min_s", stage_min_seconds),
                       ("max_error_rate", max_error_rate)):
        if value is not None:
            policy[key] = value
    with expected_errors():
        state = control.start(client(), model, stage=stage, stages=parse_stages(stages) if stages else None,
                              policy=policy, actor=_actor(), replace_active=replace)
    data = _summary(state)
    emit(data, as_json, lambda: _print_summary(data))


@app.command()
def status(model: str = ModelOption, as_json: bool = JsonOption) -> None:
    """Stage, split, per-version requests, error rates and p50/p99 latencies (window of the serving replicas)."""
    with expected_errors():
        data = control.status(client(), model)

    def render() -> None:
        _print_summary(data)
        rows = [{"version": v, "roles": s["roles"], "requests": s["requests"], "errors": s["errors"],
                 "error_rate": s["error_rate"], "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"],
                 "total_requests": s["total_requests"]} for v, s in sorted(data["versions"].items())]
        print_table(rows, ["version", "roles", "requests", "errors", "error_rate", "p50_ms", "p99_ms",
                           "total_requests"], title=f"window per version ({len(data['replicas'])} replicas)")
        typer.echo(f"rollbacks: {data['rollbacks']}")
        if data["last_rollback"]:
            typer.echo(f"last rollback: {data['last_rollback']['reason']} at {data['last_rollback']['time']}")

    emit(data, as_json, render)


@app.command()
def advance(model: str = ModelOption, reason: str = ReasonOption, as_json: bool = JsonOption) -> None:
    """Move to the next stage now; the last stage promotes the challenger to champion."""
    with expected_errors():
        state = control.advance(client(), model, actor=_actor(), reason=reason or "manual advance")
    data = _summary(state)
    emit(data, as_json, lambda: _print_summary(data))


@app.command()
def abort(model: str = ModelOption, reason: str = ReasonOption, as_json: bool = JsonOption) -> None:
    """Stop the rollout: the challenger gets 0 % at once, the champion is untouched."""
    with expected_errors():
        state = control.abort(client(), model, actor=_actor(), reason=reason or "aborted by operator")
    data = _summary(state)
    emit(data, as_json, lambda: _print_summary(data))
