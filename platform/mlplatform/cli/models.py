"""``mlplatform models list|show|register|alias|promote|rollback|archive|leaderboard|history``."""

from __future__ import annotations

from pathlib import Path

import typer

from mlplatform.cli._output import JsonOption, client, emit, expected_errors, print_table
from mlplatform.errors import InvalidInput
from mlplatform.lineage_diff import diff_versions, summarize

app = typer.Typer(help="The model registry: versions, aliases, promotion and rollback.", no_args_is_help=True)
ReasonOption = typer.Option(None, "--reason", help="Why; recorded in the alias history and audit log.")


def _version_row(v: object) -> dict[str, object]:
    data = v.to_dict()  # type: ignore[attr-defined]
    return {k: data[k] for k in ("model_name", "version", "status", "aliases", "framework", "artifact_sha256",
                                  "created_at")} | {"metrics": data["metrics"]}


@app.command("list")
def list_models(as_json: bool = JsonOption) -> None:
    """Registered models with their aliases."""
    with expected_errors():
        models = client().registry.list_models()
    data = [m.to_dict() for m in models]
    emit(data, as_json, lambda: print_table(
        [{"name": m.name, "task": m.task, "latest": m.latest_version,
          "aliases": ", ".join(f"{a}={v}" for a, v in sorted(m.aliases.items()))} for m in models],
        ["name", "task", "latest", "aliases"], title="models"))


@app.command()
def show(ref: str = typer.Argument(..., help="name, name:version or name@alias"), as_json: bool = JsonOption,
         versions: bool = typer.Option(False, "--versions", help="List every version of the model.")) -> None:
    """One version (default: the champion), or all versions with --versions."""
    with expected_errors():
        registry = client().registry
        if versions:
            rows = [_version_row(v) for v in registry.list_versions(ref.split("@")[0].split(":")[0])]
            emit(rows, as_json, lambda: print_table(rows, ["version", "status", "aliases", "framework",
                                                            "created_at"], title=ref))
            return
        version = registry.resolve(ref)
    data = version.to_dict()
    emit(data, as_json, lambda: print_table(
        [{"field": k, "value": data[k]} for k in ("model_name", "version", "status", "aliases", "framework",
                                                   "artifact_uri", "artifact_sha256", "source_run_id",
                                                   "parent_version", "created_at")]
        + [{"field": f"metrics.{k}", "value": v} for k, v in sorted(data["metrics"].items())],
        ["field", "value"], title=version.ref))


@app.command()
def register(name: str, artifact_dir: Path = typer.Argument(..., help="A model artifact directory."),
             alias: str = typer.Option(None, "--alias", help="Point this alias at the new version."),
             parent: str = typer.Option(None, "--parent", help="Parent version (warm starts)."),
             as_json: bool = JsonOption) -> None:
    """Register an artifact directory as the next version (files are copied and their SHA-256 recorded)."""
    with expected_errors():
        version = client().registry.register(name, artifact_dir, alias=alias, parent=parent)
    emit(_version_row(version), as_json, lambda: typer.echo(f"registered {version.ref} ({version.status})"))


@app.command("alias")
def set_alias(ref: str = typer.Argument(..., help="name:version"), alias: str = typer.Argument(...),
              reason: str = ReasonOption, as_json: bool = JsonOption) -> None:
    """Point an alias (champion, challenger, shadow or any name) at a version."""
    # heavy: the SQL store loads only when this command runs, not for --help
    from mlplatform.client import current_actor, parse_model_ref

    with expected_errors():
        name, number, _ = parse_model_ref(ref)
        if number is None:
            raise InvalidInput("give the version as name:version", field="version")
        version = client().registry.set_alias(name, alias, number, actor=current_actor(), reason=reason)
    emit(_version_row(version), as_json, lambda: typer.echo(f"{name}@{alias} -> {version.version}"))


