"""``mlplatform tune --config FILE | --resume EXPERIMENT | --leaderboard EXPERIMENT [--register-best] [--json]``.

The same code path as ``train_jobs/tune.py`` (:mod:`mlplatform.tuning.runner`). Every trial lands in the store
as a child run of the sweep run; the leaderboard is read back from the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mlplatform.cli._output import JsonOption, client, emit, expected_errors, print_table
from mlplatform.errors import InvalidInput
from mlplatform.tuning import results, runner

app = typer.Typer(help="Search model families, preprocessing and rebalancing on Ray Tune.")


@app.callback(invoke_without_command=True)
def tune(
    config: Path = typer.Option(None, "--config", "-c", help="Search config (tune_configs/*.yaml)."),
    resume: str = typer.Option(None, "--resume", help="Continue a stopped search (sweep run id or Tune name)."),
    show: str = typer.Option(None, "--leaderboard", help="Show the leaderboard of a finished search."),
    register_best: bool = typer.Option(False, "--register-best", help="Retrain the best config on train + "
                                       "validation, score on test, gate and register it."),
    warm_start_from: list[str] = typer.Option(None, "--warm-start-from", help="Seed the search with the best "
                                              "configs of an earlier search (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Register even when the promotion gate fails."),
    as_json: bool = JsonOption,
) -> None:
    """Run a search, resume one, or show its leaderboard."""
    with expected_errors():
        if sum(x is not None for x in (config, resume, show)) != 1:
            raise InvalidInput("give exactly one of --config FILE, --resume EXPERIMENT or --leaderboard "
                               "EXPERIMENT", field="config")
        if show is not None:
            sweep = results.find_sweep(client(), show)
            registered = results.register_best_trial(client(), sweep.id, force=force) if register_best else None
            data: dict[str, Any] = {"sweep_run_id": sweep.id, "status": sweep.status,
                                    "leaderboard": results.leaderboard(client(), sweep.id), "registered": registered}
        elif resume is not None:
            if warm_start_from:
                raise InvalidInput("--warm-start-from cannot change a resumed search", field="warm_start_from")
            data = runner.resume_search(resume, client=client(), register_best=register_best,
                                        force=force).to_dict()
        else:
            data = runner.search_from_file(config, client=client(), warm_start_from=list(warm_start_from or []),
                                           register_best=register_best, force=force).to_dict()
    emit(_summary(data), as_json, lambda: _render(data))


def _summary(data: dict[str, Any]) -> dict[str, Any]:
    """The JSON output: trials without their full configs except for the bests."""
    board = dict(data.get("leaderboard") or {})
    board["trials"] = [{k: v for k, v in t.items() if k != "config"} for t in board.get("trials", [])]
    return {**data, "leaderboard": board}


def _render(data: dict[str, Any]) -> None:
    board = data.get("leaderboard") or {}
    metric = board.get("metric", "score")
    columns = ["rank", "pattern", "score", "lift", "status", "best_step", "run_id"]
    rows = [{**r, "score": r.get("score"), "lift": r.get("lift")} for r in board.get("per_pattern", [])]
    print_table(rows, columns, title=f"best trial per pattern ({metric}, {board.get('mode')}, validation)")
    best = board.get("overall_best") or {}
    summary: list[dict[str, Any]] = [{"field": "sweep_run_id", "value": data.get("sweep_run_id")},
               {"field": "status", "value": data.get("status")},
               {"field": "split_id", "value": board.get("split_id")},
               {"field": "trials", "value": ", ".join(f"{k}={v}" for k, v in sorted(board.get("counts", {}).items()))},
               {"field": "best pattern", "value": best.get("pattern")},
               {"field": f"best {metric}", "value": best.get("score")},
               {"field": "best config", "value": _short(best.get("config"))}]
    registered = data.get("registered")
    if registered:
        summary += [{"field": "registered", "value": f"{registered['model_version']} ({registered['alias']})"}]
        summary += [{"field": f"test.{k}", "value": v} for k, v in sorted(registered["test_metrics"].items())]
    print_table(summary, ["field", "value"], title="search")


def _short(config: dict[str, Any] | None) -> str | None:
    if not config:
        return None
    parts = [f"{k}={v}" for section in ("params", "training", "preprocessing")
             for k, v in (config.get(section) or {}).items()]
    return f"{config.get('pattern')}: " + ", ".join([*parts, f"rebalancing={config.get('rebalancing')}"])
