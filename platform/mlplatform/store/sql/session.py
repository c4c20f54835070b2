"""The single managed session scope: engine creation, SQLite pragmas, commit/rollback, error translation."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from mlplatform._internal.retry import STORE_POLICY, call_with_retry
from mlplatform.errors import Conflict, MLPlatformError, StoreBusy, Unavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")
SQLITE_BUSY_TIMEOUT_MS = 30_000


WRITE_OPTION = "mlplatform_write"


def create_store_engine(url: str, *, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> Engine:
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
            pool_pre_ping=True,
        )
        busy_timeout_ms = int(busy_timeout_s * 1000)
        sa.event.listen(engine, "connect", functools.partial(_sqlite_pragmas, busy_timeout_ms=busy_timeout_ms))
        # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINTs; take control of it. Only units of
        # work that write (``SessionScope.run``, migrations) take the write lock up front with BEGIN IMMEDIATE, so
        # they queue on the busy timeout instead of failing at their first write; reads stay deferred, and under WAL
        # a deferred read never waits for a writer (BEGIN IMMEDIATE on reads stalled a read 3 s behind a write).
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5)


def writer(engine: Engine) -> Engine:
    """The same engine (and pool) whose SQLite transactions begin IMMEDIATE; on PostgreSQL nothing changes."""
    return engine.execution_options(**{WRITE_OPTION: True})


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")


def insert_if_absent(session: Session, model: type[Any], values: dict[str, Any], conflict_on: list[str]) -> bool:
    """``INSERT ... ON CONFLICT DO NOTHING``: True when this call inserted the row. Get-or-create goes through
    here and then re-selects, so concurrent creators of one name all succeed with the one row (a select-then-insert
    raced: 3-4 of 40 concurrent writers failed with a unique violation)."""
    statement: Any = postgresql_insert(model) if session.get_bind().dialect.name == "postgresql" \
        else sqlite_insert(model)
    statement = statement.values(**values).on_conflict_do_nothing(index_elements=conflict_on)
    return bool(affected_rows(session.execute(statement)))


def affected_rows(result: sa.Result[Any]) -> int:
    """Rows an INSERT/UPDATE/DELETE touched (``execute`` is typed as returning a plain ``Result``)."""
    return int(cast(sa.CursorResult[Any], result).rowcount)


def _sqlite_pragmas(dbapi_connection: object, _record: object, *, busy_timeout_ms: int) -> None:
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


_BUSY_MARKERS = ("database is locked", "database is busy", "could not serialize access", "deadlock detected",
                 "lock timeout", "could not obtain lock")


def translate_db_error(exc: Exception, display_url: str, busy_timeout_s: float | None = None) -> MLPlatformError | None:
    """Map a database error to a platform error, or None when it is a bug to surface as-is."""
    if isinstance(exc, sa_exc.IntegrityError):
        return Conflict(f"the store refused a write that conflicts with existing rows: {_short(exc)}")
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.DBAPIError):
        text = _short(exc)
        if any(marker in text.lower() for marker in _BUSY_MARKERS):
            waited = f" after waiting {busy_timeout_s:g} s" if busy_timeout_s is not None else ""
            return StoreBusy(f"store at {display_url} is busy ({text}){waited}: another process holds a long write; "
                             "retry later or raise MLPLATFORM_STORE_BUSY_TIMEOUT_S")
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            return Unavailable(f"store at {display_url} is unreachable: {text}")
    return None


def _short(exc: Exception) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


class SessionScope:
    """The only place that opens sessions. ``session()`` is a read scope; ``run(fn)`` executes one unit of work that
    writes, with retry on a busy database, and raises one :class:`StoreBusy` when the store stays locked."""

    def __init__(self, engine: Engine, display_url: str, *,
                 busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
        self.engine = engine
        self.display_url = display_url
        self.busy_timeout_s = busy_timeout_s
        self._factory = sessionmaker(engine, expire_on_commit=False)
        self._write_factory = sessionmaker(writer(engine), expire_on_commit=False)
        # Each SQLite attempt already waits up to the busy timeout: retry quick conflicts (PostgreSQL serialization,
        # a snapshot gone stale) but never multiply a full wait by the attempt count.
        self._policy = dataclasses.replace(STORE_POLICY, deadline_seconds=busy_timeout_s)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._scoped(self._factory) as session:
            yield session

    @contextmanager
    def _scoped(self, factory: sessionmaker[Session]) -> Iterator[Session]:
        session = factory()
        try:
            yield session
            session.commit()
        except Exception as exc:
            session.rollback()
            translated = translate_db_error(exc, self.display_url, self.busy_timeout_s)
            if translated is not None:
                raise translated from exc
            raise
        finally:
            session.close()

    def run(self, work: Callable[[Session], T], *, what: str = "store write") -> T:
        def attempt() -> T:
            with self._scoped(self._write_factory) as session:
                return work(session)

        return call_with_retry(attempt, self._policy, what=what)
