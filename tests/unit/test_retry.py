from __future__ import annotations

import asyncio

import pytest

from mlplatform._internal.retry import RetryPolicy, acall_with_retry, call_with_retry
from mlplatform.errors import Unavailable

FAST = RetryPolicy(max_attempts=3, base_seconds=0.001, cap_seconds=0.002)


def test_retries_retryable_errors_then_reraises_with_attempts() -> None:
    calls = []

    def flaky() -> int:
        calls.append(1)
        raise Unavailable("down")

    with pytest.raises(Unavailable) as info:
        call_with_retry(flaky, FAST)
    assert len(calls) == 3 and info.value.attempts == 3


def test_never_retries_value_or_key_errors() -> None:
    calls = []

    def broken() -> int:
        calls.append(1)
        raise KeyError("x")

    with pytest.raises(KeyError):
        call_with_retry(broken, FAST)
    assert len(calls) == 1


def test_succeeds_after_a_transient_failure_async() -> None:
    state = {"n": 0}

    async def sometimes() -> str:
        state["n"] += 1
        if state["n"] < 2:
            raise ConnectionError("reset")
        return "ok"

    assert asyncio.run(acall_with_retry(sometimes, FAST)) == "ok" and state["n"] == 2


def test_backoff_is_full_jitter_with_cap_and_rejects_zero_attempts() -> None:
    import random

    policy = RetryPolicy(base_seconds=0.1, cap_seconds=1.0)
    rng = random.Random(0)
    assert all(0 <= policy.backoff(a, rng) <= min(1.0, 0.1 * 2 ** (a - 1)) for a in range(1, 10) for _ in range(50))
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
