"""TEST-ONLY fault injection (``rollout.fault_injection: {version: rate}`` in the app args): makes a chosen
version fail an exact, deterministic fraction of its requests, so the guard's rollback can be tested without a
flaky model. Empty by default; never set it in production configs."""

from __future__ import annotations

import math


class InjectedFault(RuntimeError):
    """A deliberate failure; answered like any unexpected model error (500, generic message)."""


class FaultInjector:
    def __init__(self, rates: dict[int, float]) -> None:
        self.rates = {int(v): float(r) for v, r in rates.items() if r > 0}
        self._counts: dict[int, int] = {}

    def check(self, version: int) -> None:
        rate = self.rates.get(version)
        if rate is None:
            return
        n = self._counts.get(version, 0)
        self._counts[version] = n + 1
        # request n fails when the running count of failures (floor(n * rate)) steps up: exactly rate overall
        if math.floor((n + 1) * rate) > math.floor(n * rate):
            raise InjectedFault(f"injected fault in version {version} (request {n + 1})")
