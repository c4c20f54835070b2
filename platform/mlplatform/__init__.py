"""mlplatform: a tabular ML platform on Ray (train, tune, register, batch-score, serve, monitor).

The public API is what ``__all__`` lists; everything else may change without notice.
"""

from mlplatform.client import Client, parse_model_ref
from mlplatform.entities import AlertLevel, ModelVersion, Run, RunKind, RunStatus, VersionStatus
from mlplatform.errors import (
    Conflict,
    ConfigError,
    GateFailed,
    IntegrityError,
    InvalidInput,
    MLPlatformError,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    Timeout,
    Unavailable,
)
from mlplatform.predictor import Prediction, Predictor
from mlplatform.settings import Settings, get_secret, get_settings

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
