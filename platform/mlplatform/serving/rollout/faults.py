"""TEST-ONLY fault injection (``rollout.fault_injection: {version: rate}`` in the app args): makes a chosen
version fail an exact, deterministic fraction of its requests, so the guard's rollback can be tested without a
flaky model. Empty by default; never set it in production configs."""

from __future__ import annotations

import math

from mlplatform.errors import ConfigError


class InjectedFault(RuntimeError):
    """A deliberate failure; answered like any unexpected model error (500, generic message)."""


class FaultInjector:
    def __init__(self, rates: dict[int, float], load_failures: dict[int, int] | None = None,
                 delays: dict[int, float] | None = None) -> None:
        self.rates = {int(v): float(r) for v, r in rates.items() if r > 0}
        self.delays = {int(v): float(s) for v, s in (delays or {}).items() if s > 0}
        # only a deployment configured for fault injection accepts changes at run time (chaos tests)
        self.enabled = bool(rates or delays or load_failures)  # any entry, even a rate of 0, opts in
        self._counts: dict[int, int] = {}
        self._load_failures = {int(v): int(n) for v, n in (load_failures or {}).items()}

    def check_load(self, version: int) -> None:
        """The first N loads of a version fail as a store or network hiccup would (a transient error)."""
        left = self._load_failures.get(version, 0)
        if left > 0:
            self._load_failures[version] = left - 1
            raise ConnectionError(f"injected transient load failure of version {version} ({left - 1} left)")

    def check(self, version: int) -> None:
        rate = self.rates.get(version)
        if rate is None:
            return
        n = self._counts.get(version, 0)
        self._counts[version] = n + 1
        # request n fails when the running count of failures (floor(n * rate)) steps up: exactly rate overall
        if math.floor((n + 1) * rate) > math.floor(n * rate):
            raise InjectedFault(f"injected fault in version {version} (request {n + 1})")

    def change(self, rates: dict[int, float] | None = None, delays: dict[int, float] | None = None) -> None:
        """Replace rates and delays of a running replica (chaos tests: a model that breaks, then heals)."""
        if not self.enabled:
            raise ConfigError("fault injection is not configured for this deployment", field="fault_injection")
        if rates is not None:
            self.rates = {int(v): float(r) for v, r in rates.items() if r > 0}
        if delays is not None:
            self.delays = {int(v): float(s) for v, s in delays.items() if s > 0}
