"""The rollout guard's decision (SPEC S7.5, S7.7), a pure function of two windows and the policy.

Nothing is decided below ``min_requests`` per variant: a 5 % canary over 50 requests would otherwise decide on two
or three requests. Rollback triggers: challenger error rate above ``max_error_rate``, or its p99 above
``p99_ratio`` x the champion's (and above it by at least ``p99_floor_ms``, because on a loaded 2-core host a few
milliseconds of scheduling noise can double a 3 ms p99). Advancing needs the stage minimum time, the sample
minimum on both sides, no trigger and no significant deficit on the live metric (error rate, one-sided
two-proportion z-test): an inconclusive result extends the stage.

Accuracy trigger (where labels exist): the labelled answers of each version in the rollout (feedback joined to
the prediction log by request id and instance index) give ``k`` correct of ``n``. The challenger is rolled back
when both sides have at least ``min_labels``, its accuracy is below the champion's by more than
``max_accuracy_drop`` (relative), and the one-sided pooled two-proportion z-test of "challenger less accurate"
gives p < ``alpha``. The z-test (not an exact test) because n >= 100 per side keeps the normal approximation
sound and it is the same test the stage-advance check already uses on error rates: one implementation.

Probation (SPEC S7.7): after a promotion the new champion is checked against the previous champion's last
window (kept with the rollout) for ``probation_s``; a trigger moves the champion alias back. Outside probation a
champion error rate >= ``champion_alarm_error_rate`` raises an alarm without any action.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlplatform.rollouts.window import WindowStats

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
    min_labels: int = Field(default=100, ge=1, description="Labelled answers per variant before accuracy decides.")
    max_accuracy_drop: float = Field(default=0.05, ge=0, lt=1,
                                     description="Relative accuracy deficit of the challenger that rolls back.")
    label_window_s: float = Field(default=3600.0, gt=0, description="Age of the labelled answers the guard reads.")
    probation_s: float = Field(default=3600.0, ge=0, description="A new champion is guarded this long.")


@dataclass(frozen=True)
class LabelStats:
    """Labelled answers of one version: ``correct`` of ``n``."""

    n: int = 0
    correct: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n if self.n else None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "correct": self.correct, "accuracy": self.accuracy}


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


def accuracy_trigger(policy: GuardPolicy, champion: LabelStats, challenger: LabelStats,
                     metrics: dict[str, Any], who: str = "challenger") -> Decision | None:
    """ROLLBACK when ``challenger`` (the new version) is significantly and materially less accurate than
    ``champion`` (the reference) on labelled answers; None when it is not, or below the label minimum."""
    metrics["labels"] = {"champion": champion.to_dict(), who: challenger.to_dict()}
    if champion.n < policy.min_labels or challenger.n < policy.min_labels or not champion.correct:
        return None
    ref, new = champion.correct / champion.n, challenger.correct / challenger.n
    drop = (ref - new) / ref
    p_value = p_challenger_worse(champion.n - champion.correct, champion.n, challenger.n - challenger.correct,
                                 challenger.n)
    metrics["labels"]["p_less_accurate"] = p_value
    if drop > policy.max_accuracy_drop and p_value < policy.alpha:
        return Decision(ROLLBACK, f"{who} accuracy {new:.1%} below the champion's {ref:.1%} by {drop:.1%} "
                        f"relative (> {policy.max_accuracy_drop:.0%}; p={p_value:.4f}; {challenger.n} and "
                        f"{champion.n} labels)", metric="accuracy", value=new,
                        threshold=ref * (1 - policy.max_accuracy_drop), metrics=metrics)
    return None


def decide(policy: GuardPolicy, champion: WindowStats, challenger: WindowStats, *, seconds_in_stage: float,
           in_cooldown: bool = False, can_advance: bool = True,
           labels: tuple[LabelStats, LabelStats] | None = None) -> Decision:
    """``labels``: (champion, challenger) labelled answers, when labels exist."""
    metrics = {"champion": champion.to_dict(), "challenger": challenger.to_dict(),
               "seconds_in_stage": round(seconds_in_stage, 3)}
    if challenger.requests >= policy.min_requests and challenger.error_rate > policy.max_error_rate:
        return Decision(ROLLBACK, f"challenger error rate {challenger.error_rate:.2%} > {policy.max_error_rate:.2%} "
                        f"({challenger.errors} of {challenger.requests} requests)", metric="error_rate",
                        value=challenger.error_rate, threshold=policy.max_error_rate, metrics=metrics)
    # labels have their own minimum and may be older than the request window: checked before its minimum
    found = accuracy_trigger(policy, *labels, metrics) if labels is not None else None
    if found is not None:
        return found
    if challenger.requests < policy.min_requests:
        return Decision(HOLD, f"challenger has {challenger.requests} < {policy.min_requests} requests in the window",
                        metrics=metrics)
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


def decide_probation(policy: GuardPolicy, previous: WindowStats, champion: WindowStats, *, in_probation: bool,
                     labels: tuple[LabelStats, LabelStats] | None = None) -> Decision:
    """A promoted champion against the previous champion's last window (SPEC S7.7). In probation the rollback
    triggers apply as to a challenger (error rate, p99 against the previous p99, accuracy against the previous
    accuracy); after it, only the champion alarm, without action. ``labels``: (previous, champion)."""
    metrics = {"previous_champion": previous.to_dict(), "champion": champion.to_dict(), "probation": in_probation}
    if in_probation:
        if champion.requests >= policy.min_requests and champion.error_rate > policy.max_error_rate:
            return Decision(ROLLBACK, f"new champion error rate {champion.error_rate:.2%} > "
                            f"{policy.max_error_rate:.2%} in probation ({champion.errors} of {champion.requests} "
                            f"requests)", metric="error_rate", value=champion.error_rate,
                            threshold=policy.max_error_rate, metrics=metrics)
        found = accuracy_trigger(policy, *labels, metrics, who="new champion") if labels is not None else None
        if found is not None:
            return found
        if (champion.requests >= policy.min_requests and previous.requests >= policy.min_requests
                and previous.p99_ms is not None and champion.p99_ms is not None):
            limit = policy.p99_ratio * previous.p99_ms
            if champion.p99_ms > limit and champion.p99_ms - previous.p99_ms > policy.p99_floor_ms:
                return Decision(ROLLBACK, f"new champion p99 {champion.p99_ms:.1f} ms > {policy.p99_ratio:g} x "
                                f"the previous champion's {previous.p99_ms:.1f} ms in probation",
                                metric="p99_latency_ms", value=champion.p99_ms, threshold=limit, metrics=metrics)
        return Decision(HOLD, "new champion in probation: no trigger", metrics=metrics)
    if champion.requests >= policy.min_requests and champion.error_rate >= policy.champion_alarm_error_rate:
        return Decision(ALARM, f"champion error rate {champion.error_rate:.2%} >= "
                        f"{policy.champion_alarm_error_rate:.2%}", metric="champion_error_rate",
                        value=champion.error_rate, threshold=policy.champion_alarm_error_rate, metrics=metrics)
    return Decision(HOLD, "champion healthy", metrics=metrics)
