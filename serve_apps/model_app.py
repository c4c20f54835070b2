"""Serve application builder for ``serve deploy serve_apps/config.yaml`` and ``mlplatform serve up``.

``import_path: serve_apps.model_app:build_app``: Serve calls ``build_app(args)`` with the YAML's ``args``.
Nothing is deployed at import.
"""

from __future__ import annotations

from mlplatform.serving.app import build_app

__all__ = ["build_app"]
