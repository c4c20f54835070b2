"""Schedules and their runs (SPEC S9.3): the rows the scheduler (:mod:`mlplatform.scheduler`) reads and writes.

Two mechanisms keep a job from running twice: a lease on the schedule row taken by a conditional update (one
scheduler at a time works a schedule), and a unique (schedule, slot) pair on the runs (a slot is claimed once,
whatever happens to leases).
"""

from __future__ import annotations

import builtins
import dataclasses
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mlplatform.entities.schedules import ACTIVE, Schedule, ScheduleRun
from mlplatform.errors import Conflict, NotFound
from mlplatform.store.sql.models import ScheduleRow, ScheduleRunRow, utcnow
from mlplatform.store.sql.session import SessionScope, affected_rows


def _schedule(row: ScheduleRow) -> Schedule:
    return Schedule(**{f.name: getattr(row, f.name) for f in dataclasses.fields(Schedule)})


def _run(row: ScheduleRunRow) -> ScheduleRun:
    return ScheduleRun(**{f.name: getattr(row, f.name) for f in dataclasses.fields(ScheduleRun)})


class SqlScheduleStore:
    def __init__(self, scope: SessionScope) -> None:
        self._scope = scope

    def add(self, name: str, *, kind: str, cron: str, command: list[str], next_run_at: datetime,
            timeout_s: float) -> Schedule:
        def work(session: Session) -> Schedule:
            if session.get(ScheduleRow, name) is not None:
                raise Conflict(f"schedule {name!r} already exists", field="name")
            now = utcnow()
            row = ScheduleRow(name=name, kind=kind, cron=cron, command=list(command), status=ACTIVE,
                              next_run_at=next_run_at, last_run_at=None, last_status=None, last_error=None,
                              consecutive_failures=0, lease_owner=None, lease_until=None, timeout_s=timeout_s,
                              created_at=now, updated_at=now)
            session.add(row)
            session.flush()
            return _schedule(row)

        return self._scope.run(work, what="add schedule")

    def get(self, name: str) -> Schedule:
        with self._scope.session() as session:
            row = session.get(ScheduleRow, name)
            if row is None:
                raise NotFound(f"no schedule named {name!r}", field="name")
            return _schedule(row)

    def list(self) -> list[Schedule]:
        with self._scope.session() as session:
            return [_schedule(r) for r in session.scalars(sa.select(ScheduleRow).order_by(ScheduleRow.name))]

    def due(self, now: datetime) -> builtins.list[str]:
        with self._scope.session() as session:
            return list(session.scalars(sa.select(ScheduleRow.name).where(
                ScheduleRow.status == ACTIVE, ScheduleRow.next_run_at <= now).order_by(ScheduleRow.next_run_at)))

    def update(self, name: str, **values: Any) -> Schedule:
        def work(session: Session) -> Schedule:
            row = session.get(ScheduleRow, name)
            if row is None:
                raise NotFound(f"no schedule named {name!r}", field="name")
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            session.flush()
            return _schedule(row)

        return self._scope.run(work, what="update schedule")

    def remove(self, name: str) -> None:
        def work(session: Session) -> None:
            row = session.get(ScheduleRow, name)
            if row is None:
                raise NotFound(f"no schedule named {name!r}", field="name")
            session.delete(row)

        self._scope.run(work, what="remove schedule")

    # -- the lease -------------------------------------------------------------------------------------------
    def acquire(self, name: str, owner: str, now: datetime, until: datetime) -> bool:
        """Take the schedule's lease when it is free or expired (one conditional UPDATE: atomic on SQLite and
        PostgreSQL alike). True when this owner now holds it."""
        def work(session: Session) -> bool:
            result = session.execute(sa.update(ScheduleRow).where(
                ScheduleRow.name == name,
                sa.or_(ScheduleRow.lease_owner.is_(None), ScheduleRow.lease_until < now,
                       ScheduleRow.lease_owner == owner),
            ).values(lease_owner=owner, lease_until=until))
            return affected_rows(result) == 1

        return self._scope.run(work, what="acquire schedule lease")

    def release(self, name: str, owner: str) -> None:
        self._scope.run(lambda s: s.execute(sa.update(ScheduleRow).where(
            ScheduleRow.name == name, ScheduleRow.lease_owner == owner).values(lease_owner=None, lease_until=None)),
            what="release schedule lease")

    # -- runs ------------------------------------------------------------------------------------------------
    def claim_slot(self, name: str, slot: datetime, owner: str, *, status: str = "running",
                   error: str | None = None, finished: bool = False) -> str | None:
        """Record the run of one slot; None when the slot was already claimed (ran, runs or was skipped)."""
        now = utcnow()
        row_id = str(uuid.uuid4())

        def work(session: Session) -> str:
            session.add(ScheduleRunRow(id=row_id, schedule_name=name, scheduled_for=slot, status=status,
                                       owner=owner, started_at=now, finished_at=now if finished else None,
                                       error=error, details={}))
            return row_id

        try:
            return self._scope.run(work, what="claim schedule slot")
        except Conflict:
            return None

    def finish_run(self, run_id: str, status: str, *, error: str | None = None,
                   details: dict[str, Any] | None = None) -> None:
        def work(session: Session) -> None:
            row = session.get(ScheduleRunRow, run_id)
            if row is None:
                raise NotFound(f"no schedule run {run_id}", field="run_id")
            row.status, row.error, row.finished_at = status, error, utcnow()
            row.details = details or {}

        self._scope.run(work, what="finish schedule run")

    def abandon_running(self, name: str, reason: str) -> int:
        """Runs left "running" by a scheduler whose lease expired (it died): failed, with the reason."""
        return self._scope.run(lambda s: affected_rows(s.execute(sa.update(ScheduleRunRow).where(
            ScheduleRunRow.schedule_name == name, ScheduleRunRow.status == "running").values(
            status="failed", error=reason, finished_at=utcnow()))), what="abandon schedule runs")

    def runs(self, name: str | None = None, *, limit: int = 100) -> builtins.list[ScheduleRun]:
        with self._scope.session() as session:
            query = sa.select(ScheduleRunRow).order_by(ScheduleRunRow.scheduled_for.desc(),
                                                       ScheduleRunRow.started_at.desc()).limit(limit)
            if name is not None:
                query = query.where(ScheduleRunRow.schedule_name == name)
            return [_run(r) for r in session.scalars(query)]
