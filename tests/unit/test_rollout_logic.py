"""Rollout decisions without Ray: sticky split, stage validation, sliding window, guard, faults, shadow bound."""

from __future__ import annotations

import asyncio

import pytest

from mlplatform.errors import InvalidInput
from mlplatform.rollouts.guard import (
    ADVANCE,
    ALARM,
    HOLD,
    ROLLBACK,
    GuardPolicy,
    LabelStats,
    decide,
    decide_probation,
    p_challenger_worse,
)
from mlplatform.rollouts.routing import (
    CHALLENGER,
    assign,
    bucket,
    parse_stages,
    routing_key,
    validate_stages,
)
from mlplatform.rollouts.window import SlidingWindow, WindowStats, percentile
from mlplatform.serving.rollout.faults import FaultInjector, InjectedFault
from mlplatform.serving.rollout.shadow import ShadowQueue


@pytest.mark.parametrize("n_keys", [2_000, 20_000])
def test_95_5_split_lands_within_two_points(n_keys: int) -> None:
    share = sum(assign(f"user-{i}", "salt-1", 5.0) == CHALLENGER for i in range(n_keys)) / n_keys
    assert abs(share - 0.05) <= 0.02, share
    gradual = sum(assign(f"user-{i}", "salt-1", 30.0) == CHALLENGER for i in range(n_keys)) / n_keys
    assert abs(gradual - 0.30) <= 0.02, gradual


def test_assignment_is_sticky_and_only_moves_towards_the_challenger() -> None:
    keys = [f"k{i}" for i in range(5_000)]
    first = [assign(k, "s", 5.0) for k in keys]
    assert first == [assign(k, "s", 5.0) for k in keys]
    wider = [assign(k, "s", 30.0) for k in keys]
    assert all(w == CHALLENGER for f, w in zip(first, wider, strict=True) if f == CHALLENGER)
    assert all(assign(k, "s", 0.0) != CHALLENGER for k in keys)
    assert all(assign(k, "s", 100.0) == CHALLENGER for k in keys)
    assert all(0 <= bucket(k, "s") < 10_000 for k in keys)


def test_routing_key_prefers_user_header_then_entity_then_request_id() -> None:
    rows = [{"customer_id": "c-7", "age": 3}]
    assert routing_key({"x-user-id": "u1", "x-request-key": "k"}, rows, "r1", "customer_id") == "h:u1"
    assert routing_key({"x-request-key": "k"}, rows, "r1", "customer_id") == "h:k"
    assert routing_key({}, rows, "r1", "customer_id") == "e:c-7"
    assert routing_key({}, rows, "r1", None) == "r:r1"


def test_stage_validation_rejects_bad_weights() -> None:
    assert [s["weight"] for s in parse_stages("shadow:0:mirror,canary:5,gradual:30,full:100")] == [0, 5, 30, 100]
    assert parse_stages("shadow:0:mirror")[0]["mirror"] is True
    for bad in ([{"name": "a", "weight": -1}], [{"name": "a", "weight": 101}], [{"name": "a", "weight": True}],
                [{"name": "a", "weight": 5}, {"name": "a", "weight": 6}], []):
        with pytest.raises(InvalidInput):
            validate_stages(bad)
    with pytest.raises(InvalidInput):
        parse_stages("canary:five")


def test_sliding_window_forgets_old_events_and_uses_nearest_rank() -> None:
    now = [0.0]
    window = SlidingWindow(window_s=10, clock=lambda: now[0])
    for i in range(100):
        window.record(float(i + 1), ok=i % 10 != 0)
    stats = window.stats()
    assert (stats.requests, stats.errors) == (100, 10)
    assert stats.p99_ms == 100.0 and stats.p50_ms == 50.0  # answered requests only: 90 values, rank 45
    now[0] = 11.0
    window.record(5.0, ok=True)
    assert window.stats().requests == 1 and window.total_requests == 101
    assert percentile([], 99) is None


def _stats(n: int, errors: int, p99: float = 5.0) -> WindowStats:
    return WindowStats(n, errors, p99 / 2, p99)


def test_guard_rolls_back_on_error_rate_and_latency_and_waits_for_samples() -> None:
    policy = GuardPolicy(min_requests=100, stage_min_s=0)
    assert decide(policy, _stats(1000, 0), _stats(99, 50), seconds_in_stage=1).action == HOLD
    errors = decide(policy, _stats(1000, 0), _stats(100, 5), seconds_in_stage=1)
    assert errors.action == ROLLBACK and errors.metric == "error_rate" and "5.00%" in errors.reason
    assert decide(policy, _stats(1000, 10), _stats(100, 1), seconds_in_stage=1).action == ADVANCE  # 1 % is not > 1 %
    slow = decide(policy, _stats(1000, 0, p99=10), _stats(200, 0, p99=25), seconds_in_stage=1)
    assert slow.action == ROLLBACK and slow.metric == "p99_latency_ms" and slow.threshold == 20
    # 2x a tiny p99 is scheduling noise, not a regression
    assert decide(policy, _stats(1000, 0, p99=2), _stats(200, 0, p99=5), seconds_in_stage=1).action == ADVANCE
    assert decide(policy, _stats(50, 0), _stats(200, 0), seconds_in_stage=1).action == HOLD


