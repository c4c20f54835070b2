"""sklearn families by name, saved with skops (trusting only sklearn, numpy and scipy types)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlplatform.errors import IntegrityError, InvalidInput
from mlplatform.models.stacking import build_stacking

_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")

Builder = Callable[[str, dict[str, Any], int], Any]


def _dummy(task: str, params: dict[str, Any], seed: int, strategy: str) -> Any:
    # heavy: scikit-learn loads only when an estimator is built or scored
    from sklearn.dummy import DummyClassifier, DummyRegressor

    if task == "regression":
        return DummyRegressor(strategy="mean")
    return DummyClassifier(strategy=strategy, random_state=seed)


def _logistic(task: str, params: dict[str, Any], seed: int) -> Any:
    # heavy: scikit-learn loads only when an estimator is built or scored
    from sklearn.linear_model import LogisticRegression, Ridge

    if task == "regression":
        return Ridge(**{"alpha": 1.0, **params})
    return LogisticRegression(**{"C": 1.0, "max_iter": 1000, **params}, random_state=seed)


def _random_forest(task: str, params: dict[str, Any], seed: int) -> Any:
    # heavy: scikit-learn loads only when an estimator is built or scored
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    cls = RandomForestRegressor if task == "regression" else RandomForestClassifier
    return cls(**{"n_estimators": 100, "n_jobs": 1, **params}, random_state=seed)


def _hist_gbdt(task: str, params: dict[str, Any], seed: int) -> Any:
    # heavy: scikit-learn loads only when an estimator is built or scored
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
    return cls(**params, random_state=seed)


def _stacking(task: str, params: dict[str, Any], seed: int) -> Any:
    return build_stacking(task, params, seed, STACKING_MEMBERS, build_sklearn)


SKLEARN_FAMILIES: dict[str, Builder] = {
    "most_frequent": lambda task, p, seed: _dummy(task, p, seed, "most_frequent"),
    "stratified": lambda task, p, seed: _dummy(task, p, seed, "stratified"),
    "mean": lambda task, p, seed: _dummy("regression", p, seed, "mean"),
    "logistic": _logistic,
    "linear": _logistic,
    "random_forest": _random_forest,
    "hist_gbdt": _hist_gbdt,
    "stacking": _stacking,
}
BASELINE_FAMILIES = ("most_frequent", "stratified", "mean")
# an ensemble's members: every family but stacking itself
STACKING_MEMBERS = tuple(f for f in SKLEARN_FAMILIES if f != "stacking")


def build_sklearn(family: str, task: str, params: dict[str, Any] | None = None, seed: int = 42) -> Any:
    if family not in SKLEARN_FAMILIES:
        raise InvalidInput(f"unknown sklearn family {family!r}; available: {', '.join(sorted(SKLEARN_FAMILIES))}",
                           field="family")
    try:
        return SKLEARN_FAMILIES[family](task, dict(params or {}), seed)
    except TypeError as exc:
        raise InvalidInput(f"bad parameters for {family}: {exc}", field="params") from exc


def save_sklearn(estimator: Any, path: Path) -> None:
    # heavy: skops loads only to save or load an sklearn artifact
    import skops.io as sio

    sio.dump(estimator, path)


def load_sklearn(path: Path) -> Any:
    # heavy: skops loads only to save or load an sklearn artifact
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=path)
    refused = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
    if refused:
        raise IntegrityError(f"{path.name} contains types outside sklearn/numpy/scipy ({', '.join(refused[:3])}); "
                             "refusing to load it", field=path.name)
    return sio.load(path, trusted=untrusted)
