"""``BatchConfig``: one batch scoring job (SPEC S5), from a YAML file (``train_jobs/batch_score.py --config``), the
CLI flags or Python. Validated once, before the model is resolved or any Ray task starts; errors name the file and
the field.

Defaults follow SPEC S5: 10,000 rows per model call, one scorer per CPU (or GPU), a 5 % quarantine limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from mlplatform.config.base import StrictModel, config_from_dict, load_config
from mlplatform.entities.names import parse_model_ref

DEFAULT_BATCH_SIZE = 10_000  # per-batch costs (Arrow->pandas, validation) dominate below a few thousand rows
DEFAULT_MAX_QUARANTINE = 0.05
# Ray Data reads ahead until its object-store budget (a share of the store, GBs) is full, so peak memory grew with
# the input (measured: +1.8 GB for 5x the rows). A fixed budget keeps it flat; None restores Ray's default.
DEFAULT_IN_FLIGHT_MB = 1024
Compute = Literal["auto", "tasks", "actors"]


class BatchConfig(StrictModel):
    model: str = Field(description="name (the champion), name:version or name@alias; resolved once, at start.")
    input: str = Field(min_length=1, description="Parquet/CSV file, folder or glob on any pyarrow filesystem.")
    output: str = Field(min_length=1, description="Output folder; results go to model=<name>/version=<v>/.")
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, ge=1, description="Rows per model call.")
    concurrency: int | None = Field(default=None, ge=1, description="Concurrent scorers, tasks or actors "
                                    "(default: one per CPU, or per GPU).")
    compute: Compute = Field(default="auto", description="tasks: read, score and write fused in one task per "
                             "block (fastest on CPU); actors: an actor pool, one GPU each on GPU clusters; auto: "
                             "actors for torch models when the cluster has GPUs, else tasks.")
    keep_columns: list[str] = Field(default_factory=list, description="Id columns copied to the output.")
    partition_by: str | None = Field(default=None, description="Write hive partitions by this input column.")
    max_quarantine_fraction: float = Field(default=DEFAULT_MAX_QUARANTINE, ge=0.0, le=1.0,
                                           description="The job fails, nothing published, at this share of "
                                           "invalid rows.")
    on_invalid: Literal["quarantine", "fail"] = Field(default="quarantine", description="quarantine: invalid "
                                                      "rows go to _quarantine.parquet; fail: any invalid row fails "
                                                      "the job.")
    online_key: str | None = Field(default=None, description="Also write the latest prediction per value of this "
                                   "column to MLPLATFORM_HOME/online/<model>.parquet (the column is kept).")
    num_cpus_per_actor: float | None = Field(default=None, gt=0, description="CPU share per scorer; default: "
                                             "the free CPUs split between the scorers.")
    max_in_flight_mb: int | None = Field(default=DEFAULT_IN_FLIGHT_MB, ge=1, description="Ray Data's "
                                         "object-store budget for this job; None keeps Ray's default.")

    @field_validator("model")
    @classmethod
    def _model_ref(cls, value: str) -> str:
        parse_model_ref(value)  # InvalidInput naming the field: a typo fails here, not after Ray starts
        return value

    @field_validator("keep_columns")
    @classmethod
    def _columns(cls, value: list[str]) -> list[str]:
        return [c.strip() for c in value if c.strip()]

    @property
    def required_columns(self) -> list[str]:
        """Kept columns that every row must carry: the id columns and the online key."""
        return list(dict.fromkeys([*self.keep_columns, *([self.online_key] if self.online_key else [])]))

    @property
    def output_columns(self) -> list[str]:
        """Input columns copied to the output: the required ones and the partition column."""
        return list(dict.fromkeys([*self.required_columns, *([self.partition_by] if self.partition_by else [])]))

    @property
    def quarantine_limit(self) -> float:
        """The quarantined share that refuses the job: any invalid row with ``on_invalid: fail``."""
        return 0.0 if self.on_invalid == "fail" else self.max_quarantine_fraction


def batch_config_from_dict(data: dict[str, Any], source: str = "batch options") -> BatchConfig:
    return config_from_dict(data, BatchConfig, source)


def load_batch_config(path: Path | str, overrides: dict[str, Any] | None = None) -> BatchConfig:
    """A YAML file; ``overrides`` (flags given on the command line) replace its keys."""
    return load_config(path, BatchConfig, overrides)
