"""The search config (``tune_configs/*.yaml``), validated once before any Ray job starts (SPEC S3.1).

A search compares whole approaches: every entry of ``patterns`` is an alternative (a model family with its own
conditional sub-space); ``preprocessing`` and ``rebalancing`` are dimensions shared by all patterns. A dimension is
either a constant or a one-key mapping::

    C: {loguniform: [0.01, 10]}      # low > 0, low <= high
    dropout: {uniform: [0.0, 0.3]}
    max_iter: {int: [50, 200]}       # inclusive
    hidden: {choice: [[32], [64, 32]]}
    epochs: 6                        # a constant

Defaults follow the SPEC table: 20 trials, concurrency 2, random search with ASHA (grace period 1, reduction
factor 4), seed 42.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    PositiveFloat,
    PositiveInt,
    Tag,
    ValidationError,
    model_validator,
)

from mlplatform.config.base import StrictModel, config_from_dict, load_config
from mlplatform.config.train import VAL_METRICS, DataSection, GateSection, OptimSection, SplitSection, Task, TrainConfig
from mlplatform.entities.metrics import metric_mode, validation_metrics
from mlplatform.errors import InvalidInput
from mlplatform.features.transform import TransformConfig
from mlplatform.models.factory import default_factory

BASELINE_PATTERN = "most_frequent"
# Training settings of the torch family that a search may vary (the rest of OptimSection keeps its defaults).
TORCH_TRAINING_KEYS = {"lr", "batch_size", "weight_decay", "epochs", "optimizer", "scheduler", "grad_clip",
                       "accumulation_steps"}
PBT_MUTABLE_KEYS = {"lr", "weight_decay", "batch_size"}
Rebalancing = Literal["none", "class_weight"]


_KINDS = ("uniform", "loguniform", "int", "choice")


class Dimension(StrictModel):
    """One searched value: exactly one of ``uniform``, ``loguniform``, ``int`` (ranges ``[low, high]``) or
    ``choice`` (a non-empty list)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    integer: tuple[int, int] | None = Field(default=None, alias="int")
    choice: list[Any] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> Dimension:
        given = [k for k in _KINDS if self._get(k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of uniform, loguniform, int or choice")
        if given[0] != "choice":
            low, high = self._get(given[0])
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError(f"{given[0]} bounds must be finite numbers")
            if low > high:
                raise ValueError(f"{given[0]}: low {low} > high {high}")
            if given[0] == "loguniform" and low <= 0:
                raise ValueError(f"loguniform: low must be > 0, got {low}")
        return self

    def _get(self, kind: str) -> Any:
        return self.integer if kind == "int" else getattr(self, kind)

    @property
    def kind(self) -> str:
        return next(k for k in _KINDS if self._get(k) is not None)

    @property
    def bounds(self) -> tuple[Any, Any]:
        return self._get(self.kind)

    def representatives(self) -> list[Any]:
        """Values that validation tries: both ends of a range, every choice."""
        if self.choice is not None:
            return list(self.choice)
        return list(self.bounds)

    def grid(self, points: int) -> list[Any]:
        if self.choice is not None:
            return list(self.choice)
        low, high = self.bounds
        if low == high or points == 1:
            return [low]
        if self.kind == "int":
            return sorted({round(low + (high - low) * i / (points - 1)) for i in range(points)})
        if self.kind == "loguniform":
            return [math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / (points - 1))
                    for i in range(points)]
        return [low + (high - low) * i / (points - 1) for i in range(points)]


def _is_dimension(value: Any) -> bool:
    return isinstance(value, Dimension) or (isinstance(value, dict) and bool(set(value) & set(_KINDS)))


def _dimension(value: Any) -> Dimension | None:
    if isinstance(value, Dimension):
        return value
    return Dimension.model_validate(value) if _is_dimension(value) else None


# A mapping with a dimension key is a Dimension (validated strictly); anything else is a constant.
SpaceValue = Annotated[
    Annotated[Dimension, Tag("dim")] | Annotated[Any, Tag("const")],
    Discriminator(lambda v: "dim" if _is_dimension(v) else "const"),
]


class PatternSection(StrictModel):
    family: str | None = Field(default=None, description="Model family; default the pattern's name.")
    params: dict[str, SpaceValue] = Field(default_factory=dict, description="Model parameters (constants or "
                                          "dimensions), merged onto the family's defaults.")
    training: dict[str, SpaceValue] = Field(default_factory=dict, description="torch only: lr, batch_size, "
                                            "weight_decay, epochs, optimizer, scheduler, grad_clip.")


class SearchSection(StrictModel):
    algorithm: Literal["random", "grid", "optuna"] = Field(default="random", description="random, grid or "
                                                            "optuna (TPE with a define-by-run conditional space).")
    scheduler: Literal["fifo", "asha", "pbt"] = Field(default="asha", description="fifo (run every trial to the "
                                                       "end), asha (stop weak trials early), pbt (torch only).")
    grace_period: PositiveInt = Field(default=1, description="ASHA: iterations before a trial can be stopped.")
    reduction_factor: float = Field(default=4.0, gt=1.0, description="ASHA reduction factor.")
    grid_points: PositiveInt = Field(default=3, description="grid: points per range dimension.")
    perturbation_interval: int = Field(default=2, ge=2, description="PBT: iterations between exploits (>= 2 so "
                                       "the one-iteration baseline trial never takes part).")
    quantile_fraction: float = Field(default=0.25, gt=0.0, le=0.5, description="PBT: bottom/top fraction.")
    mutations: list[str] = Field(default_factory=lambda: ["lr"], description="PBT: training keys to perturb.")
    synch: bool = Field(default=False, description="PBT: every trial waits at each perturbation point for the "
                        "others, so every interval compares the whole population (slower, reproducible).")


class BudgetSection(StrictModel):
    num_samples: PositiveInt = Field(default=20, description="Trials in total, the baseline trial included.")
    time_budget_s: PositiveFloat | None = Field(default=None, description="Stop starting trials after this.")


class ResourcesSection(StrictModel):
    cpu: PositiveFloat = 1.0
    gpu: float = Field(default=0.0, ge=0.0)


class TuneSearchConfig(StrictModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="Search name (prefix of the Tune experiment directory).")
    experiment: str = Field(default="tune", min_length=1, max_length=255, description="Store experiment.")
    model_name: str = Field(description="Registered model name used by --register-best.")
    task: Task = "classification"
    seed: int = Field(default=42, description="Seeds the split, the search algorithm and every trial.")
    metric: str = Field(default="val_roc_auc", description="Validation metric that selects (val_<metric>).")
    mode: Literal["min", "max"] | None = Field(default=None, description="Default: min for losses, else max.")
    data: DataSection = Field(default_factory=DataSection)
    split: SplitSection = Field(default_factory=SplitSection)
    patterns: dict[str, PatternSection] = Field(min_length=1, description="Alternatives compared by the search.")
    preprocessing: dict[str, SpaceValue] = Field(default_factory=dict, description="TransformConfig fields "
                                                 "(e.g. scaling, max_categories) as constants or dimensions.")
    rebalancing: list[Rebalancing] = Field(default_factory=lambda: list[Rebalancing](["none"]), min_length=1,
                                           description="Strategies to try: none, class_weight.")
    search: SearchSection = Field(default_factory=SearchSection)
    budget: BudgetSection = Field(default_factory=BudgetSection)
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
    max_concurrent_trials: PositiveInt = 2
    early_stopping_patience: int = Field(default=5, ge=0, description="torch trials: epochs without improvement.")
    gate: GateSection = Field(default_factory=GateSection)
    warm_start_from: list[str] = Field(default_factory=list, description="Earlier sweep run ids or experiment "
                                       "names whose best configs seed this search (same dataset only).")
    warm_start_top_k: PositiveInt = Field(default=3, description="Best configs taken per earlier search.")

    @model_validator(mode="after")
    def _metric_name(self) -> TuneSearchConfig:
        if not self.metric.startswith("val_") or self.metric[4:] not in VAL_METRICS - {"loss"}:
            raise ValueError(f"metric {self.metric!r} must be val_ + one of "
                             f"{', '.join(sorted(VAL_METRICS - {'loss'}))}")
        return self

    # -- resolved values ---------------------------------------------------------------------------------------
    @property
    def resolved_mode(self) -> str:
        return self.mode or metric_mode(self.metric[4:])

    def family_of(self, pattern: str) -> str:
        if pattern == BASELINE_PATTERN:
            return BASELINE_PATTERN
        return self.patterns[pattern].family or pattern

    def framework_of(self, pattern: str) -> str:
        return default_factory().get(self.family_of(pattern)).framework

    @property
    def max_iterations(self) -> int:
        """The most iterations a trial can report (torch: its largest epochs value; sklearn: 1)."""
        most = 1
        for name, pattern in self.patterns.items():
            if self.framework_of(name) == "torch":
                epochs = pattern.training.get("epochs", OptimSection().epochs)
                dim = _dimension(epochs)
                most = max(most, max(dim.representatives()) if dim is not None else int(epochs))  # type: ignore[arg-type]  # a constant when not a dimension
        return most

    def train_config(self) -> Any:
        """A TrainConfig carrying this search's data, split and gate, for the training code (load_data,
        split_data, the gate and registration)."""
        return TrainConfig(experiment=self.experiment, model_name=self.model_name, task=self.task, seed=self.seed,
                           data=self.data, split=self.split, gate=self.gate)

    def validate_semantics(self) -> None:
        """Families exist and support the task; every representative value of every dimension is accepted by
        the family (factory), the transform config and the optimizer section. Raises InvalidInput naming the
        field."""
        factory = default_factory()
        if self.task != "classification" and "class_weight" in self.rebalancing:
            raise InvalidInput("class_weight rebalancing needs a classification task", field="rebalancing")
        # Every trial reports the task's metrics (sklearn trials no val_loss): a metric of the other task would
        # pass here and fail inside Ray with a KeyError.
        reported = validation_metrics(self.task, with_loss=False)
        if self.metric not in reported:
            raise InvalidInput(f"metric {self.metric!r} does not apply to {self.task}; use one of "
                               f"{', '.join(reported)}", field="metric")
        if BASELINE_PATTERN in self.patterns:
            raise InvalidInput(f"{BASELINE_PATTERN!r} is the baseline trial every search includes; remove it",
                               field=f"patterns.{BASELINE_PATTERN}")
        for name, pattern in self.patterns.items():
            family = self.family_of(name)
            where = f"patterns.{name}"
            if family not in factory:
                raise InvalidInput(f"unknown model family {family!r}; available: {', '.join(factory.names())}",
                                   field=f"{where}.family" if pattern.family else where)
            spec = factory.get(family)
            if spec.baseline:
                raise InvalidInput(f"{family!r} is a baseline, not a searchable pattern", field=where)
            if self.task not in spec.tasks:
                raise InvalidInput(f"family {family!r} does not support task {self.task!r}", field=where)
            for key, params in _variants(pattern.params):
                try:
                    factory.resolve_params(family, self.task, params)
                except InvalidInput as exc:
                    raise InvalidInput(exc.message, field=f"{where}.params.{key}" if key else f"{where}.params"
                                       ) from None
            if spec.framework != "torch" and pattern.training:
                raise InvalidInput(f"training settings apply to torch families only, not {family!r}",
                                   field=f"{where}.training")
            for key in pattern.training:
                if key not in TORCH_TRAINING_KEYS:
                    raise InvalidInput(f"unknown training key {key!r}; searchable: "
                                       f"{', '.join(sorted(TORCH_TRAINING_KEYS))}", field=f"{where}.training.{key}")
            for key, values in _variants(pattern.training):
                try:
                    OptimSection.model_validate(values)
                except ValidationError as exc:
                    loc = ".".join(str(p) for p in exc.errors()[0].get("loc", ())) or key
                    raise InvalidInput(exc.errors()[0]["msg"], field=f"{where}.training.{loc}") from None
        for key, values in _variants(self.preprocessing):
            try:
                TransformConfig.model_validate(values)
            except ValidationError as exc:
                loc = ".".join(str(p) for p in exc.errors()[0].get("loc", ())) or key
                raise InvalidInput(exc.errors()[0]["msg"], field=f"preprocessing.{loc}") from None
        self._validate_scheduler()

    def _validate_scheduler(self) -> None:
        search = self.search
        if search.scheduler == "pbt":
            non_torch = [n for n in self.patterns if self.framework_of(n) != "torch"]
            if non_torch:
                raise InvalidInput(f"pbt applies to torch patterns only; remove {', '.join(non_torch)} or use "
                                   "asha", field="search.scheduler")
            if search.algorithm != "random":
                raise InvalidInput("pbt explores by itself: use algorithm random", field="search.algorithm")
            if len(self.patterns) != 1:
                raise InvalidInput("pbt searches exactly one torch pattern", field="patterns")
            bad = [m for m in search.mutations if m not in PBT_MUTABLE_KEYS]
            if bad or not search.mutations:
                raise InvalidInput(f"pbt mutations must be a non-empty subset of {sorted(PBT_MUTABLE_KEYS)}",
                                   field="search.mutations")
            (name, pattern), = self.patterns.items()
            constant = [m for m in search.mutations if not isinstance(pattern.training.get(m), Dimension)]
            if constant:
                raise InvalidInput(f"pbt mutates {', '.join(constant)}: declare them as dimensions under "
                                   f"patterns.{name}.training", field="search.mutations")
        if search.algorithm == "grid":
            size = grid_size(self)
            if size > self.budget.num_samples:
                raise InvalidInput(f"the grid holds {size} trials (baseline included) but budget.num_samples is "
                                   f"{self.budget.num_samples}; raise the budget or shrink the grid",
                                   field="budget.num_samples")


def _variants(space: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """The space with every dimension at its first representative, then one variant per other representative
    (so each value is checked once without a full cartesian product)."""
    base = {k: (v.representatives()[0] if isinstance(v, Dimension) else v) for k, v in space.items()}
    out: list[tuple[str | None, dict[str, Any]]] = [(None, base)]
    for key, value in space.items():
        if isinstance(value, Dimension):
            out.extend((key, {**base, key: rep}) for rep in value.representatives()[1:])
    return out


def grid_size(config: TuneSearchConfig) -> int:
    def count(space: dict[str, Any]) -> int:
        sizes = [len(v.grid(config.search.grid_points)) for v in space.values() if isinstance(v, Dimension)]
        return math.prod(sizes) if sizes else 1

    candidates = sum(count(p.params) * count(p.training) for p in config.patterns.values())
    return 1 + candidates * count(config.preprocessing) * len(config.rebalancing)


def grid_product(space: dict[str, Any], points: int) -> list[dict[str, Any]]:
    keys = list(space)
    values = [space[k].grid(points) if isinstance(space[k], Dimension) else [space[k]] for k in keys]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def tune_config_from_dict(data: dict[str, Any], source: str = "<config>") -> TuneSearchConfig:
    return config_from_dict(data, TuneSearchConfig, source)


def load_tune_config(path: Path | str, overrides: dict[str, Any] | None = None) -> TuneSearchConfig:
    """Read and validate a search YAML; any problem raises ConfigError naming the file and the field."""
    return load_config(path, TuneSearchConfig, overrides)
