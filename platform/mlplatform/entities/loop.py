"""The automatic loop's decisions (:mod:`mlplatform.loop`), with their evidence and timeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlplatform.entities import _Entity

# a decision still under way: the loop finishes it before it decides anything new for the model
OPEN_STATUSES = ("retraining", "rolling_out")


@dataclass(frozen=True)
class LoopDecision(_Entity):
    id: str
    model_name: str
    created_at: datetime
    updated_at: datetime
    trigger: str | None
    action: str  # none | retrain | blocked
    status: str  # no_action | blocked | retraining | rejected | failed | rolling_out | promoted | rolled_back
    reason: str | None
    champion_version: int | None
    challenger_version: int | None
    job_id: str | None
    evidence: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def timeline(self) -> list[dict[str, Any]]:
        return list(self.details.get("timeline", []))
