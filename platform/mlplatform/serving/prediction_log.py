"""Asynchronous prediction log (SPEC S6.10): a bounded in-memory queue drained by one background thread that
writes batches through ``monitoring.log_predictions``.

The request path only appends (O(1), never blocks, never raises); when the queue is full the row is dropped and
counted. A failing store drops the batch after one attempt and counts it, so a monitoring outage can never fail or
slow a prediction. ``close()`` flushes what is left (graceful shutdown).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from mlplatform.entities import PredictionRecord

logger = logging.getLogger(__name__)


class PredictionLogBuffer:
    def __init__(self, write: Callable[[Sequence[PredictionRecord]], Any], *, queue_size: int = 10_000,
                 flush_rows: int = 500, flush_interval_s: float = 1.0) -> None:
        self._write = write
        self._queue: deque[PredictionRecord] = deque()
        self.queue_size = queue_size
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def add(self, records: Sequence[PredictionRecord]) -> None:
        with self._lock:
            room = self.queue_size - len(self._queue)
            if room < len(records):
                self.dropped += len(records) - max(room, 0)
                records = records[:max(room, 0)]
            self._queue.extend(records)
            full = len(self._queue) >= self.flush_rows
        if full:
            self._wake.set()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"queued": len(self._queue), "written": self.written, "dropped": self.dropped}

    def _take(self) -> list[PredictionRecord]:
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(self.flush_rows, len(self._queue)))]
        return batch

    def _flush_once(self) -> int:
        batch = self._take()
        if not batch:
            return 0
        try:
            self._write(batch)
            with self._lock:
                self.written += len(batch)
        except Exception:  # the store is a dependency; its failure must not reach requests
            logger.warning("prediction log write of %d rows failed; rows dropped", len(batch), exc_info=True)
            with self._lock:
                self.dropped += len(batch)
        return len(batch)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            while self._flush_once() >= self.flush_rows:
                pass
        while self._flush_once():  # stopping: drain what is queued
            pass

    def close(self, timeout_s: float = 2.0) -> None:
        """Flush what is queued and stop (graceful shutdown), within ``timeout_s``.

        The final writes happen in the buffer's own thread, never in the caller's: the caller is the replica's
        destructor, which runs on the request loop in Serve's throughput-optimized mode, where a blocking write
        there (a Ray call to the writer actor) hung the replica's shutdown. Rows still queued at the timeout
        are counted as dropped."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            with self._lock:
                lost = len(self._queue)
                self.dropped += lost
                self._queue.clear()
            logger.warning("prediction log: %d queued rows not written within %.1f s of shutdown", lost, timeout_s)


class PredictionLogWriter:
    """The store side of the log in its own process (``prediction_log.writer: process``): a Ray actor owned by one
    ingress replica, which sends it whole batches. Building rows and SQL for hundreds of records is Python work
    that, in a thread of the replica, held the GIL the request loop needs."""

    def __init__(self, config: dict[str, Any]) -> None:
        from mlplatform.serving.config import ServingConfig
        from mlplatform.serving.model_server import build_client

        self._client = build_client(ServingConfig.parse(config))

    def write(self, records: Sequence[PredictionRecord]) -> int:
        return self._client.monitoring.log_predictions(records)


def process_writer(config: dict[str, Any], timeout_s: float) -> Callable[[Sequence[PredictionRecord]], Any]:
    """A ``write`` callable for :class:`PredictionLogBuffer` that hands each batch to a fresh writer actor and waits
    for it (in the buffer's thread, which releases the GIL while it waits). The actor dies with its replica."""
    import ray

    actor = ray.remote(num_cpus=0, max_restarts=1)(PredictionLogWriter).remote(config)

    def write(records: Sequence[PredictionRecord]) -> Any:
        return ray.get(actor.write.remote(list(records)), timeout=max(timeout_s, 10.0))

    return write
