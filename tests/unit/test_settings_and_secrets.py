"""Settings from env and from ``*_FILE`` secrets; a secret never appears in logs or CLI output."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlplatform.errors import ConfigError
from mlplatform.logs import RedactingFormatter, redact
from mlplatform.settings import get_secret, get_settings, reset_settings


def test_defaults_live_under_home(isolated_env: Path) -> None:
    settings = get_settings()
    assert settings.home == isolated_env.resolve()
    assert settings.resolved_store_url() == f"sqlite:///{isolated_env.resolve() / 'store.db'}"
    assert settings.resolved_artifact_uri() == str(isolated_env.resolve() / "artifacts")


def test_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPLATFORM_STORE_URL", "postgresql://u@db.internal:5432/ml")
    monkeypatch.setenv("MLPLATFORM_ARTIFACT_URI", "s3://bucket/prefix")
    monkeypatch.setenv("MLPLATFORM_LOG_LEVEL", "debug")
    reset_settings()
    settings = get_settings()
    assert settings.resolved_artifact_uri() == "s3://bucket/prefix"
    assert settings.log_level == "DEBUG"
    assert settings.store_url == "postgresql://u@db.internal:5432/ml"


def test_secret_file_wins_over_env_and_fills_the_dsn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-file-s3cret\n")
    monkeypatch.setenv("MLPLATFORM_DB_PASSWORD_FILE", str(secret_file))
    monkeypatch.setenv("MLPLATFORM_DB_PASSWORD", "from-env")
    monkeypatch.setenv("MLPLATFORM_STORE_URL", "postgresql://ml@db:5432/ml")
    reset_settings()
    assert get_secret("MLPLATFORM_DB_PASSWORD").get_secret_value() == "from-file-s3cret"
    settings = get_settings()
    assert "from-file-s3cret" in settings.resolved_store_url()
    assert "from-file-s3cret" not in settings.display_store_url() and "***" in settings.display_store_url()
    assert "from-file-s3cret" not in repr(get_secret("MLPLATFORM_DB_PASSWORD"))


def test_env_secret_used_when_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", "tok-123")
    reset_settings()
    assert get_secret("API_TOKEN").get_secret_value() == "tok-123"
    assert get_secret("NOT_SET_ANYWHERE", default=None) is None
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        get_secret("NOT_SET_ANYWHERE")


def test_empty_or_unreadable_secret_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("TOKEN_FILE", str(empty))
    reset_settings()
    with pytest.raises(ConfigError, match="empty"):
        get_secret("TOKEN")
    monkeypatch.setenv("TOKEN_FILE", str(tmp_path / "absent"))
    reset_settings()
    with pytest.raises(ConfigError, match="cannot be read"):
        get_secret("TOKEN")


def test_log_records_are_redacted() -> None:
    record = logging.LogRecord("mlplatform", logging.INFO, __file__, 1,
                               "connecting to postgresql://ml:topsecret@db/ml with token=abc123", None, None)
    text = RedactingFormatter("%(message)s").format(record)
    assert "topsecret" not in text and "abc123" not in text
    assert redact("password: hunter2") == "password: ***"


def test_secret_never_printed_by_cli(tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("sup3r-s3cret")
    env = {**os.environ, "MLPLATFORM_DB_PASSWORD_FILE": str(secret_file),
           "MLPLATFORM_STORE_URL": "postgresql://ml@127.0.0.1:1/ml", "MLPLATFORM_LOG_LEVEL": "DEBUG"}
    for args in (["store", "info", "--json"], ["models", "list"], ["store", "upgrade"]):
        result = subprocess.run([sys.executable, "-m", "mlplatform.cli.main", *args], capture_output=True,
                                text=True, env=env, timeout=60)
        assert "sup3r-s3cret" not in result.stdout + result.stderr
