"""Alembic wiring: upgrade to head, report the current revision, refuse a stale schema with the fix to run."""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from mlplatform.errors import Unavailable
from mlplatform.store.sql.session import writer

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


# Any constant works; it names "mlplatform schema migration" among the advisory locks of one PostgreSQL database.
_PG_MIGRATION_LOCK = 0x6D6C706C6174


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """One migrating process at a time per store: two processes starting on a fresh store both saw it empty and both
    ran CREATE TABLE (the second failed with a unique violation on PostgreSQL)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_MIGRATION_LOCK})
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a+b") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Upgrade to head; returns (before, after). Running it at head changes nothing; concurrent callers take turns
    and the later ones find the schema at head."""
    with _migration_lock(engine):
        before = current_revision(engine)
        if before != head_revision():
            command.upgrade(alembic_config(writer(engine)), "head")
    return before, head_revision()


def is_empty(engine: Engine) -> bool:
    return not sa.inspect(engine).get_table_names()


def ensure_schema(engine: Engine, display_url: str, *, auto_init: bool = True) -> None:
    """Create the schema in an empty database; refuse to run against an older one."""
    if engine.dialect.name == "sqlite":
        # The first read of a SQLite file that another process is creating can fail with "database is locked"
        # (its switch to WAL takes the file exclusively): on SQLite the whole check waits its turn.
        with _migration_lock(engine):
            _ensure_schema(engine, display_url, auto_init, nullcontext)
        return
    _ensure_schema(engine, display_url, auto_init, lambda: _migration_lock(engine))


def _ensure_schema(engine: Engine, display_url: str, auto_init: bool,
                   lock: Callable[[], AbstractContextManager[Any]]) -> None:
    try:
        current = current_revision(engine)
    except Exception as exc:
        raise Unavailable(f"store at {display_url} is unreachable: {str(exc).splitlines()[0]}") from exc
    head = head_revision()
    if current == head:
        return
    if current is None and auto_init:
        # Decide under the lock: a process migrating right now leaves the store neither empty nor stamped.
        with lock():
            # Another process may have created the schema while this one waited for the lock.
            current = current_revision(engine)
            if current is None and is_empty(engine):
                command.upgrade(alembic_config(writer(engine)), "head")
                return
        if current == head:
            return
    raise Unavailable(
        f"store at {display_url} has schema {current or 'none'}, this version needs {head}; "
        "run `mlplatform store upgrade`"
    )
