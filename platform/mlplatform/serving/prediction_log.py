"""Asynchronous prediction log (SPEC S6.10): a bounded in-memory queue drained by one background thread that
writes batches through ``monitoring.log_predictions``.

The request path only appends (O(1), never blocks, never raises); when the queue is full the row is dropped and
counted. A failing store keeps the batch queued for the next attempt (bounded by the queue), so a monitoring outage
can never fail or slow a prediction and loses nothing until the queue is full; every lost row is counted.
``close()`` flushes what is left, the batch in flight included (graceful shutdown).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from mlplatform.config.serve import ServeConfig
from mlplatform.entities import PredictionRecord

logger = logging.getLogger(__name__)


class PredictionLogBuffer:
    def __init__(self, write: Callable[[Sequence[PredictionRecord]], Any], *, queue_size: int = 10_000,
                 flush_rows: int = 500, flush_interval_s: float = 1.0,
                 on_drop: Callable[[int], None] | None = None) -> None:
        self._write = write
        self._queue: deque[PredictionRecord] = deque()
        self.queue_size = queue_size
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self._on_drop = on_drop  # e.g. a Prometheus counter: lost rows are visible, not only in stats()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.dropped = 0
        self.written = 0
        self.failed_writes = 0
        self._in_flight = 0  # rows taken from the queue whose write has not returned yet
        self._abandoned = False  # close() gave up waiting: rows still in flight were counted as dropped
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def _drop(self, n: int) -> None:
        """Count ``n`` lost rows (the caller holds the lock)."""
        if n <= 0:
            return
        self.dropped += n
        if self._on_drop is not None:
            try:
                self._on_drop(n)
            except Exception:  # a metrics hiccup must not break the log
                logger.debug("prediction log drop metric failed", exc_info=True)

    def add(self, records: Sequence[PredictionRecord]) -> None:
        with self._lock:
            room = self.queue_size - len(self._queue)
            if room < len(records):
                self._drop(len(records) - max(room, 0))
                records = records[:max(room, 0)]
            self._queue.extend(records)
            full = len(self._queue) >= self.flush_rows
        if full:
            self._wake.set()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"queued": len(self._queue), "in_flight": self._in_flight, "written": self.written,
                    "dropped": self.dropped, "failed_writes": self.failed_writes}

    def _take(self) -> list[PredictionRecord]:
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(self.flush_rows, len(self._queue)))]
            self._in_flight = len(batch)
        return batch

    def _flush_once(self, final: bool = False) -> int:
        """Write one batch: its size, 0 when there was nothing, -1 when the store failed. A failed batch goes back
        to the head of the queue (as much as fits) and is tried again at the next interval: a store outage is
        buffered, not lost, up to ``queue_size`` rows. On the final drain a failure drops it, counted."""
        batch = self._take()
        if not batch:
            return 0
        try:
            self._write(batch)
        except Exception as exc:  # the store is a dependency; its failure must not reach requests
            with self._lock:
                self._in_flight = 0
                self.failed_writes += 1
                # a write that timed out may still land: writing it again would duplicate rows, so it counts as lost
                if final or self._abandoned or isinstance(exc, TimeoutError):
                    self._drop(len(batch))
                else:
                    keep = batch[:max(0, self.queue_size - len(self._queue))]
                    self._drop(len(batch) - len(keep))
                    self._queue.extendleft(reversed(keep))
            logger.warning("prediction log write of %d rows failed (%s)", len(batch),
                           "dropped" if final else "kept for the next attempt", exc_info=True)
            return -1
        with self._lock:
            self._in_flight = 0
            self.written += len(batch)
            if self._abandoned:  # close() counted these as lost; they made it after all
                self.dropped -= len(batch)
        return len(batch)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            while self._flush_once() >= self.flush_rows:
                pass
        while self._flush_once(final=True) > 0:  # stopping: drain what is queued
            pass
        with self._lock:  # the store failed during the drain: the rest is lost, and counted
            self._drop(len(self._queue))
            self._queue.clear()

    def close(self, timeout_s: float = 2.0) -> None:
        """Flush what is queued and the batch in flight, then stop (graceful shutdown), within ``timeout_s``.

        The final writes happen in the buffer's own thread, never in the caller's: the caller is the replica's
        destructor, which runs on the request loop in Serve's throughput-optimized mode, where a blocking write
        there (a Ray call to the writer actor) hung the replica's shutdown. Rows still queued or in flight at the
        timeout are counted as dropped."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            with self._lock:
                lost = len(self._queue) + self._in_flight
                self._abandoned = True
                self._drop(lost)
                self._queue.clear()
            logger.warning("prediction log: %d queued or in-flight rows not written within %.1f s of shutdown",
                           lost, timeout_s)


class PredictionLogWriter:
    """The store side of the log in its own process (``prediction_log.writer: process``): a Ray actor owned by one
    ingress replica, which sends it whole batches. Building rows and SQL for hundreds of records is Python work
    that, in a thread of the replica, held the GIL the request loop needs."""

    def __init__(self, config: dict[str, Any]) -> None:
        # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
        from mlplatform.serving.model_server import build_client

        self._client = build_client(ServeConfig.parse(config))

    def write(self, records: Sequence[PredictionRecord]) -> int:
        return self._client.monitoring.log_predictions(records)


def process_writer(config: dict[str, Any], timeout_s: float) -> Callable[[Sequence[PredictionRecord]], Any]:
    """A ``write`` callable for :class:`PredictionLogBuffer` that hands each batch to a fresh writer actor and waits
    for it (in the buffer's thread, which releases the GIL while it waits). The actor dies with its replica."""
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    import ray

    writer_class: Any = ray.remote(num_cpus=0, max_restarts=1)(PredictionLogWriter)  # an ActorClass at runtime
    actor = writer_class.remote(config)

    def write(records: Sequence[PredictionRecord]) -> Any:
        return ray.get(actor.write.remote(list(records)), timeout=max(timeout_s, 10.0))

    return write
