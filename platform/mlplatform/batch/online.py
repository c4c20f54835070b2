"""Precomputed predictions (the static serving pattern, SPEC S5.5): the latest prediction per entity.

One Parquet file per model, ``MLPLATFORM_HOME/online/<model>.parquet``, holding for each entity key the prediction
columns of the newest batch run that scored it (with ``model_version``, ``run_id`` and ``scored_at``, so a reader
can tell how fresh and from which version each answer is). A batch run merges its output in: entities it scored
are replaced, others keep their older rows. The file is replaced atomically (write beside, then ``os.replace``), so
a server reading it with :func:`read_online_predictions` sees either the old or the new table, never a mix.
The whole table is held in memory while merging: it is sized by the number of entities, not by the scored rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mlplatform.errors import InvalidInput, NotFound

ENTITY_KEY_METADATA = b"mlplatform.entity_key"
_EXTRA = ("model_name", "model_version", "run_id", "scored_at")


def online_table_path(home: Path, model_name: str) -> Path:
    return Path(home) / "online" / f"{model_name}.parquet"


def update_online_table(home: Path, model_name: str, fs: pafs.FileSystem, output_dir: str, key: str) -> Path:
    """Merge a committed batch output folder into the model's online table; returns the table's path."""
    data = pads.dataset(output_dir, filesystem=fs, format="parquet", partitioning="hive")
    if key not in data.schema.names:
        raise InvalidInput(f"online key {key!r} is not a kept column of the batch output; add it to "
                           "--keep-columns", field="online_key")
    columns = [key] + [c for c in data.schema.names if c.startswith(("prediction", "probability", "confidence"))]
    new = data.to_table(columns=columns + list(_EXTRA)).to_pandas()
    # One row per entity. Duplicated keys in one input are resolved deterministically (highest values win).
    new = new.sort_values(columns, kind="mergesort").drop_duplicates(key, keep="last")
    path = online_table_path(home, model_name)
    if path.exists():
        old = pq.read_table(path).to_pandas()
        new = pd.concat([old[~old[key].isin(new[key])], new], ignore_index=True)
    table = pa.Table.from_pandas(new.sort_values(key, kind="mergesort"), preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), ENTITY_KEY_METADATA: key.encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".parquet.tmp-{os.getpid()}")
    pq.write_table(table, partial)
    os.replace(partial, path)
    return path


def read_online_predictions(home: Path, model_name: str, keys: list[object] | None = None) -> pd.DataFrame:
    """Rows of the online table, all or only the given entity keys (a filtered read, not a full scan in pandas)."""
    path = online_table_path(home, model_name)
    if not path.exists():
        raise NotFound(f"no precomputed predictions for model {model_name!r} (run a batch with --online-key)",
                       field="model")
    key = pq.read_schema(path).metadata[ENTITY_KEY_METADATA].decode()
    filters = [(key, "in", list(keys))] if keys is not None else None
    return pq.read_table(path, filters=filters).to_pandas()
