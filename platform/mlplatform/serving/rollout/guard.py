"""The rollout guard's decision (SPEC S7.5, S7.7), a pure function of two windows and the policy.

Nothing is decided below ``min_requests`` per variant: a 5 % canary over 50 requests would otherwise decide on two
or three requests. Rollback triggers: challenger error rate above ``max_error_rate``, or its p99 above
``p99_ratio`` x the champion's (and above it by at least ``p99_floor_ms``, because on a loaded 2-core host a few
milliseconds of scheduling noise can double a 3 ms p99). Advancing needs the stage minimum time, the sample
minimum on both sides, no trigger and no significant deficit on the live metric (error rate, one-sided
two-proportion z-test): an inconclusive result extends the stage.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlplatform.serving.rollout.window import WindowStats

HOLD, ROLLBACK, ADVANCE, ALARM = "hold", "rollback", "advance", "alarm"


class GuardPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_requests: int = Field(default=100, ge=1, description="Requests per variant before anything is decided.")
    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="Challenger error rate that rolls back.")
    p99_ratio: float = Field(default=2.0, gt=1, description="Challenger p99 / champion p99 that rolls back.")
    p99_floor_ms: float = Field(default=10.0, ge=0, description="p99 differences below this are noise.")
    champion_alarm_error_rate: float = Field(default=0.05, ge=0, le=1, description="RED alert, no action.")
    stage_min_s: float = Field(default=600.0, ge=0, description="Time in a stage before it may advance.")
    cooldown_s: float = Field(default=600.0, ge=0, description="No automatic action this long after a rollback.")
    auto_advance: bool = True
    alpha: float = Field(default=0.05, gt=0, lt=1, description="Significance of the live-metric deficit test.")


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def p_challenger_worse(champion_errors: int, champion_n: int, challenger_errors: int, challenger_n: int) -> float:
    """One-sided p-value of H1: challenger error rate > champion error rate (pooled two-proportion z-test)."""
    if champion_n == 0 or challenger_n == 0:
        return 1.0
    p1, p2 = challenger_errors / challenger_n, champion_errors / champion_n
    pooled = (champion_errors + challenger_errors) / (champion_n + challenger_n)
    se = math.sqrt(pooled * (1 - pooled) * (1 / champion_n + 1 / challenger_n))
    if se == 0:
        return 1.0 if p1 <= p2 else 0.0
    z = (p1 - p2) / se
    return 0.5 * math.erfc(z / math.sqrt(2))


def decide(policy: GuardPolicy, champion: WindowStats, challenger: WindowStats, *, seconds_in_stage: float,
           in_cooldown: bool = False, can_advance: bool = True) -> Decision:
    metrics = {"champion": champion.to_dict(), "challenger": challenger.to_dict(),
               "seconds_in_stage": round(seconds_in_stage, 3)}
    if challenger.requests < policy.min_requests:
        return Decision(HOLD, f"challenger has {challenger.requests} < {policy.min_requests} requests in the window",
                        metrics=metrics)
    if challenger.error_rate > policy.max_error_rate:
        return Decision(ROLLBACK, f"challenger error rate {challenger.error_rate:.2%} > {policy.max_error_rate:.2%} "
                        f"({challenger.errors} of {challenger.requests} requests)", metric="error_rate",
                        value=challenger.error_rate, threshold=policy.max_error_rate, metrics=metrics)
    if champion.requests < policy.min_requests:
        return Decision(HOLD, f"champion has {champion.requests} < {policy.min_requests} requests in the window",
                        metrics=metrics)
    if champion.p99_ms is not None and challenger.p99_ms is not None:
        limit = policy.p99_ratio * champion.p99_ms
        if challenger.p99_ms > limit and challenger.p99_ms - champion.p99_ms > policy.p99_floor_ms:
            return Decision(ROLLBACK, f"challenger p99 {challenger.p99_ms:.1f} ms > {policy.p99_ratio:g} x champion "
                            f"p99 {champion.p99_ms:.1f} ms", metric="p99_latency_ms", value=challenger.p99_ms,
                            threshold=limit, metrics=metrics)
    if champion.error_rate >= policy.champion_alarm_error_rate:
        return Decision(ALARM, f"champion error rate {champion.error_rate:.2%} >= "
                        f"{policy.champion_alarm_error_rate:.2%}", metric="champion_error_rate",
                        value=champion.error_rate, threshold=policy.champion_alarm_error_rate, metrics=metrics)
    if in_cooldown or not policy.auto_advance or not can_advance:
        return Decision(HOLD, "no automatic advance (cooldown, manual mode or last stage)", metrics=metrics)
    if seconds_in_stage < policy.stage_min_s:
        return Decision(HOLD, f"{seconds_in_stage:.0f} s < {policy.stage_min_s:g} s in stage", metrics=metrics)
    p_value = p_challenger_worse(champion.errors, champion.requests, challenger.errors, challenger.requests)
    metrics["p_worse"] = p_value
    if p_value < policy.alpha:
        return Decision(HOLD, f"challenger error rate significantly worse (p={p_value:.3f}); stage extended",
                        metric="error_rate", value=challenger.error_rate, metrics=metrics)
    return Decision(ADVANCE, f"challenger not worse on error rate (p={p_value:.3f}) over "
                    f"{challenger.requests} requests", metric="error_rate", value=challenger.error_rate,
                    metrics=metrics)
