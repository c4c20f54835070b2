"""The training config (``train_jobs/configs/*.yaml``), validated once before any Ray job starts (SPEC S2).

Defaults follow the SPEC table: 2 workers, GPU auto, 256 rows per worker per step, AdamW at 1e-3, 20 epochs,
3 best checkpoints, 3 failures, early stopping patience 5 / min delta 0, gradient clipping at 1.0, a 60/20/20
stratified split seeded with 42, and a gate of +0.01 over the best baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from mlplatform.config.base import StrictModel, config_from_dict, load_config
from mlplatform.entities.metrics import (
    CLASSIFICATION_METRIC_NAMES,
    REGRESSION_METRIC_NAMES,
    TASK_METRICS,
    metric_mode,
    validation_metrics,
)
from mlplatform.entities.names import parse_model_ref, validate_model_name
from mlplatform.errors import InvalidInput
from mlplatform.features.schema import FeatureSpec
from mlplatform.features.transform import TransformConfig
from mlplatform.models.factory import default_factory

Task = Literal["classification", "regression"]
VAL_METRICS = {"loss", *CLASSIFICATION_METRIC_NAMES, *REGRESSION_METRIC_NAMES}
# Bundled sources whose label is known to have more than two classes: threshold tuning is refused up front.
MULTICLASS_SOURCES = {"sklearn_wine": 3, "sklearn_digits": 10}


def _validation_metric(name: str | None) -> str | None:
    if name is not None and (not name.startswith("val_") or name[4:] not in VAL_METRICS):
        raise ValueError(f"metric {name!r} must be val_ + one of {', '.join(sorted(VAL_METRICS))}")
    return name


class DataSection(StrictModel):
    source: Literal["synthetic_churn", "file", "sklearn_breast_cancer", "sklearn_wine", "sklearn_digits"] = Field(
        default="synthetic_churn", description="synthetic_churn (generated, seeded), file (Parquet or CSV), or a "
        "dataset bundled with scikit-learn (no download; the label goes into the column named by data.target).")
    path: str | None = Field(default=None, description="Parquet/CSV path or URI; required when source is file.")
    name: str | None = Field(default=None, description="Dataset name in the store (default: from the source).")
    n_rows: PositiveInt = Field(default=5000, description="Rows to generate (synthetic_churn only).")
    target: str = Field(default="churned", description="Label column.")
    features: list[str] | None = Field(default=None, description="Input columns; default every column except "
                                       "the target and id_columns.")
    id_columns: list[str] = Field(default_factory=lambda: ["customer_id", "event_time"],
                                  description="Columns that are never features.")
    declared_schema: list[FeatureSpec] | None = Field(
        default=None, description="Declared input schema: per feature name, dtype (float, int, bool, category) and "
        "optionally nullable, min, max and categories. Training validates its data against it and refuses ERROR-level "
        "data (--force trains on the rows that pass, recorded in lineage). Default: inferred from the data.")
    feature_views: list[str] = Field(default_factory=list, description="Applied feature views (features apply) "
                                     "joined point-in-time onto the data, which then holds entity keys, label "
                                     "times and labels; their features are added to data.features and the model "
                                     "version records the views and versions (entity_ids serving checks them).")
    label_time: str = Field(default="event_time", description="Label time column for the feature_views join.")
    full_feature_names: bool = Field(default=False, description="Name view features view__feature (else feature, "
                                     "as Feast); serving's online_features must use the same setting.")

    @model_validator(mode="after")
    def _path_exists(self) -> DataSection:
        if self.source == "file":
            if not self.path:
                raise ValueError("data.path is required when data.source is 'file'")
            if "://" not in self.path and not Path(self.path).expanduser().exists():
                raise ValueError(f"data file {self.path} does not exist")
            if not self.path.lower().endswith((".parquet", ".pq", ".csv")) and not Path(self.path).is_dir():
                raise ValueError("data.path must be a .parquet, .pq or .csv file (or a Parquet folder)")
        if self.features is not None and self.target in self.features:
            raise ValueError(f"the target {self.target!r} cannot also be a feature")
        if self.declared_schema is not None and self.features is not None:
            unknown = [s.name for s in self.declared_schema if s.name not in self.features]
            if unknown:
                raise ValueError(f"declared_schema names columns that are not features: {', '.join(unknown)}")
        return self


class SplitSection(StrictModel):
    method: Literal["random", "time"] = Field(default="random", description="random (stratified) or by time.")
    train: PositiveFloat = 0.6
    validation: PositiveFloat = 0.2
    test: PositiveFloat = 0.2
    stratify: bool = Field(default=True, description="Keep class ratios in every split (classification).")
    time_column: str = Field(default="event_time", description="Ordering column for method: time.")
    seed: int | None = Field(default=None, description="Split seed; default the run seed.")

    @model_validator(mode="after")
    def _fractions(self) -> SplitSection:
        if abs(self.train + self.validation + self.test - 1.0) > 1e-6:
            raise ValueError("train + validation + test must sum to 1")
        return self


class ModelSection(StrictModel):
    family: str = Field(default="mlp", description="A family of the model factory (mlp, logistic, hist_gbdt...).")
    params: dict[str, Any] = Field(default_factory=dict, description="Merged onto the family's defaults.")


class LossSection(StrictModel):
    name: str | None = Field(default=None, description="cross_entropy, weighted_cross_entropy, focal; mse, mae, "
                             "huber. Default cross_entropy / mse.")
    params: dict[str, Any] = Field(default_factory=dict, description="focal: gamma (2.0), alpha (per class or "
                                   "'balanced'); weighted_cross_entropy: weights (per class or 'balanced').")


class EarlyStoppingSection(StrictModel):
    patience: int = Field(default=5, ge=0, description="Epochs without improvement before stopping; 0 disables.")
    min_delta: float = Field(default=0.0, ge=0.0)
    metric: str | None = Field(default=None, description="Default: the checkpoint metric.")

    _metric = field_validator("metric")(_validation_metric)


class OptimSection(StrictModel):
    epochs: PositiveInt = 20
    batch_size: PositiveInt = Field(default=256, description="Rows per worker per step.")
    lr: PositiveFloat = 1e-3
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    weight_decay: float = Field(default=0.01, ge=0.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0, description="sgd only.")
    scheduler: Literal["none", "cosine", "step"] = "cosine"
    step_size: PositiveInt = Field(default=10, description="Epochs per step of the step scheduler.")
    gamma: PositiveFloat = Field(default=0.5, description="Decay of the step scheduler.")
    grad_clip: PositiveFloat | None = Field(default=1.0, description="Max global gradient norm; null disables.")
    accumulation_steps: PositiveInt = 1
    scale_lr: bool = Field(default=False, description="Multiply lr by workers x accumulation (linear scaling).")
    amp: bool = Field(default=True, description="Mixed precision on GPU (bf16, else fp16 + GradScaler); "
                      "always off on CPU.")
    early_stopping: EarlyStoppingSection = Field(default_factory=EarlyStoppingSection)
    shard_in_memory: bool | Literal["auto"] = Field(
        default="auto", description="Read each worker's shard once and shuffle it in memory every epoch (auto: when "
        "a shard is under 1 GiB); false streams it from Ray Data every epoch, for data larger than memory.")


class ScalingSection(StrictModel):
    num_workers: PositiveInt = 2
    use_gpu: bool | Literal["auto"] = Field(default="auto", description="auto: use GPUs when the cluster has any.")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        default="PACK", description="Ray placement of the workers; STRICT_SPREAD puts each on its own node.")


class CheckpointSection(StrictModel):
    num_to_keep: PositiveInt = 3
    metric: str = Field(default="val_loss", description="val_<metric> deciding which checkpoints are kept.")
    order: Literal["min", "max"] | None = Field(default=None, description="Default: min for losses, else max.")

    _metric = field_validator("metric")(_validation_metric)


class FailureSection(StrictModel):
    max_failures: int = Field(default=3, ge=0)


class GateSection(StrictModel):
    metric: str | None = Field(default=None, description="Primary metric; default roc_auc / rmse.")
    min_lift: float = Field(default=0.01, ge=0.0, description="Absolute margin over the best baseline.")
    floor: float | None = Field(default=None, description="Absolute bound the primary metric must meet.")
    baselines: list[str] | None = Field(default=None, description="Default most_frequent + stratified / mean.")
    compare_champion: bool = Field(default=True, description="Candidate must be >= champion on this holdout.")


class RebalanceSection(StrictModel):
    """Imbalance handling (SPEC S2.10). Resampling touches the training split only, seeded by the run seed; the
    decision threshold is tuned on the validation split, never on test."""

    strategy: Literal["none", "class_weight", "oversample", "undersample", "smote"] = Field(
        default="none", description="class_weight: balanced weights in the loss / estimator; oversample: repeat "
        "minority rows; undersample: drop majority rows; smote: add synthetic minority rows interpolated between "
        "a row and one of its k_neighbors nearest same-class rows (numeric features; the rest is copied).")
    ratio: float = Field(default=1.0, gt=0.0, le=1.0, description="Target size of every class relative to the "
                         "largest (oversample, smote) or smallest (undersample) class after resampling: "
                         "minority / majority >= ratio.")
    k_neighbors: PositiveInt = Field(default=5, description="smote: neighbours per row; every class that grows "
                                     "needs at least k_neighbors + 1 training rows.")
    tune_threshold: bool = Field(default=False, description="Binary classification: after training, choose the "
                                 "decision threshold on P(classes[1]) maximising threshold_metric on the "
                                 "validation split and write it into the model artifact.")
    threshold_metric: Literal["f1", "balanced_accuracy"] = Field(
        default="f1", description="What tune_threshold maximises on the validation split.")


class TrainConfig(StrictModel):
    experiment: str = Field(default="default", min_length=1, max_length=255)
    model_name: str = Field(description="Registered model name the result is registered under.")
    task: Task = "classification"
    seed: int = 42
    data: DataSection = Field(default_factory=DataSection)
    split: SplitSection = Field(default_factory=SplitSection)
    model: ModelSection = Field(default_factory=ModelSection)
    loss: LossSection = Field(default_factory=LossSection)
    training: OptimSection = Field(default_factory=OptimSection)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    failure: FailureSection = Field(default_factory=FailureSection)
    gate: GateSection = Field(default_factory=GateSection)
    rebalance: RebalanceSection = Field(default_factory=RebalanceSection)
    features: TransformConfig = Field(
        default_factory=TransformConfig, description="Preprocessing fitted on the training split and shipped in the "
        "artifact (SPEC S4.1-S4.5): missing_tokens, imputation (impute, impute_columns, missing_indicators, "
        "indicator_columns), categoricals (max_categories, min_category_count, hash_columns, hash_above, "
        "hash_buckets), scaling, buckets, crosses, generated features and selection. A warm start keeps the "
        "parent's fitted transform.")
    warm_start: str | None = Field(default=None, description="name@alias or name:version to initialise from.")
    slices: list[str] = Field(default_factory=list, description="Categorical columns to report test metrics by.")
    register_model: bool = Field(default=True, description="Register the result (after the gate).")

    @model_validator(mode="after")
    def _cross_checks(self) -> TrainConfig:
        for value, check in ((self.model_name, validate_model_name), (self.warm_start, parse_model_ref)):
            if value is not None:
                try:
                    check(value)
                except InvalidInput as exc:
                    raise ValueError(exc.message) from None
        if self.rebalance.strategy != "none" and self.task != "classification":
            raise ValueError(f"rebalance.strategy {self.rebalance.strategy!r} needs task: classification")
        if self.rebalance.tune_threshold and self.task != "classification":
            raise ValueError("rebalance.tune_threshold needs task: classification (a binary classifier)")
        if self.rebalance.tune_threshold and self.data.source in MULTICLASS_SOURCES:
            raise ValueError(f"rebalance.tune_threshold needs a binary target; {self.data.source} has "
                             f"{MULTICLASS_SOURCES[self.data.source]} classes")
        return self

    # -- resolved defaults -------------------------------------------------------------------------------------
    @property
    def framework(self) -> str:
        return default_factory().get(self.model.family).framework

    @property
    def split_seed(self) -> int:
        return self.seed if self.split.seed is None else self.split.seed

    @property
    def loss_name(self) -> str:
        if self.loss.name is None and self.rebalance.strategy == "class_weight":
            return "weighted_cross_entropy"  # balanced class weights by default (SPEC S2.10)
        return self.loss.name or ("cross_entropy" if self.task == "classification" else "mse")

    @property
    def checkpoint_order(self) -> str:
        return self.checkpoint.order or metric_mode(self.checkpoint.metric[4:])

    @property
    def early_stopping_metric(self) -> str:
        return self.training.early_stopping.metric or self.checkpoint.metric

    @property
    def primary_metric(self) -> str:
        return self.gate.metric or ("roc_auc" if self.task == "classification" else "rmse")

    @property
    def baselines(self) -> list[str]:
        if self.gate.baselines is not None:
            return list(self.gate.baselines)
        return ["most_frequent", "stratified"] if self.task == "classification" else ["mean"]

    def validate_semantics(self) -> None:
        """Checks that need the factory and loss registries; raise InvalidInput naming the field."""
        # heavy: torch takes seconds to import; only the torch path pays for it
        from mlplatform.models.losses import build_loss, loss_names

        factory = default_factory()
        try:
            factory.resolve_params(self.model.family, self.task, self.model.params)
        except InvalidInput as exc:
            field = "model.family" if exc.field in {"family", "task"} else f"model.{exc.field}"
            raise InvalidInput(exc.message, field=field) from None
        for baseline in self.baselines:
            if baseline not in factory or not factory.get(baseline).baseline:
                raise InvalidInput(f"unknown baseline {baseline!r}", field="gate.baselines")
        if self.loss_name not in loss_names(self.task):
            raise InvalidInput(f"unknown loss {self.loss_name!r} for {self.task}; available: "
                               f"{', '.join(loss_names(self.task))}", field="loss.name")
        if self.framework == "torch":
            try:
                build_loss(self.loss_name, self.task, self.loss.params)
            except InvalidInput as exc:
                if "needs the training labels" not in exc.message:  # 'balanced' resolves once labels are known
                    raise
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"bad loss parameters: {exc}", field="loss.params") from None
        if self.rebalance.strategy == "class_weight":
            if self.framework == "torch" and self.loss_name == "cross_entropy":
                raise InvalidInput("rebalance.strategy class_weight conflicts with loss.name cross_entropy; use "
                                   "weighted_cross_entropy or focal, or leave loss.name unset",
                                   field="rebalance.strategy")
            if self.framework == "sklearn" and "class_weight" not in factory.create(
                    self.model.family, self.task, self.model.params).get_params():
                raise InvalidInput(f"family {self.model.family!r} takes no class weights; use oversample or "
                                   "undersample", field="rebalance.strategy")
        self._validate_metric_names()

    def _validate_metric_names(self) -> None:
        """Every metric the run is judged by is one a model of this task reports (a ``val_rmse`` checkpoint
        metric on classification used to pass here and fail inside Ray with a KeyError)."""
        reported = validation_metrics(self.task, with_loss=True)  # the torch loop reports val_loss as well
        for field, name in (("checkpoint.metric", self.checkpoint.metric),
                            ("training.early_stopping.metric", self.training.early_stopping.metric)):
            if name is not None and name not in reported:
                raise InvalidInput(f"{name!r} is not reported for {self.task} (family {self.model.family!r}); use "
                                   f"one of {', '.join(reported)}", field=field)
        if self.primary_metric not in TASK_METRICS[self.task]:
            raise InvalidInput(f"gate metric {self.primary_metric!r} does not apply to {self.task}; use one of "
                               f"{', '.join(TASK_METRICS[self.task])}", field="gate.metric")


def train_config_from_dict(data: dict[str, Any], source: str = "<config>") -> TrainConfig:
    return config_from_dict(data, TrainConfig, source)


def load_train_config(path: Path | str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read and validate a training YAML; any problem raises ConfigError naming the file and the field."""
    return load_config(path, TrainConfig, overrides)
