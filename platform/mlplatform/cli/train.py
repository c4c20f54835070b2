"""``mlplatform train --config FILE [--resume RUN_ID] [--warm-start REF] [--force] [--json]``.

The same code path as ``train_jobs/train.py`` (:mod:`mlplatform.training.pipeline`). A failed promotion gate
exits with code 3 and records the reasons on the run.
"""

from __future__ import annotations

from pathlib import Path

import typer

from mlplatform.cli._output import JsonOption, client, emit, expected_errors, print_table
from mlplatform.errors import InvalidInput

app = typer.Typer(help="Train a model from a YAML config on Ray (torch) or on the driver (sklearn).")


@app.callback(invoke_without_command=True)
def train(
    config: Path = typer.Option(None, "--config", "-c", help="Training config (train_jobs/configs/*.yaml)."),
    resume: str = typer.Option(None, "--resume", help="Continue a stopped run from its latest checkpoint."),
    warm_start: str = typer.Option(None, "--warm-start", help="Initialise from name@alias or name:version."),
    force: bool = typer.Option(False, "--force", help="Register even when the promotion gate fails, and train on "
                               "the rows that pass when the data fails validation (both recorded in lineage)."),
    as_json: bool = JsonOption,
) -> None:
    """Train, evaluate against baselines, gate and register."""
    # heavy: scikit-learn loads only when this command runs, not for --help
    from mlplatform.training import pipeline

    with expected_errors():
        if (config is None) == (resume is None):
            raise InvalidInput("give exactly one of --config FILE or --resume RUN_ID", field="config")
        if resume is not None:
            if warm_start is not None:
                raise InvalidInput("--warm-start cannot change a resumed run", field="warm_start")
            outcome = pipeline.resume(resume, client=client(), force=force)
        else:
            outcome = pipeline.train_from_file(config, client=client(), warm_start=warm_start, force=force)
    data = outcome.to_dict()

    def render() -> None:
        rows = [{"field": k, "value": data[k]} for k in ("run_id", "status", "model_version", "alias", "parent",
                                                         "epochs", "best_epoch", "stopped_early", "restores")]
        rows += [{"field": f"test.{k}", "value": v} for k, v in sorted(outcome.test_metrics.items())]
        rows += [{"field": f"baseline.{f}.{outcome.gate.get('metric')}", "value": m.get(outcome.gate.get("metric"))}
                 for f, m in sorted(outcome.baselines.items())]
        print_table(rows, ["field", "value"], title="training run")

    emit(data, as_json, render)
