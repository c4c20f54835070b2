"""SPEC S4.3-S4.5 completed (issue 15, deliverable 7): imputation options in the training YAML, per-column
embedding sizes, generated features and feature selection fitted once and shipped in transform.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from mlplatform.config.train import TrainConfig, load_train_config
from mlplatform.errors import ConfigError, InvalidInput
from mlplatform.features.transform import FORMAT_VERSION, TabularTransform, TransformConfig
from mlplatform.models.mlp import MLPConfig, TabularMLP, resolve_embedding_sizes


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(10, 2, n)
    return pd.DataFrame({
        "a": a, "b": rng.integers(0, 4, n).astype(float), "c": rng.normal(0, 1, n),
        "a_copy": a * 3 + 1,  # perfectly correlated with a
        "flat": np.ones(n),  # zero variance
        "noise": rng.normal(size=n), "city": rng.choice(["x", "y", "z"], n),
        "y": (a + rng.normal(0, 0.5, n) > 10).astype(int)})


FEATURES = ["a", "b", "c", "a_copy", "flat", "noise", "city"]


# -- S4.5 generated features -------------------------------------------------------------------------------------
def test_generated_ratio_product_log_with_missing_rules() -> None:
    train = _frame()
    config = TransformConfig(generated=[{"kind": "ratio", "columns": ["a", "b"]},
                                        {"kind": "product", "columns": ["a", "c"], "name": "a_c"},
                                        {"kind": "log", "columns": ["c"]}])
    t = TabularTransform.fit(train, FEATURES, config)
    names = t.output_names
    assert {"a_per_b", "a_per_b__missing", "a_c", "log1p_c", "log1p_c__missing"} <= set(names)
    rows = pd.DataFrame({"a": [4.0, 4.0, None], "b": [2.0, 0.0, 1.0], "c": [-1.0, 3.0, 0.5], "a_copy": 1.0,
                         "flat": 1.0, "noise": 0.0, "city": "x"})
    x = t.transform(rows)
    col = {n: x[:, i] for i, n in enumerate(names)}
    ratio = t._numeric_by_name["a_per_b"]
    # 4 / 2 = 2; a zero denominator and a missing input are missing: the fitted fill plus the indicator
    np.testing.assert_allclose(col["a_per_b"] * ratio.std + ratio.mean, [2.0, ratio.fill, ratio.fill], rtol=1e-5)
    assert col["a_per_b__missing"].tolist() == [0.0, 1.0, 1.0]
    log = t._numeric_by_name["log1p_c"]
    assert col["log1p_c__missing"].tolist() == [1.0, 0.0, 0.0]  # log of a negative value is missing
    np.testing.assert_allclose(col["log1p_c"][1] * log.std + log.mean, math.log1p(3.0), rtol=1e-5)
    # row-wise: one row alone gives what it gives in the batch; generated columns never enter the input schema
    np.testing.assert_array_equal(t.transform(rows.iloc[[1]]), x[[1]])
    assert [s.name for s in t.schema] == FEATURES
    assert t.imputation_report(rows)["a_per_b"]["missing_before"] == 2


def test_generated_features_are_checked() -> None:
    with pytest.raises(ValidationError, match="two columns"):
        TransformConfig(generated=[{"kind": "ratio", "columns": ["a"]}])
    with pytest.raises(InvalidInput, match="must be numeric") as info:
        TabularTransform.fit(_frame(), FEATURES, TransformConfig(generated=[{"kind": "log", "columns": ["city"]}]))
    assert info.value.field == "generated"


# -- S4.5 selection ------------------------------------------------------------------------------------------------
def test_selection_variance_correlation_and_top_k() -> None:
    train = _frame()
    config = TransformConfig(missing_indicators=False,
                             selection={"variance_threshold": 0.0, "max_correlation": 0.95})
    t = TabularTransform.fit(train, FEATURES, config, target=train["y"])
    assert "flat" not in t.output_names and "a_copy" not in t.output_names and "a" in t.output_names
    assert t.transform(train).shape == (len(train), t.n_outputs) == (len(train), len(t.output_names))
    for by in ("mutual_info", "importance"):
        top = TabularTransform.fit(train, FEATURES, TransformConfig(selection={"top_k": 2, "top_k_by": by}),
                                   target=train["y"])
        assert len(top.output_names) == 2 and top.output_names[0] in {"a", "a_copy"}, (by, top.output_names)
    with pytest.raises(InvalidInput, match="needs the training labels"):
        TabularTransform.fit(train, FEATURES, TransformConfig(selection={"top_k": 2}))
    with pytest.raises(InvalidInput, match="fitted on the training rows"):
        TabularTransform.from_statistics(t.schema, None, config)  # type: ignore[arg-type]


def test_projections_tsne_and_umap_stay_refused() -> None:
    for value in ("tsne", "t-SNE", "umap"):
        with pytest.raises(ValidationError, match="refused"):
            TransformConfig.model_validate({"projection": value})


# -- persistence ---------------------------------------------------------------------------------------------------
def test_transform_json_round_trip_and_old_versions(tmp_path: Path) -> None:
    train = _frame()
    config = TransformConfig(generated=[{"kind": "ratio", "columns": ["a", "b"]}],
                             selection={"max_correlation": 0.95})
    t = TabularTransform.fit(train, FEATURES, config, target=train["y"])
    t.save(tmp_path)
    data = json.loads((tmp_path / "transform.json").read_text())
    assert data["version"] == FORMAT_VERSION == 3 and data["selected"] == t.output_names
    loaded = TabularTransform.load(tmp_path)
    np.testing.assert_array_equal(loaded.transform(train), t.transform(train))
    # a version 2 file (no generated features, no selection) still loads and transforms the same
    plain = TabularTransform.fit(train, FEATURES)
    old = plain.to_dict()
    old["version"] = 2
    del old["selected"]
    for key in ("generated", "selection"):
        del old["config"][key]
    np.testing.assert_array_equal(TabularTransform.from_dict(old).transform(train), plain.transform(train))


# -- S4.3 imputation options in the training YAML ------------------------------------------------------------------
def test_train_config_features_section(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("model_name: m\nfeatures:\n  impute: median\n  impute_columns: {age: zero, plan: most_frequent}"
                    "\n  indicator_columns: all\n  generated: [{kind: log, columns: [usage_gb]}]\n"
                    "  selection: {max_correlation: 0.95}\n")
    config = load_train_config(path)
    assert config.features.impute == "median" and config.features.impute_columns == {"age": "zero",
                                                                                     "plan": "most_frequent"}
    assert config.features.generated[0].output_name == "log1p_usage_gb"
    assert TrainConfig(model_name="m").features == TransformConfig()
    path.write_text("model_name: m\nfeatures:\n  imputation: knn\n")
    with pytest.raises(ConfigError, match="features"):
        load_train_config(path)


# -- S4.4 embedding sizes ------------------------------------------------------------------------------------------
def test_embedding_sizes_default_global_and_per_column() -> None:
    cards, names = [3, 40, 500], ["plan", "region", "zip"]
    assert resolve_embedding_sizes(MLPConfig(embedding_dim="auto"), cards, names) == [2, 20, 50]
    assert resolve_embedding_sizes(MLPConfig(embedding_dim=4), cards, names) == [4, 4, 4]
    assert resolve_embedding_sizes(MLPConfig(embedding_dim="auto", embedding_dims={"zip": 8}), cards, names) == [
        2, 20, 8]
    assert resolve_embedding_sizes(MLPConfig(), cards, names) == []
    with pytest.raises(InvalidInput, match="'city' is not a categorical"):
        resolve_embedding_sizes(MLPConfig(embedding_dim="auto", embedding_dims={"city": 2}), cards, names)
    with pytest.raises(ValidationError, match="needs embeddings on"):
        MLPConfig(embedding_dims={"zip": 2})
    net = TabularMLP(5, 2, MLPConfig(embedding_dim="auto", hidden=[4]), cards, names)
    arch = net.architecture()
    assert arch["embedding_sizes"] == [2, 20, 50] and arch["n_inputs"] == 5
    assert net(torch.zeros(3, 5), torch.zeros(3, 3, dtype=torch.long)).shape == (3, 2)


def test_old_artifacts_with_one_embedding_size_still_load() -> None:
    # an architecture written before per-column sizes: config.embedding_dim and cardinalities only
    old = TabularMLP(5, 2, MLPConfig(embedding_dim=3, hidden=[4]), [3, 7])
    arch = {"config": old.config.model_dump(), "cardinalities": [3, 7], "n_inputs": 5, "n_outputs": 2}
    rebuilt = TabularMLP(arch["n_inputs"], arch["n_outputs"], MLPConfig(**arch["config"]), arch["cardinalities"],
                         arch.get("categorical_names"), arch.get("embedding_sizes"))
    rebuilt.load_state_dict(old.state_dict(), strict=True)
    assert rebuilt.embedding_sizes == [3, 3]
