"""The one exception tree of mlplatform.

The category (the direct subclass of :class:`MLPlatformError`) decides the HTTP status and the CLI exit code;
leaves only word the message. Every exception pickles across Ray processes because all state lives in ``args``
and plain attributes restored by ``__reduce__``.
"""

from __future__ import annotations

from typing import Any


class MLPlatformError(Exception):
    """Base of every expected mlplatform error."""

    http_status: int = 500
    exit_code: int = 1

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.field, self.details))

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": type(self).__name__, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.details:
            body["details"] = self.details
        return body

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def _rebuild(cls: type[MLPlatformError], message: str, field: str | None, details: dict[str, Any]) -> Any:
    return cls(message, field=field, **details)


class NotFound(MLPlatformError):
    """An unknown model, version, alias, run, dataset or experiment."""

    http_status = 404
    exit_code = 2


class InvalidInput(MLPlatformError):
    """Input that does not fit its schema: request bodies, CLI arguments, data rows."""

    http_status = 422
    exit_code = 2


class ConfigError(InvalidInput):
    """A malformed YAML config or setting; the message names the file and the field."""


class Conflict(MLPlatformError):
    """A write that contradicts what exists: re-registering a version, a duplicate name."""

    http_status = 409
    exit_code = 2


class IntegrityError(MLPlatformError):
    """Stored bytes do not match their recorded SHA-256, or a record is inconsistent."""

    http_status = 500
    exit_code = 2


class Unavailable(MLPlatformError):
    """A dependency cannot be reached (store, Ray, a replica); retrying later may work."""

    http_status = 503
    exit_code = 2


class StoreBusy(Unavailable):
    """The store stayed locked (SQLite ``database is locked``, PostgreSQL lock or serialization conflicts) through
    the busy timeout and the retries; another writer holds it, so retrying later may work."""


class Overloaded(Unavailable):
    """Backpressure: too many queued requests or an open circuit breaker."""


class Timeout(MLPlatformError):
    """An operation passed its deadline."""

    http_status = 504
    exit_code = 1


class PayloadTooLarge(InvalidInput):
    http_status = 413


class Unauthorized(MLPlatformError):
    """A missing or wrong bearer token where authentication is on."""

    http_status = 401
    exit_code = 2


class RateLimited(MLPlatformError):
    """A client over its request budget; ``retry_after_s`` says when it may send again."""

    http_status = 429
    exit_code = 2


class GateFailed(MLPlatformError):
    """A candidate failed a promotion gate or a check; exit code 3 so scripts can branch on it."""

    http_status = 409
    exit_code = 3


def http_status_for(exc: BaseException) -> int:
    return exc.http_status if isinstance(exc, MLPlatformError) else 500


def exit_code_for(exc: BaseException) -> int:
    return exc.exit_code if isinstance(exc, MLPlatformError) else 1
