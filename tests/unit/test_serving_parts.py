"""The serving building blocks without Ray: cache, circuit breaker, prediction-log buffer, request validation."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from mlplatform.config.serve import ServeConfig
from mlplatform.entities import PredictionRecord
from mlplatform.errors import ConfigError, InvalidInput, PayloadTooLarge
from mlplatform.serving.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitOpenError
from mlplatform.serving.cache import MISS, PredictionCache, cache_key
from mlplatform.serving.prediction_log import PredictionLogBuffer
from mlplatform.serving.validation import parse_instances, parse_json_body


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cache_is_a_true_lru_with_ttl_and_keeps_cached_none() -> None:
    clock = Clock()
    cache = PredictionCache(max_entries=2, ttl_s=10, clock=clock)
    cache.put("a", 1)
    cache.put("b", None)
    assert cache.get("a") == 1  # refreshes "a": "b" is now the least recently used
    cache.put("c", 3)
    assert cache.get("b") is MISS and cache.get("a") == 1 and cache.get("c") == 3
    clock.now = 10.0
    assert cache.get("a") is MISS  # expired entries are never served
    cache.put("n", None)
    assert cache.get("n") is None
    assert cache.stats()["evictions"] == 1


def test_cache_key_depends_on_version_and_schema_order_only() -> None:
    row = (1.0, "basic")
    assert cache_key("m", 1, "s", row) == cache_key("m", 1, "s", list(row))
    assert cache_key("m", 1, "s", row) != cache_key("m", 2, "s", row)
    assert cache_key("m", 1, "s", row) != cache_key("m", 1, "s", ("basic", 1.0))


def test_breaker_opens_after_consecutive_failures_and_admits_one_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker("dep", failure_threshold=3, reset_timeout_s=30, clock=clock)
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()  # a success resets the count: spread failures never open it
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == CLOSED
    breaker.record_failure()
    assert breaker.state == OPEN
    with pytest.raises(CircuitOpenError) as raised:
        breaker.before_call()
    assert raised.value.details["retry_after_s"] == 30
    clock.now = 30.0
    assert breaker.state == HALF_OPEN
    breaker.before_call()  # the one probe
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    breaker.record_failure()
    assert breaker.state == OPEN
    clock.now = 60.0
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == CLOSED


def _record(i: int) -> PredictionRecord:
    return PredictionRecord(request_id=f"r{i}", model_name="m", version=1, features={}, prediction=1,
                            confidence=0.9, latency_ms=1.0, timestamp=datetime.now(UTC))


def test_prediction_log_drops_and_counts_when_full_and_flushes_on_close() -> None:
    written: list[PredictionRecord] = []
    gate = threading.Event()

    def slow_write(batch: Sequence[PredictionRecord]) -> None:
        gate.wait(5)
        written.extend(batch)

    log = PredictionLogBuffer(slow_write, queue_size=5, flush_rows=100, flush_interval_s=60)
    started = time.perf_counter()
    log.add([_record(i) for i in range(8)])
    assert time.perf_counter() - started < 0.1  # the request path never waits for the store
    assert log.stats()["dropped"] == 3
    gate.set()
    log.close()
    assert [r.request_id for r in written] == [f"r{i}" for i in range(5)]


def test_prediction_log_buffers_through_a_failing_store_and_counts_what_it_loses() -> None:
    """Before: a failed write dropped its batch at once; now it stays queued and is tried again."""
    attempts: list[int] = []
    written: list[PredictionRecord] = []
    dropped: list[int] = []

    def flaky(batch: Sequence[PredictionRecord]) -> None:
        attempts.append(len(batch))
        if len(attempts) <= 2:
            raise ConnectionError("store down")
        written.extend(batch)

    log = PredictionLogBuffer(flaky, flush_rows=10, flush_interval_s=0.02, on_drop=dropped.append)
    log.add([_record(i) for i in range(3)])
    deadline = time.monotonic() + 5
    while log.stats()["written"] < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    log.close()
    assert [r.request_id for r in written] == ["r0", "r1", "r2"] and attempts == [3, 3, 3]
    assert log.stats()["dropped"] == 0 and log.stats()["failed_writes"] == 2 and dropped == []

    def broken(batch: Sequence[PredictionRecord]) -> None:
        raise ConnectionError("store down")

    log = PredictionLogBuffer(broken, flush_rows=1, flush_interval_s=0.02, on_drop=dropped.append)
    log.add([_record(0), _record(1)])
    while log.stats()["failed_writes"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log.stats()["queued"] + log.stats()["in_flight"] == 2 and log.stats()["dropped"] == 0  # buffered
    log.close()
    assert log.stats()["dropped"] == 2 and sum(dropped) == 2 and log.stats()["queued"] == 0


def test_prediction_log_counts_the_batch_in_flight_when_close_times_out() -> None:
    """Before: close() counted only the queued rows; the batch being written when it gave up vanished."""
    gate = threading.Event()
    log = PredictionLogBuffer(lambda batch: gate.wait(5), flush_rows=2, flush_interval_s=0.01)
    log.add([_record(i) for i in range(3)])  # 2 in flight (blocked), 1 queued
    deadline = time.monotonic() + 5
    while log.stats()["in_flight"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    log.close(timeout_s=0.1)
    assert log.stats()["dropped"] == 3
    gate.set()  # the stuck write completes after all: it is written, no longer lost
    deadline = time.monotonic() + 5
    while log.stats()["written"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.stats()["written"] == 2 and log.stats()["dropped"] == 1


def test_body_limits() -> None:
    with pytest.raises(PayloadTooLarge):
        parse_json_body(b"{}" * 10, max_bytes=5)
    with pytest.raises(InvalidInput) as raised:
        parse_json_body(b'{"a": -Infinity}', max_bytes=100)
    assert raised.value.field == "body"
    with pytest.raises(PayloadTooLarge):
        parse_instances({"instances": [{}] * 3}, max_instances=2)


def test_config_refuses_batches_that_cannot_fill() -> None:
    with pytest.raises(ConfigError) as raised:
        ServeConfig.parse({"models": [{"name": "m"}], "max_ongoing_requests": 8})
    assert "max_ongoing_requests" in str(raised.value)
