"""Staged rollout state per model (SPEC S7.4): the one row every serving replica follows and the CLI edits.

Control changes (start, advance, rollback, abort) bump ``revision`` and may be made conditional on the revision
the caller decided from (compare-and-set), so two replicas' guards cannot both act on the same window. Metrics
snapshots are merged per replica without bumping the revision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mlplatform.entities.rollouts import ACTIVE, RolloutState
from mlplatform.errors import Conflict, NotFound
from mlplatform.store.sql.models import RolloutRow, utcnow
from mlplatform.store.sql.session import SessionScope

_CONTROL = ("status", "stage", "stages", "champion_version", "challenger_version", "salt", "policy", "rollbacks",
            "details", "actor", "stage_started_at", "cooldown_until")


def _entity(row: RolloutRow) -> RolloutState:
    return RolloutState(**{f.name: getattr(row, f.name) for f in dataclasses.fields(RolloutState)})


class SqlRolloutStore:
    def __init__(self, scope: SessionScope) -> None:
        self._scope = scope

    def get(self, model_name: str) -> RolloutState | None:
        with self._scope.session() as session:
            row = session.get(RolloutRow, model_name)
            return None if row is None else _entity(row)

    def list(self) -> list[RolloutState]:
        with self._scope.session() as session:
            return [_entity(r) for r in session.scalars(sa.select(RolloutRow).order_by(RolloutRow.model_name))]

    def start(self, model_name: str, *, replace_active: bool = False, **values: Any) -> RolloutState:
        """Create (or replace a finished) rollout; an active one is a Conflict unless ``replace_active``."""

        def work(session: Session) -> RolloutState:
            now = utcnow()
            row = session.get(RolloutRow, model_name)
            if row is not None and row.status == ACTIVE and not replace_active:
                raise Conflict(f"model {model_name} already has an active rollout at stage {row.stage!r}; "
                               "abort it first", field="model")
            if row is None:
                row = RolloutRow(model_name=model_name, revision=0, rollbacks=0, created_at=now, metrics={},
                                 details={})
                session.add(row)
            else:
                row.created_at, row.metrics = now, {}
            for key, value in values.items():
                if key not in _CONTROL:
                    raise ValueError(f"unknown rollout field {key!r}")
                setattr(row, key, value)
            row.stage_started_at = values.get("stage_started_at", now)
            row.revision, row.updated_at = row.revision + 1, now
            session.flush()
            return _entity(row)

        return self._scope.run(work, what="start rollout")

    def update(self, model_name: str, change: Callable[[RolloutState], dict[str, Any]], *,
               expected_revision: int | None = None) -> RolloutState:
        """Apply ``change(current) -> {field: value}`` atomically; Conflict when the revision moved on."""

        def work(session: Session) -> RolloutState:
            query = sa.select(RolloutRow).where(RolloutRow.model_name == model_name).with_for_update()
            row = session.scalar(query)
            if row is None:
                raise NotFound(f"model {model_name} has no rollout; start one with `mlplatform rollout start`",
                               field="model")
            if expected_revision is not None and row.revision != expected_revision:
                raise Conflict(f"rollout of {model_name} changed (revision {row.revision}, expected "
                               f"{expected_revision})", field="revision")
            values = change(_entity(row))
            for key, value in values.items():
                if key not in _CONTROL:
                    raise ValueError(f"unknown rollout field {key!r}")
                setattr(row, key, value)
            row.revision, row.updated_at = row.revision + 1, utcnow()
            session.flush()
            return _entity(row)

        return self._scope.run(work, what="update rollout")

    def report_metrics(self, model_name: str, replica: str, snapshot: dict[str, Any], *,
                       stale_after_s: float = 120.0) -> None:
        """Merge one replica's window snapshot; snapshots of replicas gone quiet are dropped."""

        def work(session: Session) -> None:
            row = session.scalar(sa.select(RolloutRow).where(RolloutRow.model_name == model_name)
                                 .with_for_update())
            if row is None:
                return
            now = utcnow()
            cutoff = (now - timedelta(seconds=stale_after_s)).isoformat()
            merged = {k: v for k, v in (row.metrics or {}).items() if str(v.get("at", "")) >= cutoff}
            merged[replica] = {**snapshot, "at": now.isoformat()}
            row.metrics = merged

        self._scope.run(work, what="report rollout metrics")
