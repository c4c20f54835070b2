"""A model's rollout as the store records it (the rules that move it live in :mod:`mlplatform.rollouts`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlplatform.entities import _Entity

ACTIVE = "active"


@dataclass(frozen=True)
class RolloutState(_Entity):
    model_name: str
    status: str
    stage: str
    stages: list[dict[str, Any]]
    champion_version: int | None
    challenger_version: int | None
    salt: str
    policy: dict[str, Any]
    revision: int
    rollbacks: int
    actor: str
    stage_started_at: datetime
    cooldown_until: datetime | None
    created_at: datetime
    updated_at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    def stage_spec(self) -> dict[str, Any]:
        return next((s for s in self.stages if s["name"] == self.stage), {"name": self.stage, "weight": 0.0})

    @property
    def challenger_weight(self) -> float:
        """Percent of traffic for the challenger: 0 unless the rollout is active."""
        return float(self.stage_spec().get("weight", 0.0)) if self.active else 0.0

    @property
    def mirror_challenger(self) -> bool:
        return self.active and bool(self.stage_spec().get("mirror", False))
