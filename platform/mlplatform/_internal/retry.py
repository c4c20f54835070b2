"""One retry utility for sync and async calls (SPEC S9.5).

Full jitter: attempt *n* sleeps ``uniform(0, min(cap, base * 2 ** (n - 1)))``. Only retryable errors are retried;
the last exception is re-raised with its own type and the attempt count attached as ``exc.attempts``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from mlplatform.errors import Timeout, Unavailable

logger = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

RETRYABLE_HTTP_STATUSES = frozenset({429, 502, 503, 504})
_NEVER_RETRY = (ValueError, KeyError, TypeError)


def is_retryable(exc: BaseException) -> bool:
    """Connection errors, timeouts, HTTP 429/502/503/504 and a busy database; nothing else."""
    if isinstance(exc, Unavailable | Timeout | ConnectionError | TimeoutError | asyncio.TimeoutError):
        return True
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return status in RETRYABLE_HTTP_STATUSES
    if isinstance(exc, _NEVER_RETRY):
        return False
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text or "could not serialize access" in text


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_seconds: float = 0.1
    cap_seconds: float = 1.0
    deadline_seconds: float | None = 10.0
    retryable: Callable[[BaseException], bool] = is_retryable

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_seconds < 0 or self.cap_seconds < 0:
            raise ValueError("backoff times must be >= 0")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        upper = min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1))
        return (rng or random).uniform(0.0, upper)


REQUEST_POLICY = RetryPolicy()
JOB_POLICY = RetryPolicy(base_seconds=1.0, cap_seconds=60.0, deadline_seconds=None)
STORE_POLICY = RetryPolicy(max_attempts=5, base_seconds=0.05, cap_seconds=1.0, deadline_seconds=None)

retry_counter = {"retries": 0}


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy = REQUEST_POLICY, *, what: str = "call") -> T:
    start = time.monotonic()
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return fn()
        except BaseException as exc:
            if not _should_retry(exc, attempt, policy, start):
                exc.attempts = attempt  # type: ignore[attr-defined]
                raise
            delay = policy.backoff(attempt)
            retry_counter["retries"] += 1
            logger.warning("retrying %s after %s (attempt %d/%d, %.3fs)", what, type(exc).__name__, attempt,
                           policy.max_attempts, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


async def acall_with_retry(
    fn: Callable[[], Awaitable[T]], policy: RetryPolicy = REQUEST_POLICY, *, what: str = "call",
    attempt_timeout: float | None = None,
) -> T:
    start = time.monotonic()
    for attempt in range(1, policy.max_attempts + 1):
        try:
            if attempt_timeout is None:
                return await fn()
            return await asyncio.wait_for(fn(), attempt_timeout)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) or not _should_retry(exc, attempt, policy, start):
                exc.attempts = attempt  # type: ignore[attr-defined]
                raise
            delay = policy.backoff(attempt)
            retry_counter["retries"] += 1
            logger.warning("retrying %s after %s (attempt %d/%d)", what, type(exc).__name__, attempt,
                           policy.max_attempts)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def _should_retry(exc: BaseException, attempt: int, policy: RetryPolicy, start: float) -> bool:
    if attempt >= policy.max_attempts or not isinstance(exc, Exception) or not policy.retryable(exc):
        return False
    return policy.deadline_seconds is None or time.monotonic() - start < policy.deadline_seconds


def retrying(policy: RetryPolicy = REQUEST_POLICY) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator form of :func:`call_with_retry` for sync functions."""

    def wrap(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> T:
            return call_with_retry(lambda: fn(*args, **kwargs), policy, what=fn.__qualname__)

        return inner

    return wrap
