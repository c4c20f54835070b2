"""Per-replica prediction cache: a true LRU (hits refresh recency) with a monotonic TTL (SPEC S6.9).

Keys are SHA-256 digests of a canonical JSON of (model name, model version, schema version, features in schema
order), so a new version never serves an old answer and feature order in the request does not matter. Values are
plain JSON-able data, never pickled.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

_MISS = object()  # a cached None is a real value; this sentinel marks absence


def cache_key(model_name: str, version: int | None, schema_version: str, row: Sequence[Any]) -> str:
    canonical = json.dumps([model_name, version, schema_version, list(row)], separators=(",", ":"),
                           allow_nan=False, ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class PredictionCache:
    def __init__(self, max_entries: int = 10_000, ttl_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    def get(self, key: str) -> Any:
        """The cached value, or :data:`MISS` when absent or expired (expired entries are removed on sight)."""
        now = self._clock()
        with self._lock:
            entry = self._data.get(key)
            if entry is None or entry[0] <= now:
                if entry is not None:
                    del self._data[key]
                self.misses += 1
                return _MISS
            self._data.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = (self._clock() + self.ttl_s, value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
                self.evictions += 1

    def purge_expired(self) -> int:
        now = self._clock()
        with self._lock:
            expired = [k for k, (deadline, _) in self._data.items() if deadline <= now]
            for key in expired:
                del self._data[key]
            return len(expired)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            total = self.hits + self.misses
            return {"size": len(self._data), "hits": self.hits, "misses": self.misses,
                    "evictions": self.evictions, "hit_ratio": self.hits / total if total else 0.0}


MISS = _MISS
