"""Schedules and their runs (:mod:`mlplatform.scheduler`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlplatform.entities import _Entity

ACTIVE, PAUSED = "active", "paused"


@dataclass(frozen=True)
class Schedule(_Entity):
    name: str
    kind: str
    cron: str
    command: list[str]
    status: str
    next_run_at: datetime
    last_run_at: datetime | None
    last_status: str | None
    last_error: str | None
    consecutive_failures: int
    lease_owner: str | None
    lease_until: datetime | None
    timeout_s: float
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ScheduleRun(_Entity):
    id: str
    schedule_name: str
    scheduled_for: datetime
    status: str  # running | succeeded | failed | skipped
    owner: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    details: dict[str, Any] = field(default_factory=dict)
