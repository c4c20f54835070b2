"""Model factory registry, losses by name, and training-config validation (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mlplatform.config.train import load_train_config
from mlplatform.errors import ConfigError, Conflict, InvalidInput
from mlplatform.models.factory import ModelFamily, default_factory
from mlplatform.models.losses import FocalLoss, balanced_weights, build_loss


def test_factories_are_per_instance_and_duplicates_need_replace() -> None:
    first, second = default_factory(), default_factory()
    custom = ModelFamily(name="custom", framework="sklearn", builder=lambda task, params, seed, **_: ("custom", params))
    first.register(custom)
    assert "custom" in first and "custom" not in second
    with pytest.raises(Conflict, match="already registered"):
        first.register(custom)
    first.register(ModelFamily(name="custom", framework="sklearn", builder=lambda *a, **k: "replaced"), replace=True)
    assert first.create("custom", "classification") == "replaced"


def test_unknown_family_lists_the_available_ones() -> None:
    with pytest.raises(InvalidInput) as info:
        default_factory().get("xgboost")
    assert "hist_gbdt" in str(info.value) and "mlp" in str(info.value) and info.value.field == "family"


def test_overrides_merge_onto_defaults_without_mutating_the_input() -> None:
    params = {"hidden": [8], "dropout": 0.0}
    before = {"hidden": [8], "dropout": 0.0}
    resolved = default_factory().resolve_params("mlp", "classification", params)
    assert params == before
    assert resolved["hidden"] == [8] and resolved["norm"] == "none"  # default filled in
    model = default_factory().create("mlp", "classification", params, n_inputs=5, n_outputs=2)
    assert model(torch.zeros(3, 5)).shape == (3, 2)
    assert params == before


@pytest.mark.parametrize(("family", "params", "field"), [
    ("mlp", {"hidden": [16, -4]}, "params.hidden.1"),
    ("mlp", {"widths": [3]}, "params.widths"),
    ("hist_gbdt", {"no_such_parameter": 1}, "params"),
    ("random_forest", {"n_estimators": -3}, "params"),
])
def test_bad_parameters_fail_before_training(family: str, params: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        default_factory().resolve_params(family, "classification", params)
    assert info.value.field == field


def test_family_task_support_is_checked() -> None:
    with pytest.raises(InvalidInput, match="does not support task"):
        default_factory().resolve_params("most_frequent", "regression", {})


def test_focal_loss_with_gamma_zero_is_cross_entropy_and_down_weights_easy_examples() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(64, 3), torch.randint(0, 3, (64,))
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, target), F.cross_entropy(logits, target), atol=1e-6)
    easy = torch.tensor([[4.0, -4.0]])
    assert FocalLoss(gamma=2.0)(easy, torch.tensor([0])) < 1e-3 * F.cross_entropy(easy, torch.tensor([0]))
    # per-class alpha scales each row's loss by its class weight
    alpha = FocalLoss(gamma=2.0, alpha=[0.25, 0.75])
    plain = FocalLoss(gamma=2.0)
    row, label = torch.tensor([[0.3, -0.2]]), torch.tensor([1])
    assert torch.allclose(alpha(row, label), 0.75 * plain(row, label))
    assert FocalLoss()(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)).item() == 0.0


def test_losses_by_name_and_balanced_weights() -> None:
    assert balanced_weights([90, 10]) == pytest.approx([100 / 180, 100 / 20])
    weighted = build_loss("weighted_cross_entropy", "classification", {}, class_counts=[90, 10])
    assert torch.allclose(weighted.weight, torch.tensor([100 / 180, 100 / 20]))
    focal = build_loss("focal", "classification", {"alpha": "balanced"}, class_counts=[3, 1])
    assert focal.gamma == 2.0 and focal.alpha.tolist() == pytest.approx([4 / 6, 2.0])
    mse = build_loss("mse", "regression")
    assert mse(torch.tensor([[1.0], [3.0]]), torch.tensor([1.0, 1.0])).item() == pytest.approx(2.0)
    with pytest.raises(InvalidInput, match="available: cross_entropy, focal"):
        build_loss("hinge", "classification")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("body", "field", "words"), [
    ("model_name: m\nmodel: {family: xgboost}\n", "model.family", "available:"),
    ("model_name: m\nmodel: {family: mlp, params: {hidden: [8, -1]}}\n", "model.params.hidden.1", "greater than 0"),
    ("model_name: m\ndata: {source: file, path: /nope/missing.parquet}\n", "data", "does not exist"),
    ("model_name: m\ntraining: {lr: -0.1}\n", "training.lr", "greater than 0"),
    ("model_name: m\ntraining: {epoch: 3}\n", "training.epoch", "unknown field"),
    ("model_name: m\ncheckpoint: {metric: accuracy}\n", "checkpoint.metric", "val_"),
])
def test_bad_config_names_file_and_field(tmp_path: Path, body: str, field: str, words: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_train_config(path)
    message = str(info.value)
    assert str(path) in message and field in message and words in message


def test_config_defaults_follow_the_spec(tmp_path: Path) -> None:
    config = load_train_config(_write(tmp_path, "model_name: churn\n"))
    assert (config.scaling.num_workers, config.scaling.use_gpu) == (2, "auto")
    assert (config.training.batch_size, config.training.lr, config.training.epochs) == (256, 1e-3, 20)
    assert config.training.optimizer == "adamw" and config.training.grad_clip == 1.0
    assert (config.checkpoint.num_to_keep, config.failure.max_failures) == (3, 3)
    assert (config.training.early_stopping.patience, config.training.early_stopping.min_delta) == (5, 0.0)
    assert (config.split.train, config.split.validation, config.split.test, config.split_seed) == (0.6, 0.2, 0.2, 42)
    assert config.checkpoint_order == "min" and config.primary_metric == "roc_auc"
    assert config.baselines == ["most_frequent", "stratified"] and config.gate.min_lift == 0.01
