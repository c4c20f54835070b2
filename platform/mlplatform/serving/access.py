"""Who may call the predict routes, and how often (SPEC S6.12): an optional bearer token and an optional
per-client sliding-window rate limiter. Both are off by default and live in the ingress, before any model work."""

from __future__ import annotations

import hmac
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping

from mlplatform.errors import ConfigError, RateLimited, Unauthorized
from mlplatform.serving.config import AuthConfig, RateLimitConfig


class TokenCheck:
    """Compares ``Authorization: Bearer <token>`` with the secret in constant time. The secret is read when the
    replica starts (a missing secret fails the deploy, not the first request) and re-read through
    :func:`mlplatform.settings.get_secret`'s 300 s cache, so a rotated file takes effect without a redeploy."""

    def __init__(self, config: AuthConfig) -> None:
        from mlplatform.settings import get_secret

        self._name = config.token_secret
        self._read = lambda: get_secret(self._name, default=None)
        if self._read() is None:
            raise ConfigError(f"auth is enabled but the secret {self._name} is not set (set {self._name}_FILE to "
                              f"a file holding the token, or {self._name})", field="auth.token_secret")

    def check(self, headers: Mapping[str, str]) -> str:
        """The presented token (for the rate limiter's key); Unauthorized when it is missing or wrong."""
        scheme, _, token = (headers.get("authorization") or "").partition(" ")
        secret = self._read()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("a bearer token is required: Authorization: Bearer <token>", field="authorization")
        if secret is None or not hmac.compare_digest(token.strip().encode(), secret.get_secret_value().encode()):
            raise Unauthorized("the bearer token is not valid", field="authorization")
        return token.strip()


class RateLimiter:
    """At most ``requests`` per client key in any ``window_s`` seconds (a sliding log of request times)."""

    def __init__(self, config: RateLimitConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.requests = config.requests
        self.window_s = config.window_s
        self.max_clients = config.max_clients
        self._clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def admit(self, key: str) -> None:
        now = self._clock()
        times = self._seen.pop(key, None) or deque()
        self._seen[key] = times  # most recent last, so the oldest client is forgotten first
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) >= self.requests:
            wait = times[0] + self.window_s - now
            raise RateLimited(f"more than {self.requests} requests in {self.window_s:g} s from this client; retry "
                              f"in {math.ceil(wait)} s", retry_after_s=max(1, math.ceil(wait)))
        times.append(now)
        while len(self._seen) > self.max_clients:
            self._seen.popitem(last=False)


def client_key(headers: Mapping[str, str], token: str | None, address: str | None) -> str:
    user = headers.get("x-user-id")
    if user:
        return f"user:{user}"
    if token:
        return "token:" + hmac.new(b"rate-limit", token.encode(), "sha256").hexdigest()[:16]
    return f"addr:{address or 'unknown'}"
