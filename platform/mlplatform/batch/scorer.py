"""The Ray Data callable class: validate, transform and predict one batch; the model loads once per actor.

The model arrives through an injected loader, never from the actor's own environment: Ray actors do not see
the driver's ``MLPLATFORM_*`` settings, and the driver has already resolved and verified the version.
:class:`ArtifactBytesLoader` carries the verified files themselves (a model artifact is small next to the data),
so actors need no access to the store or the artifact filesystem, and tests inject a real small model the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mlplatform.batch.validation import all_rows_valid, split_valid_rows
from mlplatform.errors import IntegrityError
from mlplatform.features.rows import CheckedRows
from mlplatform.features.schema import schema_from_json
from mlplatform.predictor import Predictor

logger = logging.getLogger(__name__)


class ArtifactBytesLoader:
    """Rebuilds a verified artifact directory from its bytes and loads it; each file is checked again against
    the registry's SHA-256, so what an actor scores with is exactly what the driver verified."""

    def __init__(self, files: dict[str, bytes], expected: dict[str, dict[str, Any]], name: str, version: int) -> None:
        self.files = files
        self.expected = expected
        self.name = name
        self.version = version

    @classmethod
    def from_dir(cls, directory: Path, expected: dict[str, dict[str, Any]], name: str,
                 version: int) -> ArtifactBytesLoader:
        return cls({rel: (Path(directory) / rel).read_bytes() for rel in expected}, expected, name, version)

    def __call__(self) -> Predictor:
        local = Path(tempfile.mkdtemp(prefix="mlplatform-batch-model-"))
        try:
            for rel, data in self.files.items():
                found = hashlib.sha256(data).hexdigest()
                if found != self.expected[rel]["sha256"]:
                    raise IntegrityError(f"artifact file {rel} of {self.name}:{self.version} changed in transit "
                                         f"(sha256 {found[:12]})", field=rel)
                target = local / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            return Predictor.from_dir(local, name=self.name, version=self.version)
        finally:
            shutil.rmtree(local, ignore_errors=True)


def prediction_fields(manifest_task: str, classes: list[Any] | None) -> list[pa.Field]:
    """Output columns after the kept keys; the same for every batch so that all files share one schema."""
    if manifest_task != "classification":
        return [pa.field("prediction", pa.float64())]
    class_type = pa.array(list(classes or [])).type if classes else pa.string()
    fields = [pa.field("prediction", class_type)]
    if classes is not None and len(classes) == 2:
        fields.append(pa.field("probability", pa.float64()))  # P(classes[1]), never "the max"
    else:
        fields.append(pa.field("confidence", pa.float64()))
        fields.extend(pa.field(f"probability_{c}", pa.float64()) for c in classes or [])
    return fields


def output_schema(input_schema: pa.Schema, keep_columns: list[str], task: str,
                  classes: list[Any] | None) -> pa.Schema:
    return pa.schema([input_schema.field(c) for c in keep_columns] + prediction_fields(task, classes) + [
        pa.field("model_name", pa.string()), pa.field("model_version", pa.int64()),
        pa.field("run_id", pa.string()), pa.field("scored_at", pa.timestamp("us", tz="UTC")),
    ])


def quarantine_schema(input_schema: pa.Schema, keep_columns: list[str]) -> pa.Schema:
    return pa.schema([input_schema.field(c) for c in keep_columns]
                     + [pa.field("reason", pa.string()), pa.field("row", pa.string())])


