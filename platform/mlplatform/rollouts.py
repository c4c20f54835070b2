"""Rollout control as a client API (``client.rollouts``): start, advance, abort, state and status.

The loop (:mod:`mlplatform.loop`) and the CLI drive rollouts through this facade, so neither imports the serving
stage; the serving stage implements the rules (:mod:`mlplatform.serving.rollout.control`) and its replicas' guard
acts on the same store rows. The implementation is imported on first use, so a client that never touches a
rollout never loads the serving stage.
"""

from __future__ import annotations

from typing import Any


class Rollouts:
    def __init__(self, client: Any) -> None:
        self._client = client

    @staticmethod
    def _control() -> Any:
        from mlplatform.serving.rollout import control

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
