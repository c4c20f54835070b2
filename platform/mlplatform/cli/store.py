"""``mlplatform store init|upgrade|info``."""

from __future__ import annotations

import typer

from mlplatform.cli._output import JsonOption, emit, expected_errors, print_table
from mlplatform.errors import Unavailable
from mlplatform.settings import get_settings

app = typer.Typer(help="The evaluation store: create and migrate its schema.", no_args_is_help=True)


def _upgrade(as_json: bool) -> None:
    # heavy: the SQL store loads only when this command runs, not for --help
    from mlplatform.store.sql import migrate
    from mlplatform.store.sql.session import create_store_engine

    with expected_errors():
        settings = get_settings()
        engine = create_store_engine(settings.resolved_store_url(), busy_timeout_s=settings.store_busy_timeout_s)
        try:
            before, after = migrate.upgrade(engine)
        except Exception as exc:
            raise Unavailable(f"store at {settings.display_store_url()} cannot be migrated: "
                              f"{str(exc).splitlines()[0]}") from exc
        finally:
            engine.dispose()
    data = {"store_url": settings.display_store_url(), "from_revision": before, "to_revision": after,
            "changed": before != after}
    emit(data, as_json, lambda: typer.echo(
        f"store {data['store_url']}: " + (f"upgraded {before or 'empty'} -> {after}" if data["changed"]
                                          else f"already at {after}, nothing to do")))


@app.command()
def init(as_json: bool = JsonOption) -> None:
    """Create the schema in an empty store (same as upgrade)."""
    _upgrade(as_json)


@app.command()
def upgrade(as_json: bool = JsonOption) -> None:
    """Migrate the store to the current schema; running it twice changes nothing."""
    _upgrade(as_json)


@app.command()
def info(as_json: bool = JsonOption) -> None:
    """Where the store and artifacts live, and the schema revision."""
    # heavy: the SQL store loads only when this command runs, not for --help
    from mlplatform.store.sql import migrate
    from mlplatform.store.sql.session import create_store_engine

    with expected_errors():
        settings = get_settings()
        engine = create_store_engine(settings.resolved_store_url(), busy_timeout_s=settings.store_busy_timeout_s)
        try:
            revision = migrate.current_revision(engine)
        except Exception as exc:
            raise Unavailable(f"store at {settings.display_store_url()} is unreachable") from exc
        finally:
            engine.dispose()
    data = {"home": str(settings.home), "store_url": settings.display_store_url(),
            "artifact_uri": settings.resolved_artifact_uri(), "revision": revision,
            "head": migrate.head_revision()}
    emit(data, as_json, lambda: print_table([{"key": k, "value": v} for k, v in data.items()], ["key", "value"]))
