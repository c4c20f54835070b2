"""Sliding-window request statistics per served version (SPEC S7.5): bounded deque, monotonic clock.

One event per request (not per row): a 100-row batch is one request. Old events fall out by time; the deque is
also bounded by count so a traffic spike cannot grow memory without limit (the oldest events go first).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class WindowStats:
    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error_rate": self.error_rate}


EMPTY = WindowStats(0, 0, None, None)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (no interpolation: p99 of 100 values is the 99th smallest)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class SlidingWindow:
    def __init__(self, window_s: float = 300.0, max_events: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._events: deque[tuple[float, float, bool]] = deque(maxlen=max_events)
        self._lock = threading.Lock()
        self.total_requests = 0
        self.total_errors = 0

    def record(self, latency_ms: float, ok: bool) -> None:
        with self._lock:
            self._events.append((self._clock(), latency_ms, ok))
            self.total_requests += 1
            self.total_errors += 0 if ok else 1

    def stats(self) -> WindowStats:
        with self._lock:
            cutoff = self._clock() - self.window_s
            while self._events and self._events[0][0] < cutoff:
                self._events.popleft()
            events = list(self._events)
        if not events:
            return EMPTY
        # latency of answered requests only: a fast failure must not make p99 look better
        latencies = sorted(lat for _, lat, ok in events if ok)
        errors = sum(1 for _, _, ok in events if not ok)
        return WindowStats(len(events), errors, percentile(latencies, 50), percentile(latencies, 99))


class VersionStats:
    """One window per served version, plus the roles it played (champion, challenger, shadow)."""

    def __init__(self, window_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._windows: dict[int, SlidingWindow] = {}
        self._roles: dict[int, set[str]] = {}
        self._lock = threading.Lock()

    def window(self, version: int) -> SlidingWindow:
        with self._lock:
            found = self._windows.get(version)
            if found is None:
                found = self._windows[version] = SlidingWindow(self.window_s, clock=self._clock)
            return found

    def record(self, version: int, role: str, latency_ms: float, ok: bool) -> None:
        self.window(version).record(latency_ms, ok)
        with self._lock:
            self._roles.setdefault(version, set()).add(role)

    def stats(self, version: int) -> WindowStats:
        with self._lock:
            found = self._windows.get(version)
        return EMPTY if found is None else found.stats()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            versions = sorted(self._windows)
            roles = {v: sorted(self._roles.get(v, ())) for v in versions}
        out = {}
        for version in versions:
            window = self._windows[version]
            out[str(version)] = {**window.stats().to_dict(), "roles": roles[version],
                                 "total_requests": window.total_requests, "total_errors": window.total_errors}
        return out

    def forget(self, keep: set[int]) -> None:
        with self._lock:
            for version in [v for v in self._windows if v not in keep]:
                del self._windows[version]
                self._roles.pop(version, None)
