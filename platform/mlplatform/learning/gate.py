"""The promotion gate (SPEC S2.9): beat the best baseline by a margin, meet the floor, and be no worse than the
champion scored on the same holdout. An absolute floor alone is never enough."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mlplatform.learning.metrics import metric_mode


@dataclass(frozen=True)
class GateResult:
    metric: str
    mode: str
    candidate: float
    passed: bool
    reasons: list[str] = field(default_factory=list)
    baseline: float | None = None
    baseline_family: str | None = None
    lift: float | None = None
    champion: float | None = None
    champion_version: int | None = None
    floor: float | None = None
    forced: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _better_or_equal(a: float, b: float, mode: str) -> bool:
    return a >= b if mode == "max" else a <= b


def evaluate_gate(metric: str, candidate: dict[str, float], baselines: dict[str, dict[str, float]], *,
                  min_lift: float = 0.01, floor: float | None = None, champion: float | None = None,
                  champion_version: int | None = None, forced: bool = False) -> GateResult:
    mode = metric_mode(metric)
    value = candidate.get(metric)
    if value is None:
        return GateResult(metric, mode, float("nan"), forced, [f"the candidate has no {metric!r} metric"],
                          forced=forced)
    reasons = []
    best_family, best_value, lift = None, None, None
    scored = {family: m[metric] for family, m in baselines.items() if metric in m}
    if scored:
        pick = max if mode == "max" else min
        best_family = pick(scored, key=lambda f: scored[f])
        best_value = scored[best_family]
        lift = value - best_value if mode == "max" else best_value - value
        if lift < min_lift - 1e-12:
            reasons.append(f"{metric} {value:.4f} does not beat the {best_family} baseline {best_value:.4f} by "
                           f"{min_lift} (lift {lift:+.4f})")
    if floor is not None and not _better_or_equal(value, floor, mode):
        reasons.append(f"{metric} {value:.4f} misses the floor {floor} ({'>=' if mode == 'max' else '<='})")
    if champion is not None and not _better_or_equal(value, champion, mode):
        reasons.append(f"{metric} {value:.4f} is worse than the champion (version {champion_version}) at "
                       f"{champion:.4f} on the same holdout")
    return GateResult(metric=metric, mode=mode, candidate=value, passed=not reasons or forced, reasons=reasons,
                      baseline=best_value, baseline_family=best_family, lift=lift, champion=champion,
                      champion_version=champion_version, floor=floor, forced=forced and bool(reasons))
