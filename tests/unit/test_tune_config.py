"""Search configs (SPEC S3.1): typed, validated at load, errors naming the file and the field; the spaces each
algorithm gets from one config."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform.config.tune import BASELINE_PATTERN, grid_size, load_tune_config, tune_config_from_dict
from mlplatform.errors import ConfigError
from mlplatform.tuning.space import (
    DefineByRun,
    baseline_config,
    canonical_config,
    families,
    grid_configs,
    warm_points,
)

ROOT = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = {
    "name": "t", "model_name": "churn",
    "patterns": {
        "logistic": {"params": {"C": {"loguniform": [0.01, 10.0]}}},
        "hist_gbdt": {"params": {"max_depth": {"choice": [3, None]}, "max_iter": {"int": [20, 40]}}},
        "mlp": {"params": {"hidden": {"choice": [[16], [32, 16]]}},
                "training": {"lr": {"loguniform": [0.001, 0.01]}, "epochs": 3}},
    },
    "preprocessing": {"scaling": {"choice": ["standard", "none"]}},
    "rebalancing": ["none", "class_weight"],
}


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("config", sorted((ROOT / "tune_configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The demo's configs read the data `make demo` writes under demo_output/ (relative to the repo root).
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "demo_output" / "data"
    data.mkdir(parents=True)
    for name in ("churn_train.parquet", "churn_recent.parquet"):
        (data / name).write_bytes(b"")
    loaded = load_tune_config(config.resolve())
    assert len(loaded.patterns) >= 3 and loaded.resolved_mode == "max"


@pytest.mark.parametrize(("mutate", "field", "words"), [
    (lambda d: d["patterns"]["logistic"]["params"].update(C={"loguniform": [10.0, 1.0]}),
     "patterns.logistic.params.C", "low 10.0 > high 1.0"),
    (lambda d: d["patterns"]["hist_gbdt"]["params"].update(max_depth={"choice": []}),
     "patterns.hist_gbdt.params.max_depth.choice", "at least 1 item"),
    (lambda d: d["patterns"].update(boosting={}), "patterns.boosting", "unknown model family 'boosting'"),
    (lambda d: d["patterns"]["logistic"].update(family="xgboost"), "patterns.logistic.family", "xgboost"),
    (lambda d: d["patterns"]["mlp"]["training"].update(lr={"uniform": [0.1, 0.2], "log": True}),
     "patterns.mlp.training.lr.log", "unknown field"),
    (lambda d: d["patterns"]["mlp"]["training"].update(lr={"uniform": [-1.0, 0.1]}),
     "patterns.mlp.training.lr", "greater than 0"),
    (lambda d: d["patterns"]["mlp"]["params"].update(dropout={"uniform": [0.0, 1.5]}),
     "patterns.mlp.params.dropout", "less than 1"),
    (lambda d: d["patterns"]["logistic"].update(training={"lr": 0.1}), "patterns.logistic.training",
     "torch families only"),
    (lambda d: d["preprocessing"].update(scaling={"choice": ["standard", "minmax"]}), "preprocessing.scaling",
     "pattern"),
    (lambda d: d.update(rebalancing=["smote"]), "rebalancing.0", "'none' or 'class_weight'"),
    (lambda d: d.update(rebalancing=[]), "rebalancing", "at least 1 item"),
    (lambda d: d.update(metric="roc_auc"), "<root>", "val_"),
    (lambda d: d.update(search={"algorithm": "hyperopt"}), "search.algorithm", "'random', 'grid' or 'optuna'"),
    (lambda d: d.update(search={"scheduler": "pbt"}), "search.scheduler", "torch patterns only"),
    (lambda d: d.update(search={"algorithm": "grid"}, budget={"num_samples": 5}), "budget.num_samples",
     "the grid holds"),
    (lambda d: d["patterns"].update(most_frequent={}), "patterns.most_frequent", "baseline trial"),
    (lambda d: d.update(budgett={"num_samples": 5}), "budgett", "unknown field"),
])
def test_bad_configs_name_the_file_and_the_field(tmp_path: Path, mutate: Any, field: str, words: str) -> None:
    data = copy.deepcopy(BASE)
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_tune_config(path)
    assert info.value.field == field
    assert str(path) in info.value.message and field in info.value.message and words in info.value.message


def test_pbt_needs_one_torch_pattern_with_mutated_dimensions() -> None:
    data = copy.deepcopy(BASE)
    data["patterns"] = {"mlp": data["patterns"]["mlp"]}
    data["search"] = {"scheduler": "pbt", "mutations": ["lr"]}
    assert tune_config_from_dict(data).search.scheduler == "pbt"
    data["search"]["mutations"] = ["batch_size"]  # a constant (absent) setting cannot be perturbed
    with pytest.raises(ConfigError, match=r"search\.mutations"):
        tune_config_from_dict(data)


def test_grid_is_counted_and_enumerated_with_the_baseline_first() -> None:
    data = copy.deepcopy(BASE)
    data["search"] = {"algorithm": "grid", "grid_points": 2}
    data["budget"] = {"num_samples": 100}
    config = tune_config_from_dict(data)
    configs = grid_configs(config)
    # logistic 2 x hist_gbdt (2 x 2) x mlp (2 x 2), each x 2 scalings x 2 rebalancings, + baseline
    assert len(configs) == grid_size(config) == 1 + (2 + 4 + 4) * 2 * 2
    assert configs[0] == baseline_config()
    assert {c["pattern"] for c in configs} == {"logistic", "hist_gbdt", "mlp", BASELINE_PATTERN}
    logistic = [c["params"]["C"] for c in configs if c["pattern"] == "logistic"]
    assert min(logistic) == pytest.approx(0.01) and max(logistic) == pytest.approx(10.0)


class _FakeTrial:
    """Records suggest_* calls like Optuna's trial; returns the first choice or the low bound."""

    def __init__(self, pattern: str) -> None:
        self.pattern, self.names = pattern, []

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        self.names.append(name)
        return self.pattern if name == "pattern" else choices[-1]

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        self.names.append(name)
        return low

    def suggest_int(self, name: str, low: int, high: int) -> int:
        self.names.append(name)
        return low


def test_optuna_space_is_conditional_and_canonicalises() -> None:
    config = tune_config_from_dict(copy.deepcopy(BASE))
    trial = _FakeTrial("mlp")
    raw = DefineByRun(config)(trial)
    assert not any(n.startswith(("logistic/", "hist_gbdt/")) for n in trial.names)  # only the chosen pattern
    nested: dict[str, Any] = {"pattern": raw.pop("pattern", "mlp"), "mlp": {"params": {}, "training": {}}}
    for key, value in raw.items():
        parts = key.split("/")
        if parts[0] == "mlp":
            nested["mlp"][parts[1]][parts[2]] = value
        elif parts[0] == "preprocessing":
            nested.setdefault("preprocessing", {})[parts[1]] = value
        else:
            nested[key] = value
    canonical = canonical_config(nested, families(config))
    assert canonical == {"pattern": "mlp", "family": "mlp", "params": {"hidden": [32, 16]},
                         "training": {"lr": 0.001, "epochs": 3}, "preprocessing": {"scaling": "none"},
                         "rebalancing": "class_weight"}
    # The same config as an Optuna warm-start point: flat names, non-scalar choices JSON-encoded.
    config.search.algorithm = "optuna"
    point = warm_points(config, [canonical])[0]
    assert point == {"pattern": "mlp", "mlp/params/hidden": "[32, 16]", "mlp/training/lr": 0.001,
                     "preprocessing/scaling": "none", "rebalancing": "class_weight"}
