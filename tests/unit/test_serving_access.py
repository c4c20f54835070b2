"""Predict-route access rules (SPEC S6.12): bearer token check and the per-client sliding-window rate limiter."""

from __future__ import annotations

import pytest

from mlplatform.config.serve import AuthConfig, RateLimitConfig
from mlplatform.errors import ConfigError, RateLimited, Unauthorized
from mlplatform.serving.access import RateLimiter, TokenCheck, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_slides_its_window_per_client() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimitConfig(enabled=True, requests=3, window_s=10), clock=clock)
    for _ in range(3):
        clock.now += 1
        limiter.admit("user:a")
    with pytest.raises(RateLimited) as caught:
        limiter.admit("user:a")
    # the first request (t=1001) leaves the window at t=1011; now is 1003
    assert caught.value.details["retry_after_s"] == 8
    limiter.admit("user:b")  # another client has its own budget
    clock.now = 1011.0
    limiter.admit("user:a")  # the oldest request slid out of the window
    with pytest.raises(RateLimited):
        limiter.admit("user:a")


def test_rate_limiter_forgets_the_least_recent_client_first() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimitConfig(enabled=True, requests=1, window_s=60, max_clients=2), clock=clock)
    limiter.admit("a")
    limiter.admit("b")
    limiter.admit("c")  # "a" is forgotten: it may send again
    limiter.admit("a")
    with pytest.raises(RateLimited):
        limiter.admit("c")


def test_client_key_is_the_principal_or_peer_and_headers_only_from_trusted_proxies() -> None:
    by_token = client_key({}, "tok", "1.2.3.4")
    assert by_token.startswith("token:") and by_token != "token:tok"  # a digest, never the token itself
    assert client_key({}, None, "1.2.3.4") == "addr:1.2.3.4"
    # a client-written header names nobody unless the peer is a trusted proxy
    assert client_key({"x-user-id": "u1"}, "tok", "1.2.3.4") == by_token
    assert client_key({"x-user-id": "u1", "x-forwarded-for": "9.9.9.9"}, None, "1.2.3.4") == "addr:1.2.3.4"
    trusted = ["10.0.0.0/8", "127.0.0.1"]
    assert client_key({"x-user-id": "u1"}, "tok", "10.1.2.3", trusted) == "user:u1"
    assert client_key({"x-forwarded-for": "9.9.9.9, 10.0.0.1"}, None, "127.0.0.1", trusted) == "addr:9.9.9.9"
    assert client_key({"x-user-id": "u1"}, None, "11.0.0.1", trusted) == "addr:11.0.0.1"
    assert client_key({"x-user-id": "u1"}, None, "not-an-ip", trusted) == "addr:not-an-ip"


def test_token_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLP_TEST_SERVE_TOKEN_A", "s3cret")
    check = TokenCheck(AuthConfig(enabled=True, token_secret="MLP_TEST_SERVE_TOKEN_A"))
    assert check.check({"authorization": "Bearer s3cret"}) == "s3cret"
    for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "Basic s3cret"},
                    {"authorization": "Bearer "}):
        with pytest.raises(Unauthorized) as caught:
            check.check(headers)
        assert caught.value.field == "authorization" and caught.value.http_status == 401


def test_token_check_refuses_to_start_without_its_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLP_TEST_SERVE_TOKEN_B", raising=False)
    with pytest.raises(ConfigError, match="MLP_TEST_SERVE_TOKEN_B") as caught:
        TokenCheck(AuthConfig(enabled=True, token_secret="MLP_TEST_SERVE_TOKEN_B"))
    assert caught.value.field == "auth.token_secret"


def test_pii_mask_pseudonymises_with_a_keyed_hmac(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlplatform.config.serve import PiiConfig
    from mlplatform.serving.access import PiiMask

    monkeypatch.setenv("MLP_TEST_PII_KEY_A", "k1")
    mask = PiiMask(PiiConfig(fields=["email", "entity_id"], key_secret="MLP_TEST_PII_KEY_A"))
    row = {"email": "a@b.c", "age": 31}
    masked = mask.features(row)
    assert masked["age"] == 31 and masked["email"].startswith("hmac-sha256:") and "a@b.c" not in masked["email"]
    assert mask.features({"email": "a@b.c"}) == {"email": masked["email"]}  # stable: still joinable
    assert mask.features({"email": None}) == {"email": None}
    assert row == {"email": "a@b.c", "age": 31}  # the request's own row is untouched
    assert mask.entity("cust-1").startswith("hmac-sha256:") and mask.entity(None) is None
    monkeypatch.setenv("MLP_TEST_PII_KEY_B", "k2")
    other = PiiMask(PiiConfig(fields=["email"], key_secret="MLP_TEST_PII_KEY_B"))
    assert other.features(row)["email"] != masked["email"]  # keyed: another key, another pseudonym


def test_pii_mask_drops_and_refuses_to_start_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlplatform.config.serve import PiiConfig
    from mlplatform.serving.access import PiiMask

    dropped = PiiMask(PiiConfig(fields=["email"], action="drop"))
    assert dropped.features({"email": "a@b.c", "age": 3}) == {"age": 3}
    assert PiiMask(PiiConfig()).features({"email": "x"}) == {"email": "x"}  # nothing configured
    monkeypatch.delenv("MLP_TEST_PII_KEY_C", raising=False)
    with pytest.raises(ConfigError) as caught:
        PiiMask(PiiConfig(fields=["email"], key_secret="MLP_TEST_PII_KEY_C"))
    assert caught.value.field == "pii.key_secret"
