"""One rule for request ids (SPEC S6.3): 1-128 characters of ``[A-Za-z0-9._-]``; anything else is replaced by a
fresh UUID, so a client can never put arbitrary text into response headers, logs or the prediction log.

:func:`proxy_middlewares` is Serve's HTTP proxy callback (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=
mlplatform.serving.request_id.proxy_middlewares`` in the environment of the Ray nodes): Serve's proxy echoes the
client's ``X-Request-ID`` itself, outside the app, so the header is cleaned there before the proxy reads it.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.middleware import Middleware

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
HEADER = b"x-request-id"
# the environment Ray's nodes need so Serve's proxy cleans the header (read when a proxy starts)
PROXY_ENV = {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "mlplatform.serving.request_id.proxy_middlewares"}


def clean_request_id(given: str | None) -> str:
    return given if given and REQUEST_ID.match(given) else str(uuid.uuid4())


class CleanRequestIdMiddleware:
    """Pure ASGI: replaces an invalid ``X-Request-ID`` request header by a fresh UUID (a valid one is kept)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = list(scope.get("headers") or ())
            given = [v for k, v in headers if k.lower() == HEADER]
            if given:
                value = given[0].decode("latin-1")
                if len(given) > 1 or clean_request_id(value) != value:
                    headers = [(k, v) for k, v in headers if k.lower() != HEADER]
                    headers.append((HEADER, str(uuid.uuid4()).encode()))
                    scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


def proxy_middlewares() -> list[Any]:
    return [Middleware(CleanRequestIdMiddleware)]
