"""Who may call the predict routes, how often, and what of a request may be stored (SPEC S6.12): an optional
bearer token, an optional per-client sliding-window rate limiter (both off by default, in the ingress before any
model work), and the PII rule applied to every prediction-log row before it is written."""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mlplatform.config.serve import AuthConfig, PiiConfig, RateLimitConfig
from mlplatform.errors import ConfigError, RateLimited, Unauthorized
from mlplatform.settings import get_secret


class TokenCheck:
    """Compares ``Authorization: Bearer <token>`` with the secret in constant time. The secret is read when the
    replica starts (a missing secret fails the deploy, not the first request) and re-read through
    :func:`mlplatform.settings.get_secret`'s 300 s cache, so a rotated file takes effect without a redeploy."""

    def __init__(self, config: AuthConfig) -> None:
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


def client_key(headers: Mapping[str, str], token: str | None, address: str | None,
               trusted_proxies: Sequence[str] = ()) -> str:
    """The rate limiter's key: who the request comes from, as far as the server can know it. A header the client
    writes (X-User-ID, X-Forwarded-For) counts only when the peer is a configured trusted proxy; rotating it from
    anywhere else does not buy a fresh budget. Then the authenticated principal, then the peer address."""
    if address and trusted_proxies and _is_trusted(address, trusted_proxies):
        user = headers.get("x-user-id")
        if user:
            return f"user:{user[:128]}"
        forwarded = (headers.get("x-forwarded-for") or "").split(",")[0].strip()
        if forwarded:
            return f"addr:{forwarded[:64]}"
    if token:
        return "token:" + hmac.new(b"rate-limit", token.encode(), "sha256").hexdigest()[:16]
    return f"addr:{address or 'unknown'}"


def _is_trusted(address: str, trusted: Sequence[str]) -> bool:
    try:
        peer = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(peer in ipaddress.ip_network(net, strict=False) for net in trusted)


class PiiMask:
    """Drops or pseudonymises the configured fields of a logged row. Pseudonyms are ``hmac-sha256:<hex>`` of the
    value's JSON text under a secret key, so equal values stay joinable (labels, drift by value) and nobody without
    the key can test a guess. A missing key fails the replica at start: the log never silently keeps raw values."""

    PREFIX = "hmac-sha256:"

    def __init__(self, config: PiiConfig) -> None:
        self.fields = frozenset(config.fields)
        self.drop = config.action == "drop"
        self._key = b""
        if self.fields and not self.drop:
            key = get_secret(config.key_secret, default=None)
            if key is None:
                raise ConfigError(f"pii.fields are set but the HMAC key secret {config.key_secret} is not (set "
                                  f"{config.key_secret}_FILE or {config.key_secret}), or use pii.action: drop",
                                  field="pii.key_secret")
            self._key = key.get_secret_value().encode()

    def value(self, value: Any) -> str | None:
        if value is None or self.drop:
            return None
        text = json.dumps(value, sort_keys=True, default=str)
        return self.PREFIX + hmac.new(self._key, text.encode(), "sha256").hexdigest()

    def features(self, row: dict[str, Any]) -> dict[str, Any]:
        if not self.fields:
            return row
        if self.drop:
            return {k: v for k, v in row.items() if k not in self.fields}
        return {k: self.value(v) if k in self.fields else v for k, v in row.items()}

    def entity(self, entity_id: str | None) -> str | None:
        return self.value(entity_id) if entity_id is not None and "entity_id" in self.fields else entity_id
