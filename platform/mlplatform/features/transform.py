"""Preprocessing fitted once on the training split and shipped inside the model artifact as JSON.

One code path (:meth:`TabularTransform.transform`) serves training, Ray Data batch scoring and Serve, so there is
no training/serving skew. The fitted state is plain JSON: loading it runs no code (no pickle).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mlplatform.errors import InvalidInput
from mlplatform.features.schema import FeatureSpec, coerce_frame, infer_schema, schema_from_json, schema_to_json

TRANSFORM_FILE = "transform.json"


class TransformConfig(BaseModel):
    """What to fit. Defaults follow SPEC S4.1."""

    model_config = ConfigDict(extra="forbid")

    scaling: str = Field(default="standard", pattern="^(standard|none)$")
    impute: str = Field(default="auto", pattern="^(auto|mean|median)$")
    max_categories: int = Field(default=50, ge=1)
    missing_indicators: bool = True


class _NumericState(BaseModel):
    name: str
    fill: float
    mean: float
    std: float
    indicator: bool


class _CategoricalState(BaseModel):
    name: str
    vocabulary: list[str]


class TabularTransform:
    """Numeric: impute (median when |skew| > 1, else mean), missing-value indicator, standard scaling.
    Categorical: one-hot over the most frequent values plus one column for unseen or missing values."""

    def __init__(self, schema: list[FeatureSpec], numeric: list[_NumericState],
                 categorical: list[_CategoricalState], config: TransformConfig) -> None:
        self.schema = schema
        self.numeric = numeric
        self.categorical = categorical
        self.config = config
        self._vocab_index = [{v: i for i, v in enumerate(c.vocabulary)} for c in categorical]

    # -- fitting -----------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, df: pd.DataFrame, features: list[str], config: TransformConfig | None = None) -> TabularTransform:
        config = config or TransformConfig()
        if len(df) == 0:
            raise InvalidInput("cannot fit a transform on an empty training split", field="data")
        schema = infer_schema(df, features)
        frame = coerce_frame(df, schema)
        numeric, categorical = [], []
        for spec in schema:
            col = frame[spec.name]
            if spec.is_numeric:
                values = col.to_numpy(dtype="float64")
                present = values[~np.isnan(values)]
                if present.size == 0:
                    mean = std = fill = 0.0
                else:
                    mean = float(present.mean())
                    std = float(present.std())
                    skew = float(pd.Series(present).skew()) if present.size > 2 else 0.0
                    use_median = config.impute == "median" or (config.impute == "auto" and abs(skew) > 1)
                    fill = float(np.median(present)) if use_median else mean
                numeric.append(_NumericState(name=spec.name, fill=fill, mean=mean, std=std if std > 0 else 1.0,
                                             indicator=config.missing_indicators and bool(np.isnan(values).any())))
            else:
                counts = col.dropna().value_counts()
                vocabulary = sorted(counts.index[: config.max_categories].tolist(),
                                    key=lambda v: (-counts[v], v))
                categorical.append(_CategoricalState(name=spec.name, vocabulary=[str(v) for v in vocabulary]))
        return cls(schema, numeric, categorical, config)

    # -- applying ----------------------------------------------------------------------------------------------
    @property
    def output_names(self) -> list[str]:
        names: list[str] = []
        for state in self.numeric:
            names.append(state.name)
            if state.indicator:
                names.append(f"{state.name}__missing")
        for cat in self.categorical:
            names.extend(f"{cat.name}={v}" for v in cat.vocabulary)
            names.append(f"{cat.name}=__other__")
        return names

    @property
    def n_outputs(self) -> int:
        return len(self.output_names)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """A float32 matrix in :attr:`output_names` order."""
        frame = coerce_frame(df, self.schema)
        n = len(frame)
        out = np.zeros((n, self.n_outputs), dtype=np.float32)
        col = 0
        for state in self.numeric:
            values = frame[state.name].to_numpy(dtype="float64")
            missing = np.isnan(values)
            filled = np.where(missing, state.fill, values)
            out[:, col] = (filled - state.mean) / state.std if self.config.scaling == "standard" else filled
            col += 1
            if state.indicator:
                out[:, col] = missing
                col += 1
        for cat, index in zip(self.categorical, self._vocab_index, strict=True):
            width = len(cat.vocabulary) + 1
            codes = frame[cat.name].map(lambda v, idx=index, other=width - 1: idx.get(v, other)).to_numpy()
            out[np.arange(n), col + codes.astype(np.int64)] = 1.0
            col += width
        return out

    def category_codes(self, df: pd.DataFrame) -> np.ndarray:
        """Integer codes per categorical feature (0 = unseen or missing) for embedding layers."""
        frame = coerce_frame(df, self.schema)
        codes = np.zeros((len(frame), len(self.categorical)), dtype=np.int64)
        for j, (cat, index) in enumerate(zip(self.categorical, self._vocab_index, strict=True)):
            codes[:, j] = frame[cat.name].map(lambda v, idx=index: idx.get(v, -1) + 1).to_numpy()
        return codes

    # -- persistence -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "tabular_transform", "version": 1, "config": self.config.model_dump(),
            "schema": schema_to_json(self.schema), "numeric": [s.model_dump() for s in self.numeric],
            "categorical": [c.model_dump() for c in self.categorical],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TabularTransform:
        if data.get("kind") != "tabular_transform":
            raise InvalidInput("not a tabular transform artifact", field="transform")
        return cls(schema_from_json(data["schema"]), [_NumericState(**s) for s in data["numeric"]],
                   [_CategoricalState(**c) for c in data["categorical"]], TransformConfig(**data["config"]))

    def save(self, directory: Path) -> Path:
        path = Path(directory) / TRANSFORM_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True))
        return path

    @classmethod
    def load(cls, directory: Path) -> TabularTransform:
        return cls.from_dict(json.loads((Path(directory) / TRANSFORM_FILE).read_text()))

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()
