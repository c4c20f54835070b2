"""Shadow copies (SPEC S7.3): a bounded queue in the ingress, drained in batches, never awaited by a request.

``submit`` only appends to the queue and returns at once; the response is sent without waiting. Beyond
``max_queued`` copies a new one is dropped and counted, so a slow or failing shadow can neither delay answers nor
grow memory. One drain task sends up to ``max_batch`` queued copies per DeploymentHandle call (one call per
version): on a 2-core host a second handle hop per request would cost more throughput than the shadow model itself.
The drain task is referenced until done because the event loop keeps only weak references to tasks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)
OnDone = Callable[[Any | None, BaseException | None, float], None]
Send = Callable[[int, list[list[dict[str, Any]]]], Awaitable[list[Any]]]


class ShadowError(RuntimeError):
    """The shadow version failed on one copy (its message comes from the replica)."""


@dataclass
class _Copy:
    version: int
    instances: list[dict[str, Any]]
    on_done: OnDone


class ShadowQueue:
    def __init__(self, send: Send, *, max_queued: int = 1000, max_batch: int = 32, timeout_s: float = 5.0,
                 on_drop: Callable[[], None] | None = None) -> None:
        self._send = send  # (version, [instances, ...]) -> [ModelAnswer | {"error": message}, ...]
        self.max_queued = max_queued
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self._queue: deque[_Copy] = deque()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.completed = 0
        self.failed = 0
        self.dropped = 0
        self._on_drop = on_drop  # e.g. a Prometheus counter: dropped copies are visible, not only in stats()

    def submit(self, version: int, instances: list[dict[str, Any]], on_done: OnDone) -> bool:
        """Queue one copy; ``on_done(answer, error, latency_ms)`` runs when it is answered. False if dropped."""
        if len(self._queue) >= self.max_queued:
            self.dropped += 1
            if self._on_drop is not None:
                try:
                    self._on_drop()
                except Exception:  # a metrics hiccup must not reach the request
                    logger.debug("shadow drop metric failed", exc_info=True)
            return False
        self._queue.append(_Copy(version, instances, on_done))
        self.sent += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())
        return True

    async def _drain(self) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            by_version: dict[int, list[_Copy]] = {}
            for copy in batch:
                by_version.setdefault(copy.version, []).append(copy)
            for version, copies in by_version.items():
                await self._send_group(version, copies)

    async def _send_group(self, version: int, copies: list[_Copy]) -> None:
        started = time.perf_counter()
        try:
            answers: list[Any] = list(await asyncio.wait_for(
                self._send(version, [c.instances for c in copies]), self.timeout_s))
        except Exception as exc:  # a shadow's failure is recorded, never raised into a request
            answers = [exc] * len(copies)
        latency_ms = (time.perf_counter() - started) * 1000
        for copy, answer in zip(copies, answers, strict=False):
            error: BaseException | None = None
            if isinstance(answer, BaseException):
                error, answer = answer, None
            elif isinstance(answer, dict) and "error" in answer:
                error, answer = ShadowError(str(answer["error"])), None
            if error is None:
                self.completed += 1
            else:
                self.failed += 1
            try:
                copy.on_done(answer, error, latency_ms)
            except Exception:
                logger.warning("recording a shadow answer failed", exc_info=True)

    def stats(self) -> dict[str, int]:
        return {"queued": len(self._queue), "sent": self.sent, "completed": self.completed, "failed": self.failed,
                "dropped": self.dropped}
