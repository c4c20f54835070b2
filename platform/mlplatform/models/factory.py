"""Model families registered by name, with a builder, defaults and a config schema (SPEC S2.6).

Registries are per instance (:func:`default_factory` returns a new one each call), so a test or a plugin that
registers a family never changes what another caller sees. Parameters are merged onto a deep copy of the
defaults and validated before any Ray job starts; the caller's dict is never mutated.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from mlplatform.errors import Conflict, InvalidInput
from mlplatform.models.sklearn_models import BASELINE_FAMILIES, SKLEARN_FAMILIES, STACKING_MEMBERS, build_sklearn
from mlplatform.models.stacking import validate_stacking

Framework = Literal["torch", "sklearn"]
TASKS = frozenset({"classification", "regression"})


@dataclass(frozen=True)
class ModelFamily:
    """One family. ``builder(task, params, seed, **shape)`` returns an unfitted model; ``schema`` (pydantic, with
    ``extra="forbid"``) or ``validator(task, params)`` checks parameters without fitting anything."""

    name: str
    framework: Framework
    builder: Callable[..., Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    schema: type[BaseModel] | None = None
    validator: Callable[[str, dict[str, Any]], None] | None = None
    tasks: frozenset[str] = TASKS
    baseline: bool = False
    warm_start: bool = False
    description: str = ""


class ModelFactory:
    def __init__(self) -> None:
        self._families: dict[str, ModelFamily] = {}

    def register(self, family: ModelFamily, *, replace: bool = False) -> None:
        if not family.name or not family.name.replace("_", "").isalnum():
            raise InvalidInput(f"family name {family.name!r} must be letters, digits and '_'", field="family")
        if family.name in self._families and not replace:
            raise Conflict(f"model family {family.name!r} is already registered; pass replace=True to override it",
                           field="family")
        self._families[family.name] = family

    def names(self) -> list[str]:
        return sorted(self._families)

    def __contains__(self, name: object) -> bool:
        return name in self._families

    def get(self, name: str) -> ModelFamily:
        try:
            return self._families[name]
        except KeyError:
            raise InvalidInput(f"unknown model family {name!r}; available: {', '.join(self.names())}",
                               field="family") from None

    def resolve_params(self, name: str, task: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults with ``params`` merged on top (nested mappings merge key by key), validated for ``task``."""
        family = self.get(name)
        if task not in family.tasks:
            raise InvalidInput(f"family {name!r} does not support task {task!r} (supports: "
                               f"{', '.join(sorted(family.tasks))})", field="task")
        merged = _merge(copy.deepcopy(dict(family.defaults)), copy.deepcopy(dict(params or {})))
        if family.schema is not None:
            try:
                merged = family.schema.model_validate(merged).model_dump()
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ()))
                raise InvalidInput(f"bad parameter for family {name!r}: {where}: {first.get('msg')}",
                                   field=f"params.{where}" if where else "params") from None
        if family.validator is not None:
            family.validator(task, copy.deepcopy(merged))
        return merged

    def create(self, name: str, task: str, params: Mapping[str, Any] | None = None, *, seed: int = 42,
               **shape: Any) -> Any:
        """A fresh, unfitted model. ``shape`` carries what only the data knows (torch: n_inputs, n_outputs,
        cardinalities)."""
        resolved = self.resolve_params(name, task, params)
        return self.get(name).builder(task, resolved, seed, **shape)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            base[key] = _merge(dict(base[key]), dict(value))
        else:
            base[key] = value
    return base


# -- built-in families ------------------------------------------------------------------------------------------
def _build_mlp(task: str, params: dict[str, Any], seed: int, *, n_inputs: int, n_outputs: int,
               cardinalities: list[int] | None = None, categorical_names: list[str] | None = None) -> Any:
    # heavy: torch takes seconds to import; only the torch path pays for it
    import torch

    from mlplatform.models.mlp import MLPConfig, TabularMLP

    torch.manual_seed(seed)  # the initial weights are part of the run's reproducibility
    return TabularMLP(n_inputs, n_outputs, MLPConfig(**params), cardinalities, categorical_names)


def _sklearn_validator(family: str) -> Callable[[str, dict[str, Any]], None]:
    def validate(task: str, params: dict[str, Any]) -> None:
        estimator = build_sklearn(family, task, params)  # unknown keyword arguments fail here
        check = getattr(estimator, "_validate_params", None)  # sklearn >= 1.2 checks values without fitting
        if callable(check):
            try:
                check()
            except (ValueError, TypeError) as exc:
                raise InvalidInput(f"bad parameter for family {family!r}: {exc}", field="params") from None

    return validate


def _stacking_validator(factory: ModelFactory) -> Callable[[str, dict[str, Any]], None]:
    def validate(task: str, params: dict[str, Any]) -> None:
        # member version refs are resolved later, against the registry
        validate_stacking(task, params, STACKING_MEMBERS, factory.resolve_params)

    return validate


def _sklearn_builder(family: str) -> Callable[..., Any]:
    def build(task: str, params: dict[str, Any], seed: int, **_shape: Any) -> Any:
        return build_sklearn(family, task, params, seed)

    return build


def _register_builtins(factory: ModelFactory) -> None:
    # heavy: torch takes seconds to import; only the torch path pays for it
    from mlplatform.models.mlp import MLPConfig

    factory.register(ModelFamily(
        name="mlp", framework="torch", builder=_build_mlp, defaults=MLPConfig().model_dump(), schema=MLPConfig,
        warm_start=True, description="torch MLP: widths, dropout, batch/layer norm, categorical embeddings"))
    for name in SKLEARN_FAMILIES:
        tasks = {"mean": frozenset({"regression"}), "stratified": frozenset({"classification"}),
                 "most_frequent": frozenset({"classification"})}.get(name, TASKS)
        validator = _stacking_validator(factory) if name == "stacking" else _sklearn_validator(name)
        factory.register(ModelFamily(
            name=name, framework="sklearn", builder=_sklearn_builder(name), validator=validator,
            tasks=tasks, baseline=name in BASELINE_FAMILIES, description=f"scikit-learn {name}"))


def default_factory() -> ModelFactory:
    """A new factory holding the built-in families."""
    factory = ModelFactory()
    _register_builtins(factory)
    return factory
