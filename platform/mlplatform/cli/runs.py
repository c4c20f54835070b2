"""``mlplatform runs list|show|compare|best|replay|gc``."""

from __future__ import annotations

import typer

from mlplatform.cli._output import JsonOption, client, emit, expected_errors, print_table
from mlplatform.errors import GateFailed, InvalidInput
from mlplatform.training.replay import replay as run_replay

app = typer.Typer(help="Runs and their metrics in the evaluation store.", no_args_is_help=True)


@app.command("list")
def list_runs(experiment: str = typer.Option(None, "--experiment"), kind: str = typer.Option(None, "--kind"),
              status: str = typer.Option(None, "--status"), limit: int = typer.Option(50, "--limit"),
              as_json: bool = JsonOption) -> None:
    """Newest runs first."""
    with expected_errors():
        try:
            runs = client().runs.list_runs(experiment=experiment, kind=kind, status=status, limit=limit)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="kind" if kind else "status") from None
    data = [r.to_dict() for r in runs]
    emit(data, as_json, lambda: print_table(data, ["id", "kind", "status", "name", "created_at", "ended_at"],
                                            title="runs"))


@app.command()
def show(run_id: str, as_json: bool = JsonOption) -> None:
    """A run with its config and the last value of each metric."""
    with expected_errors():
        store = client().runs
        run = store.get_run(run_id)
        metrics = store.latest_metrics(run_id)
        datasets = client().datasets.for_run(run_id)
    data = run.to_dict() | {"metrics": metrics,
                            "datasets": [{"role": role, "name": d.name, "version": d.version} for role, d in datasets]}
    emit(data, as_json, lambda: print_table(
        [{"field": k, "value": data[k]} for k in ("id", "kind", "status", "name", "parent_run_id", "seed",
                                                   "created_at", "ended_at", "error")]
        + [{"field": f"metrics.{k}", "value": v} for k, v in sorted(metrics.items())],
        ["field", "value"], title=f"run {run_id}"))


@app.command()
def compare(run_ids: list[str], as_json: bool = JsonOption) -> None:
    """Params and metrics of several runs side by side; unknown ids are listed."""
    with expected_errors():
        rows, unknown = client().runs.compare(run_ids)
    data = {"runs": rows, "unknown": unknown}

    def render() -> None:
        columns = ["run_id", *sorted({k for r in rows for k in r if k != "run_id"})]
        print_table(rows, columns)
        if unknown:
            typer.echo(f"unknown run ids: {', '.join(unknown)}", err=True)

    emit(data, as_json, render)


@app.command()
def best(metric: str, mode: str = typer.Option(None, "--mode"), experiment: str = typer.Option(None, "--experiment"),
         dataset_version: str = typer.Option(None, "--dataset-version"), split: str = typer.Option(None, "--split"),
         as_json: bool = JsonOption) -> None:
    """The best run by one metric (missing values are skipped, never read as 0)."""
    # heavy: scikit-learn loads only when this command runs, not for --help
    from mlplatform.learning.metrics import metric_mode

    with expected_errors():
        run, value = client().runs.best_run(metric, mode or metric_mode(metric), experiment=experiment,
                                            dataset_version=dataset_version, split=split)
    data = {"run_id": run.id, "metric": metric, "value": value, "kind": run.kind}
    emit(data, as_json, lambda: typer.echo(f"{run.id} {metric}={value:.4f}"))


@app.command()
def replay(run_id: str, as_json: bool = JsonOption) -> None:
    """Re-run a training run from its stored config, seed and dataset version (hash verified) and compare every
    test metric; exits 3 when they do not match (exactly on CPU sklearn / single-worker runs, else within 0.01)."""
    with expected_errors():
        report = run_replay(run_id, client=client())
    data = report.to_dict()

    def render() -> None:
        print_table([{"metric": m.name, "original": m.original, "replay": m.replay, "ok": m.ok}
                     for m in report.metrics], ["metric", "original", "replay", "ok"],
                    title=f"replay {report.replay_run_id} of run {run_id} ({report.tolerance['mode']})")
        for warning in report.warnings:
            typer.echo(f"warning: {warning}", err=True)

    emit(data, as_json, render)
    if not report.match:
        with expected_errors():
            raise GateFailed(f"replay {report.replay_run_id} of run {run_id} does not match: "
                             f"{', '.join(m.name for m in report.mismatches)}", field="metrics",
                             run_id=report.replay_run_id)


@app.command()
def gc(older_than: int = typer.Option(None, "--older-than", help="Seconds without a heartbeat (default: the "
                                      "MLPLATFORM_STALE_RUN_SECONDS setting, 600)."),
       as_json: bool = JsonOption) -> None:
    """Fail running runs whose heartbeat is stale: their process crashed or was killed, so nothing will end them."""
    with expected_errors():
        c = client()
        seconds = older_than if older_than is not None else c.settings.stale_run_seconds
        if seconds < 1:
            raise InvalidInput("--older-than must be at least 1 second", field="older_than")
        failed = c.runs.fail_stale(seconds)
    data = {"failed": failed, "older_than_s": seconds}
    emit(data, as_json, lambda: typer.echo(f"failed {len(failed)} stale run(s)"
                                           + "".join(f"\n  {run_id}" for run_id in failed)))