def test_guard_advances_only_after_stage_minimum_without_deficit() -> None:
    policy = GuardPolicy(min_requests=100, stage_min_s=600, max_error_rate=0.2)
    assert decide(policy, _stats(500, 5), _stats(500, 5), seconds_in_stage=10).action == HOLD
    assert decide(policy, _stats(500, 5), _stats(500, 5), seconds_in_stage=600).action == ADVANCE
    worse = decide(policy, _stats(2000, 20), _stats(2000, 60), seconds_in_stage=600)
    assert worse.action == HOLD and "significantly worse" in worse.reason
    assert decide(policy, _stats(500, 5), _stats(500, 5), seconds_in_stage=600, in_cooldown=True).action == HOLD
    manual = GuardPolicy(min_requests=100, stage_min_s=0, auto_advance=False)
    assert decide(manual, _stats(500, 0), _stats(500, 0), seconds_in_stage=900).action == HOLD
    alarm = decide(GuardPolicy(min_requests=100), _stats(500, 30), _stats(500, 0), seconds_in_stage=1)
    assert alarm.action == ALARM and alarm.metric == "champion_error_rate"
    assert p_challenger_worse(10, 1000, 40, 1000) < 0.01 < p_challenger_worse(10, 1000, 12, 1000)


def test_accuracy_trigger_needs_labels_a_material_drop_and_significance() -> None:
    policy = GuardPolicy(min_requests=100, stage_min_s=3600)
    ok = _stats(500, 0)
    worse = decide(policy, ok, ok, seconds_in_stage=1, labels=(LabelStats(200, 180), LabelStats(200, 150)))
    assert worse.action == ROLLBACK and worse.metric == "accuracy" and worse.value == 0.75
    assert worse.metrics["labels"]["p_less_accurate"] < 0.05
    # below the label minimum, nothing (even a large drop)
    assert decide(policy, ok, ok, seconds_in_stage=1, labels=(LabelStats(99, 99), LabelStats(99, 0))).action == HOLD
    # a 3 % relative drop is not material, however many labels
    assert decide(policy, ok, ok, seconds_in_stage=1,
                  labels=(LabelStats(50_000, 45_000), LabelStats(50_000, 43_650))).action == HOLD
    # an 8 % drop over 100 labels each is not significant (p ~ 0.07)
    assert decide(policy, ok, ok, seconds_in_stage=1, labels=(LabelStats(100, 90), LabelStats(100, 83))).action == HOLD
    # labels decide even when the request window is below its minimum (labels arrive late)
    late = decide(policy, _stats(10, 0), _stats(10, 0), seconds_in_stage=1,
                  labels=(LabelStats(300, 290), LabelStats(300, 200)))
    assert late.action == ROLLBACK and late.metric == "accuracy"


def test_probation_rolls_back_only_in_probation_and_alarms_after() -> None:
    policy = GuardPolicy(min_requests=100)
    previous = _stats(1000, 0, p99=10)
    assert decide_probation(policy, previous, _stats(99, 99), in_probation=True).action == HOLD
    failing = decide_probation(policy, previous, _stats(200, 10), in_probation=True)
    assert failing.action == ROLLBACK and failing.metric == "error_rate"
    slow = decide_probation(policy, previous, _stats(200, 0, p99=40), in_probation=True)
    assert slow.action == ROLLBACK and slow.metric == "p99_latency_ms"
    wrong = decide_probation(policy, previous, _stats(200, 0), in_probation=True,
                             labels=(LabelStats(300, 290), LabelStats(300, 200)))
    assert wrong.action == ROLLBACK and wrong.metric == "accuracy"
    assert decide_probation(policy, previous, _stats(200, 0), in_probation=True).action == HOLD
    after = decide_probation(policy, previous, _stats(200, 10), in_probation=False)
    assert after.action == ALARM and after.metric == "champion_error_rate"


def test_fault_injection_fails_an_exact_fraction() -> None:
    faults = FaultInjector({2: 0.05})
    failures = 0
    for _ in range(200):
        try:
            faults.check(2)
        except InjectedFault:
            failures += 1
        faults.check(1)  # other versions never fail
    assert failures == 10


def test_shadow_queue_drops_when_full_batches_per_version_and_isolates_failures() -> None:
    calls: list[tuple[int, int]] = []
    results: list[object] = []

    async def scenario() -> ShadowQueue:
        release = asyncio.Event()

        async def send(version: int, batch: list[list[dict]]) -> list[dict]:
            calls.append((version, len(batch)))
            await release.wait()
            if version == 9:
                raise RuntimeError("replica gone")
            return [{"results": b} if b[0]["ok"] else {"error": "InjectedFault: boom"} for b in batch]

        queue = ShadowQueue(send, max_queued=3, max_batch=2, timeout_s=5)
        copies = [(2, [{"ok": True}]), (2, [{"ok": False}]), (3, [{"ok": True}]), (2, [{"ok": True}]),
                  (9, [{"ok": True}])]
        accepted = [queue.submit(v, rows, lambda a, e, ms: results.append(type(e).__name__ if e else "ok"))
                    for v, rows in copies]
        assert accepted == [True, True, True, False, False]  # the drain task has not run yet: queue full at 3
        release.set()
        while queue.stats()["queued"] or len(results) < 3:
            await asyncio.sleep(0.01)
        queue.submit(9, [{"ok": True}], lambda a, e, ms: results.append(type(e).__name__ if e else "ok"))
        while len(results) < 4:
            await asyncio.sleep(0.01)
        return queue

    queue = asyncio.run(scenario())
    assert calls == [(2, 2), (3, 1), (9, 1)]  # one handle call per version per batch
    assert results == ["ok", "ShadowError", "ok", "RuntimeError"]
    assert queue.stats() == {"queued": 0, "sent": 4, "completed": 2, "failed": 2, "dropped": 2}