class BatchScorer:
    """``ds.map_batches(BatchScorer, fn_constructor_kwargs=..., batch_format="pyarrow", concurrency=N)``.

    Valid rows come back as prediction rows; invalid rows go to ``<quarantine_path>/part-<hash>.parquet``
    written from here. The name is a hash of the batch's content, so a retried task overwrites its own file
    instead of adding a duplicate, and the driver's reconciliation catches anything else.
    """

    def __init__(self, loader: Callable[[], Predictor], *, feature_schema: list[dict[str, Any]],
                 keep_columns: list[str], required_columns: list[str], output_schema: pa.Schema,
                 quarantine_schema: pa.Schema, quarantine_fs: pafs.FileSystem, quarantine_path: str,
                 run_id: str, scored_at: datetime) -> None:
        self.predictor = loader()
        self.features = schema_from_json(feature_schema)
        self.feature_names = [f.name for f in self.features]
        self.keep_columns = keep_columns
        self.required_columns = required_columns
        self.output_schema = output_schema
        self.quarantine_schema = quarantine_schema
        self.quarantine_fs = quarantine_fs
        self.quarantine_path = quarantine_path
        self.run_id = run_id
        self.scored_at = pd.Timestamp(scored_at)
        self.classes = self.predictor.manifest.classes
        self._constants = {"model_name": self.predictor.name, "model_version": self.predictor.version,
                           "run_id": run_id, "scored_at": self.scored_at.to_pydatetime()}
        logger.info("batch scorer loaded %s:%s", self.predictor.name, self.predictor.version)

    def __call__(self, batch: pa.Table) -> pa.Table:
        if all_rows_valid(batch, self.features, self.required_columns):
            # Arrow columns straight into the validator and the compiled transform: no DataFrame on this path
            features = self.predictor.check(batch.select(self.feature_names))
            return self._predict(batch, features, np.arange(batch.num_rows))
        frame = batch.to_pandas()
        split = split_valid_rows(frame, self.features, self.required_columns, self.predictor.transform.row_rules)
        if len(split.invalid_positions):
            self._quarantine(batch, frame, split.invalid_positions, split.reasons)
        return self._predict(batch, split.features, split.valid_positions)

    def _predict(self, batch: pa.Table, features: CheckedRows | pd.DataFrame, positions: np.ndarray) -> pa.Table:
        n = len(positions)
        every_row = n == batch.num_rows  # positions is a subset in order: equal length means all rows
        columns: dict[str, Any] = {c: batch.column(c) if every_row else batch.column(c).take(pa.array(positions))
                                   for c in self.keep_columns}
        result = self.predictor.predict_checked(features) if n else None
        for field in self.output_schema:
            if field.name in columns:
                continue
            if field.name == "prediction":
                values: Any = result.predictions if result is not None else []
            elif field.name == "probability":
                values = result.probabilities[:, 1] if result is not None and result.probabilities is not None \
                    else []
            elif field.name == "confidence":
                values = result.confidence if result is not None else []
            elif field.name.startswith("probability_"):
                index = [f"probability_{c}" for c in self.classes or []].index(field.name)
                values = result.probabilities[:, index] \
                    if result is not None and result.probabilities is not None else []
            else:  # a constant per run (scored_at too, so every row of a run agrees): no per-row Python objects
                columns[field.name] = pa.repeat(pa.scalar(self._constants[field.name], type=field.type), n)
                continue
            columns[field.name] = pa.array(values, type=field.type)
        return pa.table(columns, schema=self.output_schema)

    def _quarantine(self, batch: pa.Table, frame: pd.DataFrame, positions: np.ndarray, reasons: list[str]) -> None:
        take = pa.array(positions, pa.int64())
        raw = frame.iloc[positions]
        raw = raw.astype(object).where(raw.notna(), None)  # JSON null, not the non-standard NaN
        rows = [json.dumps(r, default=str, sort_keys=True) for r in raw.to_dict(orient="records")]
        table = pa.table({**{c: batch.column(c).take(take) for c in self.keep_columns},
                          "reason": pa.array(reasons, pa.string()), "row": pa.array(rows, pa.string())},
                         schema=self.quarantine_schema)
        digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()
        self.quarantine_fs.create_dir(self.quarantine_path, recursive=True)
        pq.write_table(table, f"{self.quarantine_path}/part-{digest[:32]}.parquet", filesystem=self.quarantine_fs)


# One scorer per worker process and run: Ray reuses a worker process for the tasks of a job, so with fused tasks the
# model still loads once per process, as in an actor. Holding only the current run bounds the memory it keeps.
_PROCESS_SCORERS: dict[str, BatchScorer] = {}


def score_in_task(batch: pa.Table, *, cache_key: str, batch_size: int, **scorer_kwargs: Any) -> pa.Table:
    """``map_batches`` function of the fused strategy: read, score and write run in one task, so no block crosses
    the object store between them. The block arrives whole and is scored ``batch_size`` rows at a time."""
    scorer = _PROCESS_SCORERS.get(cache_key)
    if scorer is None:
        _PROCESS_SCORERS.clear()
        scorer = _PROCESS_SCORERS[cache_key] = BatchScorer(**scorer_kwargs)
    if batch.num_rows <= batch_size:
        return scorer(batch)
    return pa.concat_tables([scorer(batch.slice(start, batch_size))
                             for start in range(0, batch.num_rows, batch_size)])
