"""Decisions of the automatic loop (issue 18): the rows :mod:`mlplatform.loop` writes and ``mlplatform loop
status`` reads. A decision is one row from the check that made it to the end of its rollout; its ``timeline``
(in ``details``) records every step with the time it happened."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mlplatform.entities.loop import LoopDecision
from mlplatform.errors import NotFound
from mlplatform.store.sql.models import LoopDecisionRow, utcnow
from mlplatform.store.sql.session import SessionScope


def _decision(row: LoopDecisionRow) -> LoopDecision:
    return LoopDecision(**{f.name: getattr(row, f.name) for f in dataclasses.fields(LoopDecision)})


class SqlLoopStore:
    def __init__(self, scope: SessionScope) -> None:
        self._scope = scope

    def add(self, model_name: str, *, action: str, status: str, trigger: str | None, reason: str | None,
            champion_version: int | None, evidence: dict[str, Any], details: dict[str, Any] | None = None,
            created_at: datetime | None = None) -> LoopDecision:
        now = created_at or utcnow()

        def work(session: Session) -> LoopDecision:
            row = LoopDecisionRow(id=str(uuid.uuid4()), model_name=model_name, created_at=now, updated_at=now,
                                  trigger=trigger, action=action, status=status, reason=reason,
                                  champion_version=champion_version, challenger_version=None, job_id=None,
                                  evidence=evidence, details=details or {})
            session.add(row)
            session.flush()
            return _decision(row)

        return self._scope.run(work, what="add loop decision")

    def get(self, decision_id: str) -> LoopDecision:
        with self._scope.session() as session:
            row = session.get(LoopDecisionRow, decision_id)
            if row is None:
                raise NotFound(f"no loop decision {decision_id}", field="decision_id")
            return _decision(row)

    def update(self, decision_id: str, *, step: dict[str, Any] | None = None, **values: Any) -> LoopDecision:
        """Set columns and append ``step`` (with its time) to the timeline, in one transaction."""
        def work(session: Session) -> LoopDecision:
            row = session.get(LoopDecisionRow, decision_id)
            if row is None:
                raise NotFound(f"no loop decision {decision_id}", field="decision_id")
            for key, value in values.items():
                setattr(row, key, value)
            now = utcnow()
            if step is not None:
                details = dict(row.details or {})
                details["timeline"] = [*details.get("timeline", []), {"at": now.isoformat(), **step}]
                row.details = details  # a new object: the JSON column sees the change
            row.updated_at = now
            session.flush()
            return _decision(row)

        return self._scope.run(work, what="update loop decision")

    def list(self, model_name: str | None = None, *, limit: int = 100,
             statuses: tuple[str, ...] | None = None, action: str | None = None) -> list[LoopDecision]:
        """Newest first."""
        with self._scope.session() as session:
            query = sa.select(LoopDecisionRow).order_by(LoopDecisionRow.created_at.desc()).limit(limit)
            if model_name is not None:
                query = query.where(LoopDecisionRow.model_name == model_name)
            if statuses is not None:
                query = query.where(LoopDecisionRow.status.in_(statuses))
            if action is not None:
                query = query.where(LoopDecisionRow.action == action)
            return [_decision(r) for r in session.scalars(query)]
