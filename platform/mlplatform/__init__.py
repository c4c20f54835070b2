"""mlplatform: a tabular ML platform on Ray (train, tune, register, batch-score, serve, monitor).

The public API is what ``__all__`` lists; everything else may change without notice. Names load lazily (PEP 562)
so that Ray workers importing one submodule do not pay for SQLAlchemy, Alembic and pandas at start-up.
"""

import importlib as _importlib
from typing import Any as _Any

_EXPORTS: dict[str, str] = {
    "AlertLevel": "mlplatform.entities",
    "Client": "mlplatform.client",
    "ConfigError": "mlplatform.errors",
    "Conflict": "mlplatform.errors",
    "GateFailed": "mlplatform.errors",
    "IntegrityError": "mlplatform.errors",
    "InvalidInput": "mlplatform.errors",
    "MLPlatformError": "mlplatform.errors",
    "ModelVersion": "mlplatform.entities",
    "NotFound": "mlplatform.errors",
    "Overloaded": "mlplatform.errors",
    "PayloadTooLarge": "mlplatform.errors",
    "Prediction": "mlplatform.predictor",
    "Predictor": "mlplatform.predictor",
    "Run": "mlplatform.entities",
    "RunKind": "mlplatform.entities",
    "RunStatus": "mlplatform.entities",
    "Settings": "mlplatform.settings",
    "Timeout": "mlplatform.errors",
    "Unavailable": "mlplatform.errors",
    "VersionStatus": "mlplatform.entities",
    "get_secret": "mlplatform.settings",
    "get_settings": "mlplatform.settings",
    "parse_model_ref": "mlplatform.client",
}

__all__ = [
    "AlertLevel",
    "Client",
    "ConfigError",
    "Conflict",
    "GateFailed",
    "IntegrityError",
    "InvalidInput",
    "MLPlatformError",
    "ModelVersion",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "Prediction",
    "Predictor",
    "Run",
    "RunKind",
    "RunStatus",
    "Settings",
    "Timeout",
    "Unavailable",
    "VersionStatus",
    "get_secret",
    "get_settings",
    "parse_model_ref",
]


def __getattr__(name: str) -> _Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mlplatform' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
