"""Structured logging with secrets redacted (SPEC S9.7)."""

from __future__ import annotations

import logging
import re

from mlplatform.settings import get_settings

_SECRET_PATTERNS = [
    re.compile(r"(?P<prefix>://[^:/@\s]+:)(?P<secret>[^@\s]+)(?=@)"),  # passwords in DSNs
    re.compile(r"(?P<prefix>(?:password|passwd|token|secret|api_key)[\"']?\s*[=:]\s*[\"']?)(?P<secret>[^\s\"',&]+)",
               re.IGNORECASE),
]


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: f"{m.group('prefix')}***", text)
    return text


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str | None = None) -> None:
    root = logging.getLogger("mlplatform")
    if any(isinstance(h.formatter, RedactingFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(level or get_settings().log_level)
    root.propagate = False
