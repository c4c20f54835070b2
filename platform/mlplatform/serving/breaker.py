"""A circuit breaker per dependency (SPEC S6.11): OPEN after N consecutive failures (a success resets the count),
rejects at once while open, then HALF_OPEN admits exactly one probe whose result closes or reopens it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from mlplatform.errors import Overloaded

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitOpenError(Overloaded):
    """The breaker is open: the dependency is not called; 503 with Retry-After unless a fallback answers."""


class CircuitBreaker:
    def __init__(self, name: str, failure_threshold: int = 5, reset_timeout_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self.reset_timeout_s:
                return HALF_OPEN
            return self._state

    def before_call(self) -> None:
        """Raise :class:`CircuitOpenError` unless this call may go through (one probe when half-open)."""
        with self._lock:
            if self._state == OPEN:
                if self._clock() - self._opened_at < self.reset_timeout_s:
                    raise self._open_error()
                self._state = HALF_OPEN
                self._probe_in_flight = False
            if self._state == HALF_OPEN:
                if self._probe_in_flight:
                    raise self._open_error()
                self._probe_in_flight = True

    def record_success(self) -> None:
        with self._lock:
            self._state, self._failures, self._probe_in_flight = CLOSED, 0, False

    def release(self) -> None:
        """The call ended without a verdict (cancelled by a deadline or a client that went away, or the input
        was invalid): give the half-open probe slot back so the next call probes. Without this, a cancelled
        probe kept the slot forever and every later call was refused as if the circuit were open."""
        with self._lock:
            self._probe_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == HALF_OPEN or self._failures >= self.failure_threshold:
                self._state, self._opened_at, self._probe_in_flight = OPEN, self._clock(), False

    def _open_error(self) -> CircuitOpenError:
        remaining = max(1, round(self.reset_timeout_s - (self._clock() - self._opened_at)))
        return CircuitOpenError(f"circuit for {self.name} is open", retry_after_s=remaining)
