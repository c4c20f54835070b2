"""Mergeable per-column statistics (SPEC S4.2) and exact order statistics.

A :class:`ColumnStats` is a partial over some rows: count, mean and the central moment sums M2, M3. Partials merge
with Chan et al.'s pairwise update, so statistics over many Ray Data blocks equal those over the whole column; the
naive ``E[x^2] - mean^2`` loses all precision near 1e9 and is never used. NaNs are excluded and counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict


class ColumnStats(BaseModel):
    """Moments of the present (non-missing) values of one numeric column; population statistics (ddof 0)."""

    model_config = ConfigDict(extra="forbid")

    count: int = 0
    missing: int = 0
    mean: float = 0.0
    m2: float = 0.0
    m3: float = 0.0
    min: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: np.ndarray) -> ColumnStats:
        values = np.asarray(values, dtype="float64")
        nan = np.isnan(values)
        present = values[~nan]
        n = int(present.size)
        if n == 0:
            return cls(missing=int(nan.sum()))
        mean = float(present.mean())
        # Two-pass central moments: exact enough near 1e9, unlike sums of squares.
        centred = present - mean
        return cls(count=n, missing=int(nan.sum()), mean=mean, m2=float(np.dot(centred, centred)),
                   m3=float(np.sum(centred ** 3)), min=float(present.min()), max=float(present.max()))

    def merge(self, other: ColumnStats) -> ColumnStats:
        """Chan's parallel update of count, mean, M2 and M3 (Pebay 2008 for the third moment)."""
        if other.count == 0:
            return self.model_copy(update={"missing": self.missing + other.missing})
        if self.count == 0:
            return other.model_copy(update={"missing": self.missing + other.missing})
        na, nb = self.count, other.count
        n = na + nb
        delta = other.mean - self.mean
        mean = self.mean + delta * nb / n
        m2 = self.m2 + other.m2 + delta * delta * na * nb / n
        m3 = (self.m3 + other.m3 + delta ** 3 * na * nb * (na - nb) / (n * n)
              + 3.0 * delta * (na * other.m2 - nb * self.m2) / n)
        return ColumnStats(count=n, missing=self.missing + other.missing, mean=mean, m2=m2, m3=m3,
                           min=min(self.min, other.min), max=max(self.max, other.max))  # type: ignore[type-var]

    @property
    def variance(self) -> float:
        return self.m2 / self.count if self.count else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(max(self.variance, 0.0))

    @property
    def skew(self) -> float:
        """Adjusted Fisher-Pearson skewness (what pandas ``Series.skew`` returns); 0 when undefined."""
        n = self.count
        if n < 3 or self.m2 <= 0:
            return 0.0
        g1 = (self.m3 / n) / (self.m2 / n) ** 1.5
        return g1 * math.sqrt(n * (n - 1)) / (n - 2)


def merge_all(parts: Sequence[ColumnStats]) -> ColumnStats:
    total = ColumnStats()
    for part in parts:
        total = total.merge(part)
    return total


def quantile_ranks(n: int, qs: Sequence[float]) -> list[int]:
    """The 0-based order statistics that linear-interpolated quantiles of ``n`` sorted values need."""
    ranks: set[int] = set()
    for q in qs:
        pos = q * (n - 1)
        ranks.update({math.floor(pos), min(math.ceil(pos), n - 1)})
    return sorted(ranks)


def quantiles_from_order_stats(order_stats: dict[int, float], n: int, qs: Sequence[float]) -> list[float]:
    """Linear-interpolated quantiles (NumPy's default method) from the order statistics at :func:`quantile_ranks`.

    Both the pandas and the Ray Data paths go through this one formula, so they agree to the last bit."""
    out = []
    for q in qs:
        pos = q * (n - 1)
        lo, hi = math.floor(pos), min(math.ceil(pos), n - 1)
        a, b = order_stats[lo], order_stats[hi]
        out.append(a if lo == hi or a == b else a + (b - a) * (pos - lo))
    return out


def sorted_quantiles(sorted_present: np.ndarray, qs: Sequence[float]) -> list[float]:
    n = int(sorted_present.size)
    if n == 0:
        return [math.nan for _ in qs]
    ranks = quantile_ranks(n, qs)
    return quantiles_from_order_stats({r: float(sorted_present[r]) for r in ranks}, n, qs)
