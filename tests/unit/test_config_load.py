"""One config loader: every YAML goes through ``load_config(path, Model)``, and every error names the file and the
field, including metric names that do not fit the task (checked at load, not inside Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform.config.base import StrictModel, load_config
from mlplatform.config.train import TrainConfig
from mlplatform.config.tune import TuneSearchConfig
from mlplatform.errors import ConfigError


def _write(tmp_path: Path, data: dict[str, Any], name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _train(**overrides: Any) -> dict[str, Any]:
    return {"model_name": "churn", "model": {"family": "mlp", "params": {}}, **overrides}


def _tune(**overrides: Any) -> dict[str, Any]:
    return {"name": "s", "model_name": "churn", "patterns": {"logistic": {"params": {}}}, **overrides}


@pytest.mark.parametrize(("model", "data", "field", "reason"), [
    (TrainConfig, _train(checkpoint={"metric": "val_rmse"}), "checkpoint.metric", "not reported for classification"),
    (TrainConfig, _train(training={"early_stopping": {"metric": "val_r2"}}), "training.early_stopping.metric",
     "not reported for classification"),
    (TrainConfig, _train(task="regression", checkpoint={"metric": "val_roc_auc"}), "checkpoint.metric",
     "not reported for regression"),
    (TrainConfig, _train(gate={"metric": "rmse"}), "gate.metric", "does not apply to classification"),
    (TuneSearchConfig, _tune(metric="val_rmse"), "metric", "does not apply to classification"),
    (TuneSearchConfig, _tune(task="regression", metric="val_roc_auc"), "metric", "does not apply to regression"),
])
def test_a_metric_that_does_not_fit_the_task_is_refused_at_load_naming_file_and_field(
        tmp_path: Path, model: type, data: dict[str, Any], field: str, reason: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path, model)
    assert info.value.field == field
    assert info.value.message.startswith(f"{path}: {field}: ") and reason in info.value.message


def test_fitting_metrics_load(tmp_path: Path) -> None:
    train = load_config(_write(tmp_path, _train(task="regression", checkpoint={"metric": "val_rmse"})), TrainConfig)
    assert train.checkpoint_order == "min" and train.primary_metric == "rmse"
    tune = load_config(_write(tmp_path, _tune(metric="val_pr_auc"), "tune.yaml"), TuneSearchConfig)
    assert tune.resolved_mode == "max"


def test_unknown_field_and_bad_value_name_file_and_field(tmp_path: Path) -> None:
    class Section(StrictModel):
        size: int = 1

    class Example(StrictModel):
        section: Section = Section()

    with pytest.raises(ConfigError, match=r"example\.yaml: section\.colour: unknown field") as info:
        load_config(_write(tmp_path, {"section": {"colour": 1}}, "example.yaml"), Example)
    assert info.value.field == "section.colour"
    with pytest.raises(ConfigError, match=r"example\.yaml: section\.size: .*integer") as info:
        load_config(_write(tmp_path, {"section": {"size": "big"}}, "example.yaml"), Example)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml", Example)


def test_config_is_a_leaf_that_imports_no_stage_client_or_store() -> None:
    """Imported in a fresh interpreter, the config package pulls in no stage, client or store module."""
    import subprocess
    import sys

    code = ("import sys, mlplatform.config.base, mlplatform.config.train, mlplatform.config.tune; "
            "bad = sorted(m for m in sys.modules if m.split('.')[:2] in ("
            "['mlplatform', s] for s in ('training', 'tuning', 'batch', 'serving', 'monitoring', 'client', 'store',"
            " 'learning'))); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
