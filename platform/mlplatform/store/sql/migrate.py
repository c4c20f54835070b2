"""Alembic wiring: upgrade to head, report the current revision, refuse a stale schema with the fix to run."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from mlplatform.errors import Unavailable

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Upgrade to head; returns (before, after). Running it at head changes nothing."""
    before = current_revision(engine)
    if before != head_revision():
        command.upgrade(alembic_config(engine), "head")
    return before, head_revision()


def is_empty(engine: Engine) -> bool:
    return not sa.inspect(engine).get_table_names()


def ensure_schema(engine: Engine, display_url: str, *, auto_init: bool = True) -> None:
    """Create the schema in an empty database; refuse to run against an older one."""
    try:
        current = current_revision(engine)
    except Exception as exc:
        raise Unavailable(f"store at {display_url} is unreachable: {str(exc).splitlines()[0]}") from exc
    head = head_revision()
    if current == head:
        return
    if current is None and auto_init and is_empty(engine):
        upgrade(engine)
        return
    raise Unavailable(
        f"store at {display_url} has schema {current or 'none'}, this version needs {head}; "
        "run `mlplatform store upgrade`"
    )
