"""A torch MLP for tabular classification and regression."""

from __future__ import annotations

import math
from typing import Any, Literal, cast

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator
from torch import nn

from mlplatform.errors import InvalidInput

MAX_EMBEDDING_DIM = 50


class MLPConfig(BaseModel):
    """Architecture of :class:`TabularMLP`; stored in ``manifest.architecture["config"]`` and rebuilt from it."""

    model_config = ConfigDict(extra="forbid")

    hidden: list[PositiveInt] = Field(default_factory=lambda: [64, 32], description="Hidden layer widths (> 0).")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    norm: str = Field(default="none", pattern="^(none|batch|layer)$")
    embedding_dim: int | Literal["auto"] = Field(
        default=0, description="Categorical embeddings: 0 disables them; auto sizes each column "
        "min(50, ceil(cardinality / 2)) (SPEC S4.4); a number gives every column that size.")
    embedding_dims: dict[str, PositiveInt] = Field(
        default_factory=dict, description="Per categorical column size, overriding embedding_dim for that column.")

    @model_validator(mode="after")
    def _embeddings(self) -> MLPConfig:
        if isinstance(self.embedding_dim, int) and self.embedding_dim < 0:
            raise ValueError("embedding_dim must be >= 0 or 'auto'")
        if self.embedding_dims and self.embedding_dim == 0:
            raise ValueError("embedding_dims needs embeddings on (embedding_dim auto or > 0)")
        return self

    @property
    def uses_embeddings(self) -> bool:
        return self.embedding_dim != 0


def resolve_embedding_sizes(config: MLPConfig, cardinalities: list[int], names: list[str] | None = None) -> list[int]:
    """One embedding size per categorical column (SPEC S4.4): the per-column override, else the global size,
    else ``min(50, ceil(cardinality / 2))`` (at least 1). Empty when embeddings are off."""
    if not config.uses_embeddings:
        return []
    names = list(names or [])
    unknown = sorted(set(config.embedding_dims) - set(names))
    if unknown:
        raise InvalidInput(f"embedding_dims: {unknown[0]!r} is not a categorical feature "
                           f"(categoricals: {', '.join(names) or 'none'})", field="model.params.embedding_dims")
    sizes = []
    for i, card in enumerate(cardinalities):
        name = names[i] if i < len(names) else None
        if name in config.embedding_dims:
            sizes.append(config.embedding_dims[name])
        elif config.embedding_dim == "auto":
            sizes.append(max(1, min(MAX_EMBEDDING_DIM, math.ceil(card / 2))))
        else:
            sizes.append(int(config.embedding_dim))
    return sizes


class TabularMLP(nn.Module):
    """Dense inputs (already transformed), optional embeddings for categorical codes, linear head.

    ``embedding_sizes`` (from an artifact's architecture) wins over the config; artifacts written before
    per-column sizes have none, and their single ``embedding_dim`` rebuilds the same network."""

    def __init__(self, n_inputs: int, n_outputs: int, config: MLPConfig | None = None,
                 cardinalities: list[int] | None = None, categorical_names: list[str] | None = None,
                 embedding_sizes: list[int] | None = None) -> None:
        super().__init__()
        self.config = config or MLPConfig()
        self.cardinalities = list(cardinalities or [])
        self.categorical_names = list(categorical_names or [])
        if embedding_sizes is None:
            embedding_sizes = resolve_embedding_sizes(self.config, self.cardinalities, self.categorical_names)
        self.embedding_sizes = [int(d) for d in embedding_sizes]
        self.embeddings = nn.ModuleList(
            [nn.Embedding(card + 1, dim) for card, dim in zip(self.cardinalities, self.embedding_sizes, strict=True)]
        )
        width = n_inputs + sum(self.embedding_sizes)
        layers: list[nn.Module] = []
        for size in self.config.hidden:
            layers.append(nn.Linear(width, size))
            if self.config.norm == "batch":
                layers.append(nn.BatchNorm1d(size))
            elif self.config.norm == "layer":
                layers.append(nn.LayerNorm(size))
            layers.append(nn.ReLU())
            if self.config.dropout > 0:
                layers.append(nn.Dropout(self.config.dropout))
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, dense: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        if len(self.embeddings) and codes is not None:
            dense = torch.cat([dense, *[emb(codes[:, i]) for i, emb in enumerate(self.embeddings)]], dim=1)
        return self.head(self.body(dense))

    def architecture(self) -> dict[str, Any]:
        return {"config": self.config.model_dump(), "cardinalities": self.cardinalities,
                "categorical_names": self.categorical_names, "embedding_sizes": self.embedding_sizes,
                "n_inputs": (cast(nn.Linear, self.body[0]).in_features if len(self.body) else self.head.in_features)
                - sum(self.embedding_sizes), "n_outputs": self.head.out_features}
