"""Rollout control as a client API (``client.rollouts``): start, advance, abort, state and status.

Rollouts are stage-neutral: the rules live here (``control`` for start/advance/abort and probation, ``guard`` for
the decisions, ``routing`` for the stages and the sticky split, ``window`` for the fleet's request statistics), on
top of the store's rollout rows. The loop (:mod:`mlplatform.loop`) and the CLI drive rollouts through
``client.rollouts``, and the serving stage's replicas route and guard by the same rules, so neither imports the
other.
"""

from __future__ import annotations

from typing import Any

from mlplatform.rollouts import control


class Rollouts:
    def __init__(self, client: Any) -> None:
        self._client = client

    @staticmethod
    def _control() -> Any:
        return control

    def start(self, name: str, **options: Any) -> Any:
        """Route between the champion and the challenger of ``name`` from ``stage`` (default: shadow)."""
        return self._control().start(self._client, name, **options)

    def advance(self, name: str, **options: Any) -> Any:
        return self._control().advance(self._client, name, **options)

    def abort(self, name: str, **options: Any) -> Any:
        return self._control().abort(self._client, name, **options)

    def state(self, name: str) -> Any:
        """The stored rollout row of ``name`` (None when it never had one)."""
        return self._control().rollout_store(self._client).get(name)

    def status(self, name: str) -> dict[str, Any]:
        return self._control().status(self._client, name)