@app.command()
def promote(name: str, reason: str = ReasonOption, as_json: bool = JsonOption) -> None:
    """The challenger becomes champion; the old champion stays restorable."""
    # heavy: the SQL store loads only when this command runs, not for --help
    from mlplatform.client import current_actor

    with expected_errors():
        version = client().registry.promote(name, actor=current_actor(), reason=reason)
    emit(_version_row(version), as_json, lambda: typer.echo(f"{name}@champion -> {version.version}"))


@app.command()
def rollback(name: str, reason: str = ReasonOption, as_json: bool = JsonOption) -> None:
    """Restore the previous champion from the alias history."""
    # heavy: the SQL store loads only when this command runs, not for --help
    from mlplatform.client import current_actor

    with expected_errors():
        version = client().registry.rollback(name, actor=current_actor(), reason=reason)
    emit(_version_row(version), as_json, lambda: typer.echo(f"{name}@champion -> {version.version} (rolled back)"))


@app.command()
def archive(ref: str = typer.Argument(..., help="name:version"), reason: str = ReasonOption,
            as_json: bool = JsonOption) -> None:
    """Retire a version: it loses its aliases and cannot be served."""
    # heavy: the SQL store loads only when this command runs, not for --help
    from mlplatform.client import current_actor, parse_model_ref

    with expected_errors():
        name, number, _ = parse_model_ref(ref)
        if number is None:
            raise InvalidInput("give the version as name:version", field="version")
        version = client().registry.archive(name, number, actor=current_actor(), reason=reason)
    emit(_version_row(version), as_json, lambda: typer.echo(f"archived {version.ref}"))


@app.command()
def history(name: str, alias: str = typer.Option(None, "--alias"), as_json: bool = JsonOption) -> None:
    """Alias moves, oldest first."""
    with expected_errors():
        changes = client().registry.alias_history(name, alias)
    data = [c.to_dict() for c in changes]
    emit(data, as_json, lambda: print_table(data, ["created_at", "alias", "from_version", "to_version", "actor",
                                                   "reason"], title=f"{name} alias history"))


@app.command()
def leaderboard(name: str, metric: str = typer.Option("accuracy", "--metric"),
                dataset_version: str = typer.Option(None, "--dataset-version"),
                mode: str = typer.Option(None, "--mode", help="max or min (default from the metric)"),
                as_json: bool = JsonOption) -> None:
    """Versions ranked on one metric of one dataset version."""
    # heavy: scikit-learn loads only when this command runs, not for --help
    from mlplatform.learning.metrics import metric_mode

    with expected_errors():
        rows = client().registry.leaderboard(name, metric, dataset_version=dataset_version,
                                             mode=mode or metric_mode(metric))
    emit(rows, as_json, lambda: print_table(rows, ["rank", "version", "status", "aliases", "value",
                                                   "dataset_version", "n"], title=f"{name} by {metric}"))


lineage_app = typer.Typer(help="What a version was built from: data, code, environment, config, parent.",
                          no_args_is_help=True)
app.add_typer(lineage_app, name="lineage")


@lineage_app.command("show")
def lineage_show(ref: str, as_json: bool = JsonOption) -> None:
    """The lineage recorded at registration (captured automatically)."""
    with expected_errors():
        version = client().registry.resolve(ref)
    data = {"model": version.ref, "parent_version": version.parent_version, "source_run_id": version.source_run_id,
            "artifact_sha256": version.artifact_sha256, "lineage": version.lineage}
    emit(data, as_json, lambda: print_table([{"field": k, "value": v} for k, v in summarize(version).items()],
                                            ["field", "value"], title=f"lineage of {version.ref}"))


@lineage_app.command("diff")
def lineage_diff(old: str, new: str, as_json: bool = JsonOption) -> None:
    """Compare the data, code, environment, config and features of two versions."""
    with expected_errors():
        registry = client().registry
        changes = diff_versions(registry.resolve(old), registry.resolve(new))
    emit(changes, as_json, lambda: print_table(changes, ["section", "key", "old", "new"],
                                               title=f"{old} -> {new}") if changes else typer.echo("no differences"))
