"""Entry point of the ``mlplatform`` console script."""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import version as package_version

import typer

from mlplatform.cli._output import client, emit, expected_errors, print_table, reserve_stdout_for_json
from mlplatform.errors import ConfigError, MLPlatformError, exit_code_for
from mlplatform.logs import configure_logging

app = typer.Typer(
    name="mlplatform", help="Train, tune, register, batch-score, serve and monitor tabular models on Ray.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)

# One module per noun; each exposes ``app``.
NOUNS: dict[str, str] = {
    "store": "mlplatform.cli.store",
    "models": "mlplatform.cli.models",
    "runs": "mlplatform.cli.runs",
    "serve": "mlplatform.cli.serve",
    "data": "mlplatform.cli.data",
    "train": "mlplatform.cli.train",
    "tune": "mlplatform.cli.tune",
    "monitor": "mlplatform.cli.monitor",
    "batch": "mlplatform.cli.batch",
    "rollout": "mlplatform.cli.rollout",
    "features": "mlplatform.cli.features",
    "schedule": "mlplatform.cli.schedule",
    "loop": "mlplatform.cli.loop",
}
for noun, module in NOUNS.items():
    app.add_typer(importlib.import_module(module).app, name=noun)
app.command("ui")(importlib.import_module("mlplatform.cli.ui").ui)


@app.command()
def version() -> None:
    """Print the mlplatform version."""
    typer.echo(f"mlplatform {package_version('mlplatform')}")


@app.command("gc")
def gc(keep_last: int = typer.Option(None, "--keep-last", help="Keep the newest N of each series (default: the "
                                     "MLPLATFORM_RETENTION_KEEP_LAST setting)."),
       apply: bool = typer.Option(False, "--apply", help="Delete; without it this is a dry run."),
       as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Remove old checkpoints, trial checkpoints and model artifacts, never a version with an alias, one of the last
    3 champions or one being served. A dry run unless --apply."""
    # heavy: the SQL store loads only when this command runs, not for --help
    from mlplatform import housekeeping
    from mlplatform.client import current_actor

    with expected_errors():
        c = client()
        keep = keep_last if keep_last is not None else c.settings.retention_keep_last
        if keep is None:
            raise ConfigError("retention keeps everything: pass --keep-last N or set MLPLATFORM_RETENTION_KEEP_LAST",
                              field="keep_last")
        items = housekeeping.plan(c, keep)
        if apply:
            housekeeping.apply(c, items, actor=current_actor())
    listed = [i.to_dict() for i in items]
    data = {"applied": apply, "keep_last": keep, "items": listed}

    def render() -> None:
        print_table(listed, ["kind", "target", "uri"],
                    title=("removed" if apply else "would remove (dry run; --apply deletes)") + f": {len(items)}")

    emit(data, as_json, render)


def run() -> None:
    if "--json" in sys.argv[1:]:
        reserve_stdout_for_json()
    try:
        configure_logging()
        app()
    except MLPlatformError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except (ValueError, OSError) as exc:
        # Expected user-side failures that escaped translation (bad paths, unreadable files): one line, no trace.
        error = ConfigError(str(exc))
        typer.echo(f"error: {error}", err=True)
        sys.exit(exit_code_for(error))


if __name__ == "__main__":
    run()
