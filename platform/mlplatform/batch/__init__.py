"""Batch scoring on Ray Data (SPEC S5): Parquet or CSV in, Parquet out, any registered version."""

from mlplatform.batch.job import BatchResult, run_batch
from mlplatform.batch.online import online_table_path, read_online_predictions, update_online_table
from mlplatform.batch.scorer import ArtifactBytesLoader, BatchScorer
from mlplatform.batch.validation import RowSplit, check_input_schema, split_valid_rows
from mlplatform.config.batch import BatchConfig  # the job's typed options, re-exported beside run_batch

__all__ = [
    "ArtifactBytesLoader",
    "BatchConfig",
    "BatchResult",
    "BatchScorer",
    "RowSplit",
    "check_input_schema",
    "online_table_path",
    "read_online_predictions",
    "run_batch",
    "split_valid_rows",
    "update_online_table",
]
