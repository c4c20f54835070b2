"""Typed settings from the environment (prefix ``MLPLATFORM_``) and secrets from ``NAME_FILE`` or ``NAME``."""

from __future__ import annotations

import os
import threading
import time
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlplatform.errors import ConfigError

SECRET_CACHE_SECONDS = 300.0
_MISSING = object()


class Settings(BaseSettings):
    """One declaration per variable; read once per process via :func:`get_settings`."""

    model_config = SettingsConfigDict(env_prefix="MLPLATFORM_", extra="ignore", frozen=True)

    home: Path = Field(default=Path(".mlplatform"), description="Root folder for the default store and artifacts.")
    store_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the evaluation store; default SQLite under home."
    )
    artifact_uri: str | None = Field(
        default=None, description="pyarrow filesystem URI for artifacts (local path, file://, s3://, gs://...)."
    )
    store_busy_timeout_s: float = Field(
        default=30.0, gt=0, description="How long a store call waits on a locked database before StoreBusy."
    )
    stale_run_seconds: int = Field(
        default=600, gt=0, description="A running run without a heartbeat for this long is failed by `runs gc`."
    )
    heartbeat_seconds: float = Field(default=60.0, gt=0, description="How often a running run records a heartbeat.")
    retention_keep_last: int | None = Field(
        default=None, ge=1, description="`mlplatform gc` keeps the newest N of each series (model versions, a "
        "run's checkpoints, a trial's checkpoints); None keeps everything (SPEC S1.10 default)."
    )
    retention_served_window_s: float = Field(
        default=7 * 86400, gt=0, description="A version that answered a prediction this recently counts as served."
    )
    log_level: str = Field(default="INFO")
    seed: int = Field(default=42, description="Default seed for every random source.")
    ray_address: str | None = Field(default=None, description="Ray address; None starts or joins a local one.")
    inference_threads: int | None = Field(
        default=None, ge=1, description="torch intra-op threads of a process that serves or scores a model; None: "
        "the CPUs Ray assigned to the replica or batch worker (at least 1), so replicas sharing a node do not "
        "oversubscribe it, and torch's own default outside Ray."
    )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    def resolved_store_url(self) -> str:
        """The store URL with a password from ``MLPLATFORM_DB_PASSWORD(_FILE)`` filled in when the URL has none."""
        return with_secret_password(self.shareable_store_url())

    def shareable_store_url(self) -> str:
        """The store URL as configured, without a secret filled in: safe to hand to Ray processes, which read the
        password themselves from ``MLPLATFORM_DB_PASSWORD(_FILE)``."""
        return self.store_url or f"sqlite:///{self.home / 'store.db'}"

    def display_store_url(self) -> str:
        """The store URL safe to print: the password is masked."""
        # heavy: the SQL stack loads only where the store is opened, not in every Ray worker
        from sqlalchemy.engine import make_url

        return make_url(self.resolved_store_url()).render_as_string(hide_password=True)

    def resolved_artifact_uri(self) -> str:
        return self.artifact_uri or str(self.home / "artifacts")


def with_secret_password(store_url: str) -> str:
    # heavy: the SQL stack loads only where the store is opened, not in every Ray worker
    from sqlalchemy.engine import make_url

    url = make_url(store_url)
    if url.password is None and not url.drivername.startswith("sqlite"):
        password = get_secret("MLPLATFORM_DB_PASSWORD", default=None)
        if password is not None:
            url = url.set(password=password.get_secret_value())
    return url.render_as_string(hide_password=False)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's ValidationError names the variable; keep its words, drop its bulk.
        raise ConfigError(f"invalid MLPLATFORM_* setting: {_first_error(exc)}") from exc


def reset_settings() -> None:
    """Forget cached settings and secrets (tests and long-lived processes after an env change)."""
    get_settings.cache_clear()
    with _cache_lock:
        _secret_cache.clear()


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = "MLPLATFORM_" + "_".join(str(p) for p in first.get("loc", ())).upper()
        return f"{where}: {first.get('msg')}"
    return str(exc)


_secret_cache: dict[str, tuple[float, SecretStr]] = {}
_cache_lock = threading.Lock()


def get_secret(name: str, default: object = _MISSING) -> SecretStr | None:
    """Read a secret: the file named by ``NAME_FILE`` first (newline stripped), then env ``NAME``.

    An empty or unreadable file is an error, never "unset". Values are cached for 300 s and returned as
    :class:`pydantic.SecretStr` so that reprs and logs never show them.
    """
    now = time.monotonic()
    with _cache_lock:
        cached = _secret_cache.get(name)
        if cached and now - cached[0] < SECRET_CACHE_SECONDS:
            return cached[1]
    file_path = os.environ.get(f"{name}_FILE")
    value: str | None = None
    if file_path:
        try:
            value = Path(file_path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"secret file for {name} cannot be read ({exc.strerror})", field=f"{name}_FILE") from None
        if not value:
            raise ConfigError(f"secret file for {name} is empty", field=f"{name}_FILE")
    elif name in os.environ:
        value = os.environ[name]
    if value is None:
        if default is _MISSING:
            raise ConfigError(f"secret {name} is not set (set {name}_FILE or {name})", field=name)
        return default  # type: ignore[return-value]
    secret = SecretStr(value)
    with _cache_lock:
        _secret_cache[name] = (now, secret)
    return secret
