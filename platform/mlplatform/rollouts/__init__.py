"""Rollout control as a client API (``client.rollouts``): start, advance, abort, state and status.

Rollouts are stage-neutral: the rules live here (``control`` for start/advance/abort and probation, ``guard`` for
the decisions, ``routing`` for the stages and the sticky split, ``window`` for the fleet's request statistics), on
top of the store's rollout rows. The loop (:mod:`mlplatform.loop`) and the CLI drive rollouts through
``client.rollouts``, and the serving stage's replicas route and guard by the same rules, so neither imports the
other.
"""

from __future__ import annotations

from typing import Any

from mlplatform.entities.rollouts import RolloutState
from mlplatform.rollouts import control
from mlplatform.rollouts.control import RolloutClient
from mlplatform.store.interfaces import RolloutStore


class Rollouts:
    """``client.rollouts``: the rollout rules of :mod:`mlplatform.rollouts.control` on the client's rollout rows."""

    def __init__(self, client: RolloutClient, store: RolloutStore) -> None:
        self._client = client
        self.store = store  # the rollout rows, in the client's own session scope

    def start(self, name: str, *, stage: str | None = None, stages: list[dict[str, Any]] | None = None,
              policy: dict[str, Any] | None = None, actor: str = "unknown", replace_active: bool = False,
              salt: str | None = None) -> RolloutState:
        """Route between the champion and the challenger of ``name`` from ``stage`` (default: shadow)."""
        return control.start(self._client, name, stage=stage, stages=stages, policy=policy, actor=actor,
                             replace_active=replace_active, salt=salt)

    def advance(self, name: str, *, actor: str = "unknown", reason: str = "manual",
                expected_revision: int | None = None) -> RolloutState:
        return control.advance(self._client, name, actor=actor, reason=reason, expected_revision=expected_revision)

    def abort(self, name: str, *, actor: str = "unknown", reason: str = "aborted by operator") -> RolloutState:
        return control.abort(self._client, name, actor=actor, reason=reason)

    def state(self, name: str) -> RolloutState | None:
        """The stored rollout row of ``name`` (None when it never had one)."""
        return self.store.get(name)

    def status(self, name: str) -> dict[str, Any]:
        return control.status(self._client, name)
