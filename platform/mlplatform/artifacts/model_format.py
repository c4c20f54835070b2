"""The model artifact: one directory per version.

``model.json``   manifest: framework, task, ordered classes, input schema, threshold, metrics, lineage
``transform.json``  fitted preprocessing (JSON; loading runs no code)
``model.skops`` | ``model.pt``  sklearn estimator in skops format, or a torch ``state_dict``
``drift_reference.json``  optional reference profile for monitoring

skops is used for sklearn because it refuses object types it is not told to trust, where pickle/joblib would run
arbitrary code from a tampered file. torch weights are loaded with ``weights_only=True``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlplatform.errors import IntegrityError, InvalidInput

MANIFEST_FILE = "model.json"
FORMAT_VERSION = 1


class ModelManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    framework: Literal["sklearn", "torch"]
    task: Literal["classification", "regression"]
    family: str
    target: str
    classes: list[Any] | None = None
    threshold: float | None = None
    input_schema: list[dict[str, Any]]
    model_file: str
    model_params: dict[str, Any] = Field(default_factory=dict)
    architecture: dict[str, Any] | None = None
    transform_file: str = "transform.json"
    metrics: dict[str, float] = Field(default_factory=dict)
    lineage: dict[str, Any] = Field(default_factory=dict)

    def write(self, directory: Path) -> Path:
        path = Path(directory) / MANIFEST_FILE
        path.write_text(json.dumps(self.model_dump(), indent=1, sort_keys=True, default=str))
        return path

    @classmethod
    def read(cls, directory: Path) -> ModelManifest:
        path = Path(directory) / MANIFEST_FILE
        if not path.is_file():
            raise InvalidInput(f"{directory} has no {MANIFEST_FILE}; not a model artifact", field="artifact_dir")
        try:
            return cls.model_validate_json(path.read_text())
        except ValueError as exc:
            raise IntegrityError(f"{path} is not a valid model manifest: {str(exc).splitlines()[0]}") from exc
