"""One config loader: every YAML goes through ``load_config(path, Model)``, and every error names the file and the
field, including metric names that do not fit the task (checked at load, not inside Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform.config.base import StrictModel, load_config
from mlplatform.config.batch import BatchConfig, load_batch_config
from mlplatform.config.monitor import MonitorConfig, load_monitor_config
from mlplatform.config.serve import ServeConfig
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

    code = ("import sys, mlplatform.config.base, mlplatform.config.train, mlplatform.config.tune, "
            "mlplatform.config.batch, mlplatform.config.serve, mlplatform.config.monitor; "
            "bad = sorted(m for m in sys.modules if m.split('.')[:2] in ("
            "['mlplatform', s] for s in ('training', 'tuning', 'batch', 'serving', 'monitoring', 'client', 'store',"
            " 'learning'))); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


_BATCH = {"model": "churn@champion", "input": "scoring/", "output": "predictions/"}
_SERVE = {"models": [{"name": "churn"}]}


@pytest.mark.parametrize(("model", "data", "field", "reason"), [
    (BatchConfig, {**_BATCH, "batch_sise": 10}, "batch_sise", "unknown field"),
    (BatchConfig, {**_BATCH, "compute": "gpu"}, "compute", "'auto', 'tasks' or 'actors'"),
    (BatchConfig, {**_BATCH, "max_quarantine_fraction": 2}, "max_quarantine_fraction", "less than or equal to 1"),
    (BatchConfig, {**_BATCH, "model": "churn@@x"}, "model", "name, name:version or name@alias"),
    (BatchConfig, {"model": "churn", "input": "x"}, "output", "Field required"),
    (ServeConfig, {**_SERVE, "batching": {"max_batch_size": 0}}, "batching.max_batch_size", "greater than or equal"),
    (ServeConfig, {**_SERVE, "cache": {"ttl": 5}}, "cache.ttl", "unknown field"),
    (ServeConfig, {"models": [{"name": "churn", "replicas": 2}]}, "models.0.replicas", "unknown field"),
    (MonitorConfig, {"sinks": {"chat": {"type": "carrier_pigeon"}}}, "sinks.chat.type", "'log', 'stdout'"),
    (MonitorConfig, {"routing": {"PURPLE": ["log"]}}, "routing.PURPLE", "unknown alert level"),
    (MonitorConfig, {"retrain": {"max_per_day": -1}}, "retrain.max_per_day", "greater than or equal to 0"),
])
def test_a_bad_batch_serve_or_monitor_yaml_names_the_file_and_the_field(
        tmp_path: Path, model: type, data: dict[str, Any], field: str, reason: str) -> None:
    path = _write(tmp_path, data, "stage.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path, model)
    assert info.value.field == field
    assert info.value.message.startswith(f"{path}: {field}: ") and reason in info.value.message


def test_the_stage_loaders_are_the_one_loader(tmp_path: Path) -> None:
    """load_batch_config / load_monitor_config are load_config; flags replace the YAML's keys."""
    path = _write(tmp_path, {**_BATCH, "keep_columns": ["customer_id"], "online_key": "account_id"}, "batch.yaml")
    config = load_batch_config(path, {"batch_size": 64, "on_invalid": "fail"})
    assert (config.model, config.batch_size, config.quarantine_limit) == ("churn@champion", 64, 0.0)
    assert config.required_columns == ["customer_id", "account_id"]  # the online key is always kept
    with pytest.raises(ConfigError, match=r"batch\.yaml: concurrency: ") as info:
        load_batch_config(path, {"concurrency": 0})
    assert info.value.field == "concurrency"
    assert load_monitor_config(None) == MonitorConfig()
    bad = _write(tmp_path, {"routing": {"RED": ["pager"]}}, "monitor.yaml")
    with pytest.raises(ConfigError, match=r"monitor\.yaml: routing\.RED: names unknown sinks \['pager'\]"):
        load_monitor_config(bad)
    with pytest.raises(ConfigError, match=r"serve app args: models\.0\.name: Field required"):
        ServeConfig.parse({"models": [{}]})


def test_batch_cli_and_job_refuse_a_bad_config_in_one_line_before_any_ray_work(tmp_path: Path) -> None:
    from train_jobs import batch_score
    from typer.testing import CliRunner

    from mlplatform.cli.main import app

    path = _write(tmp_path, {**_BATCH, "on_invalid": "skip"}, "batch.yaml")
    result = CliRunner().invoke(app, ["batch", "--config", str(path)])
    assert result.exit_code == 2
    assert f"{path}: on_invalid: " in result.output and len(result.output.strip().splitlines()) == 1
    # a flag beside --config replaces the YAML's key, in the CLI and in the Ray job alike
    result = CliRunner().invoke(app, ["batch", "--config", str(path), "--on-invalid", "fail", "--batch-size", "0"])
    assert result.exit_code == 2 and "--batch-size" in result.output
    args = batch_score.parse_args(["--config", str(path), "--on-invalid", "fail", "--keep-columns", "a, b"])
    config = batch_score.batch_config(args)
    assert (config.on_invalid, config.keep_columns, config.output) == ("fail", ["a", "b"], "predictions/")
    assert batch_score.main(["--model", "churn", "--input", "x"]) == 2  # no --output: refused before Ray


def test_no_second_strict_base_or_yaml_loader_in_the_package() -> None:
    """One strict base and one YAML reader (_internal/config_file.py, below every layer: the stage configs and the
    feature views of features/ both load through it)."""
    root = Path(__file__).resolve().parents[2] / "platform" / "mlplatform"
    allowed = {root / "_internal" / "config_file.py"}
    offenders = [f"{path.relative_to(root)}: {needle}" for path in sorted(root.rglob("*.py")) if path not in allowed
                 for needle in ("class _Strict", "_STRICT =", "yaml.safe_load(") if needle in path.read_text()]
    assert offenders == []
