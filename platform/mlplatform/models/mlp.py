"""A torch MLP for tabular classification and regression."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from torch import nn


class MLPConfig(BaseModel):
    """Architecture of :class:`TabularMLP`; stored in ``manifest.architecture["config"]`` and rebuilt from it."""

    model_config = ConfigDict(extra="forbid")

    hidden: list[PositiveInt] = Field(default_factory=lambda: [64, 32], description="Hidden layer widths (> 0).")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    norm: str = Field(default="none", pattern="^(none|batch|layer)$")
    embedding_dim: int = Field(default=0, ge=0, description="0 disables categorical embeddings")


class TabularMLP(nn.Module):
    """Dense inputs (already transformed), optional embeddings for categorical codes, linear head."""

    def __init__(self, n_inputs: int, n_outputs: int, config: MLPConfig | None = None,
                 cardinalities: list[int] | None = None) -> None:
        super().__init__()
        self.config = config or MLPConfig()
        self.cardinalities = list(cardinalities or [])
        dim = self.config.embedding_dim
        self.embeddings = nn.ModuleList(
            [nn.Embedding(card + 1, dim) for card in self.cardinalities] if dim > 0 else []
        )
        width = n_inputs + dim * len(self.embeddings)
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
                "n_inputs": self.body[0].in_features - self.config.embedding_dim * len(self.embeddings)
                if len(self.body) else self.head.in_features, "n_outputs": self.head.out_features}
