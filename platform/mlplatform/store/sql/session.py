"""The single managed session scope: engine creation, SQLite pragmas, commit/rollback, error translation."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from mlplatform._internal.retry import STORE_POLICY, call_with_retry
from mlplatform.errors import Conflict, MLPlatformError, Unavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")
SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_store_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            pool_pre_ping=True,
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINTs; take control of it.
        sa.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def translate_db_error(exc: Exception, display_url: str) -> MLPlatformError | None:
    """Map a database error to a platform error, or None when it is a bug to surface as-is."""
    if isinstance(exc, sa_exc.IntegrityError):
        return Conflict(f"the store refused a write that conflicts with existing rows: {_short(exc)}")
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        text = _short(exc)
        if "locked" in text or "busy" in text:
            return None  # retried by the caller
        return Unavailable(f"store at {display_url} is unreachable: {text}")
    return None


def _short(exc: Exception) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


class SessionScope:
    """The only place that opens sessions. ``run(fn)`` executes one unit of work with retry on a busy database."""

    def __init__(self, engine: Engine, display_url: str) -> None:
        self.engine = engine
        self.display_url = display_url
        self._factory = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self._factory()
        try:
            yield session
            session.commit()
        except Exception as exc:
            session.rollback()
            translated = translate_db_error(exc, self.display_url)
            if translated is not None:
                raise translated from exc
            raise
        finally:
            session.close()

    def run(self, work: Callable[[Session], T], *, what: str = "store write") -> T:
        def attempt() -> T:
            with self.session() as session:
                return work(session)

        return call_with_retry(attempt, STORE_POLICY, what=what)
