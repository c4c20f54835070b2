"""Batch scoring on Ray Data (SPEC S5): resolve and verify on the driver, stream read -> validate -> predict in an
actor pool -> write Parquet to a staging folder, reconcile, then move the folder into place.

Output layout (deterministic, so reruns replace instead of adding files)::

    OUTPUT/model=<name>/version=<v>/            prediction files (hive sub-folders with --partition-by)
    OUTPUT/model=<name>/version=<v>/_quarantine.parquet   rejected rows: kept keys, reason, the raw row as JSON
    OUTPUT/model=<name>/version=<v>/_summary.json         counts, run id, input fingerprint

The ``_`` prefix keeps the side files out of ``pyarrow.dataset`` / Ray Data reads of the folder. The final move is
a rename on local and HDFS filesystems; on object stores (s3, gs) pyarrow copies then deletes, so a reader there
can see the folder appear file by file (the ``_summary.json`` is written last: wait for it).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mlplatform import errors
from mlplatform.artifacts.model_format import ModelManifest
from mlplatform.batch.inputs import InputFiles, discover_inputs, open_filesystem
from mlplatform.batch.online import update_online_table
from mlplatform.batch.scorer import (
    ArtifactBytesLoader,
    BatchScorer,
    output_schema,
    quarantine_schema,
    score_in_task,
)
from mlplatform.batch.validation import check_input_schema
from mlplatform.config.batch import BatchConfig
from mlplatform.entities import ModelVersion, RunKind, RunStatus
from mlplatform.errors import GateFailed, IntegrityError, MLPlatformError
from mlplatform.features.datasets import csv_convert_options
from mlplatform.features.schema import schema_from_json
from mlplatform.predictor import Predictor
from mlplatform.settings import get_settings

if TYPE_CHECKING:
    # Ray Data workers import mlplatform.batch; the client (SQLAlchemy, Alembic) stays out of them
    from mlplatform.client import Client

logger = logging.getLogger(__name__)
LoaderFactory = Callable[[ModelVersion, Path], Callable[[], Predictor]]


@dataclass(frozen=True)
class BatchResult:
    run_id: str
    model_name: str
    model_version: int
    output_path: str
    quarantine_path: str
    rows_in: int
    rows_scored: int
    rows_quarantined: int
    duration_s: float
    rows_per_s: float
    input_fingerprint: str
    dataset_version: str | None = None
    online_path: str | None = None

    @property
    def reconciled(self) -> bool:
        return self.rows_in == self.rows_scored + self.rows_quarantined

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reconciled": self.reconciled}


# Ray Data read/write tasks ask for 1 CPU by default; a quarter fits beside actors and Serve replicas.
IO_TASK_ARGS = {"num_cpus": 0.25}


@dataclass(frozen=True)
class ScoreJob:
    """What one scoring pass needs, all decided on the driver before any Ray task starts."""

    config: BatchConfig
    inputs: InputFiles
    loader: Callable[[], Predictor]
    features: list[dict[str, Any]]  # the model's input schema, as stored with the version
    framework: str  # the manifest's: torch models get a GPU each when the cluster has GPUs
    out_fs: pafs.FileSystem
    staging: str  # Ray writes the prediction files here; moved into place only once everything reconciles
    parts_dir: str  # scorers write their rejected rows here, merged into one _quarantine.parquet afterwards
    out_schema: Any
    q_schema: Any
    run_id: str
    scored_at: datetime


def run_batch(config: BatchConfig, *, client: Client | None = None,
              loader_factory: LoaderFactory | None = None) -> BatchResult:
    """Score ``config.input`` with one immutable version of ``config.model`` (``name``, ``name:v`` or
    ``name@alias``).

    Fails before any compute on an unknown model or version (NotFound), an artifact failing its SHA-256
    (IntegrityError) or an input schema that does not fit the model (InvalidInput naming the column). Invalid
    rows are quarantined; the job fails (GateFailed, nothing published, the quarantine file kept beside the
    output for inspection) when ``on_invalid="fail"`` and any row is invalid, or when the quarantined share
    reaches ``max_quarantine_fraction`` (SPEC S5.5: 5 %), or when no row could be scored. ``client`` and
    ``loader_factory`` (how scorers load the model; tests inject failures here) are not configuration.

    ``compute`` picks how the model runs: ``actors`` is an actor pool of ``concurrency`` scorers (a callable class,
    the model loaded once per actor, one GPU each when the cluster has GPUs); ``tasks`` fuses read, score and write
    into one Ray task per block, with the model loaded once per worker process, so no block crosses the object
    store between stages (measured on 2 cores: 3x the actor pool's throughput). ``auto`` takes the actor pool for
    torch models on a GPU cluster and fused tasks otherwise.
    """
    # heavy: the SQL stack loads only where the store is opened, not in every Ray worker
    from mlplatform.client import Client

    client = client or Client()
    started = time.perf_counter()
    version = client.registry.resolve(config.model)  # resolved once: an alias moving mid-job changes nothing here
    features = schema_from_json(version.input_schema)
    keep = config.output_columns
    inputs = discover_inputs(config.input, [f.name for f in features])
    check_input_schema(inputs.schema, features, keep)
    local = client.registry.fetch(version)
    try:
        loader = (loader_factory or _bytes_loader)(version, local)
        manifest = ModelManifest.read(local)
    finally:
        shutil.rmtree(local, ignore_errors=True)

    out_fs, out_root = open_filesystem(config.output)
    model_dir = f"{out_root.rstrip('/')}/model={version.model_name}"
    final = f"{model_dir}/version={version.version}"
    dataset_version = _dataset_version(client, config.input)
    run = client.runs.start_run("batch", RunKind.BATCH, name=f"batch {version.ref}", config={
        "model": config.model, "model_version": version.version, "input": config.input, "output": config.output,
        "batch_size": config.batch_size, "concurrency": config.concurrency, "keep_columns": keep,
        "partition_by": config.partition_by, "compute": config.compute,
    }, tags={"model_name": version.model_name, "model_version": version.version,
             "input_fingerprint": inputs.fingerprint, "dataset_version": dataset_version, "output_path": final})
    staging = f"{model_dir}/.version={version.version}.staging-{run.id[:8]}"
    # Actors write rejected rows beside the staging folder: Ray's writer owns the staging folder itself.
    parts_dir = f"{model_dir}/.version={version.version}.quarantine-{run.id[:8]}"
    scored_at = datetime.now(UTC).replace(microsecond=0)
    result: BatchResult | None = None
    try:
        out_schema = output_schema(inputs.schema, keep, manifest.task, manifest.classes)
        q_schema = quarantine_schema(inputs.schema, keep)
        with client.runs.keep_alive(run.id, client.settings.heartbeat_seconds):  # `runs gc` spares it
            _score(ScoreJob(config=config, inputs=inputs, loader=loader, features=version.input_schema,
                            framework=manifest.framework, out_fs=out_fs, staging=staging, parts_dir=parts_dir,
                            out_schema=out_schema, q_schema=q_schema, run_id=run.id, scored_at=scored_at))
        scored = _count_rows(out_fs, staging)
        quarantined = _merge_quarantine(out_fs, parts_dir, staging, q_schema)
        duration = time.perf_counter() - started
        result = BatchResult(
            run_id=run.id, model_name=version.model_name, model_version=version.version, output_path=final,
            quarantine_path=f"{final}/_quarantine.parquet", rows_in=inputs.row_count, rows_scored=scored,
            rows_quarantined=quarantined, duration_s=round(duration, 3),
            rows_per_s=round(inputs.row_count / duration, 1) if duration > 0 else 0.0,
            input_fingerprint=inputs.fingerprint, dataset_version=dataset_version)
        _check(result, config.quarantine_limit, out_fs, staging)
        _write_summary(out_fs, staging, result)
        _commit(out_fs, staging, final)
    except BaseException as exc:
        if isinstance(exc, GateFailed):
            _keep_rejected_quarantine(out_fs, staging, f"{model_dir}/_rejected-version={version.version}")
        _delete(out_fs, staging)
        _delete(out_fs, parts_dir)
        _delete_if_empty(out_fs, model_dir)
        error = _translate(exc, final)
        if result is not None:  # counted but refused (reconciliation or quarantine gate): keep the numbers
            client.runs.log_metrics(run.id, _metrics(result))
        client.runs.end_run(run.id, RunStatus.FAILED, error=str(error))
        if error is exc:
            raise
        raise error from exc
    if config.online_key is not None:
        try:
            online_path = update_online_table(client.settings.home, version.model_name, out_fs, final,
                                              config.online_key)
        except Exception as exc:
            client.runs.end_run(run.id, RunStatus.FAILED, error=f"output published to {final}, but the online "
                                f"table update failed: {exc}")
            raise
        result = BatchResult(**{**asdict(result), "online_path": str(online_path)})
    client.runs.log_metrics(run.id, _metrics(result))
    client.runs.end_run(run.id, RunStatus.COMPLETED)
    logger.info("batch %s: %d rows in, %d scored, %d quarantined in %.1f s -> %s", version.ref, result.rows_in,
                result.rows_scored, result.rows_quarantined, result.duration_s, final)
    return result


def _metrics(result: BatchResult) -> dict[str, float]:
    return {"rows_in": result.rows_in, "rows_scored": result.rows_scored, "rows_quarantined": result.rows_quarantined,
            "quarantine_fraction": result.rows_quarantined / max(result.rows_in, 1),
            "duration_s": result.duration_s, "rows_per_s": result.rows_per_s}


def _bytes_loader(version: ModelVersion, local: Path) -> Callable[[], Predictor]:
    return ArtifactBytesLoader.from_dir(local, version.files, version.model_name, version.version)


def _score(job: ScoreJob) -> None:
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    import ray

    config, inputs, features = job.config, job.inputs, job.features
    keep, batch_size, partition_by = config.output_columns, config.batch_size, config.partition_by
    concurrency, num_cpus, compute = config.concurrency, config.num_cpus_per_actor, config.compute

    if not ray.is_initialized():
        ray.init(address=get_settings().ray_address)
    columns = list(dict.fromkeys([*keep, *(f["name"] for f in features)]))
    resources = ray.cluster_resources()
    cpus = resources.get("CPU", 1.0)
    # What is free now, not the cluster's total: Serve replicas or training may hold CPUs on every node.
    free_cpus = ray.available_resources().get("CPU", cpus)
    # Predictor computes on CPU today; GPUs are requested for torch models so actors land on GPU nodes.
    num_gpus = 1 if job.framework == "torch" and resources.get("GPU", 0) >= 1 else 0
    if compute == "auto":
        compute = "actors" if num_gpus else "tasks"
    if concurrency is None:  # SPEC S5: one scorer per CPU (or GPU)
        concurrency = max(1, int(resources.get("GPU", 0) if num_gpus else cpus))
    if compute == "tasks":
        # Read, score and write fuse into one task only when all three ask for the same resources and none sets
        # its own concurrency (checked: either splits the plan), so the CPU share per task is what bounds the
        # number of concurrent scorers to about ``concurrency``.
        num_cpus = num_cpus or min(1.0, max(0.25, free_cpus / concurrency))
        io_args: dict[str, Any] = {"num_cpus": num_cpus}
    else:
        # Read and write tasks need CPU too: an actor pool holding every free CPU deadlocks the pipeline
        # (measured here), so the actors share what is free but half a CPU, and I/O tasks ask for a quarter CPU
        # each so they fit beside Serve replicas on a busy node. Logical CPUs are only accounting: on 2 cores
        # two actors of 0.5 CPU still use both cores.
        num_cpus = num_cpus or min(1.0, max(0.25, (free_cpus - 0.5) / concurrency))
        io_args = IO_TASK_ARGS
    # At least one block per file and two per scorer, so work spreads over every scorer instead of one big block
    # feeding one of them (Ray's warning "operator only received 1 input(s)").
    blocks = max(len(inputs.paths), 2 * concurrency)

    if inputs.format == "parquet":
        context = ray.data.DataContext.get_current()
        v2 = context.use_datasource_v2
        # Ray 2.60's V2 Parquet reader lists files again in a remote ListFiles task (5-8 s of wall time measured
        # here) and reads every file in one task; we already hold the file list, so use the V1 reader.
        context.use_datasource_v2 = False
        try:
            ds = ray.data.read_parquet(inputs.paths, filesystem=inputs.filesystem, columns=columns,
                                       override_num_blocks=blocks, **io_args)
        finally:
            context.use_datasource_v2 = v2
    else:
        options = csv_convert_options([f["name"] for f in features])
        options.include_columns = columns
        ds = ray.data.read_csv(inputs.paths, filesystem=inputs.filesystem, convert_options=options,
                               override_num_blocks=blocks, **io_args)
    if config.max_in_flight_mb is not None:
        ds.context.execution_options.resource_limits = ray.data.ExecutionResources(
            object_store_memory=config.max_in_flight_mb * 1024 * 1024)
    scorer_kwargs = {
        "loader": job.loader, "feature_schema": features, "keep_columns": keep,
        "required_columns": config.required_columns, "output_schema": job.out_schema,
        "quarantine_schema": job.q_schema, "quarantine_fs": job.out_fs, "quarantine_path": job.parts_dir,
        "run_id": job.run_id, "scored_at": job.scored_at,
    }
    logger.info("scoring with %d %s x %.2f CPU, %d GPU, batches of %d rows", concurrency, compute, num_cpus,
                num_gpus, batch_size)
    if compute == "tasks":
        # Ray Data reserves half of the CPUs per operator for multi-operator pipelines; for the one fused operator
        # that reservation let only one task run at a time (measured: 1M rows in 1.9 s serial, 1.0 s with both
        # CPUs busy). The setting is this dataset's own copy of the context.
        ds.context.op_resource_reservation_enabled = False
        # batch_size=None hands the whole block to the function (a fixed batch size stops Ray Data from fusing
        # the read into the same task); the scorer slices it into batch_size model calls itself.
        # Ray's stubs want a one-argument UDF; fn_kwargs supplies score_in_task's keyword-only rest at run time.
        scored = ds.map_batches(score_in_task, batch_size=None, batch_format="pyarrow",  # type: ignore[arg-type]
                                fn_kwargs={"cache_key": job.run_id, "batch_size": batch_size, **scorer_kwargs},
                                **io_args)
    else:
        scored = ds.map_batches(
            BatchScorer, batch_size=batch_size, batch_format="pyarrow", num_cpus=num_cpus,
            compute=ray.data.ActorPoolStrategy(size=concurrency), num_gpus=num_gpus,
            fn_constructor_kwargs=scorer_kwargs)
    scored.write_parquet(job.staging, filesystem=job.out_fs, partition_cols=[partition_by] if partition_by else None,
                         filename_provider=_part_files(), mode=ray.data.SaveMode.OVERWRITE,
                         ray_remote_args=io_args)


def _part_files() -> Any:
    """``part-<task>.parquet``: no per-second or random names, so a rerun's folder has the same file names."""
    from ray.data.datasource import FilenameProvider  # lazy: importing ray.data costs seconds

    class PartFiles(FilenameProvider):
        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"part-{task_index:06d}.parquet"

    return PartFiles(file_format="parquet")  # unique per task; needs SaveMode.OVERWRITE on a fresh folder


def _data_files(fs: pafs.FileSystem, root: str) -> list[str]:
    info = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(i.path for i in info if i.type == pafs.FileType.File and i.path.endswith(".parquet")
                  and not i.base_name.startswith(("_", ".")))


def _count_rows(fs: pafs.FileSystem, root: str) -> int:
    total = 0
    for path in _data_files(fs, root):
        with fs.open_input_file(path) as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


def _merge_quarantine(fs: pafs.FileSystem, parts_dir: str, staging: str, schema: Any) -> int:
    """One ``_quarantine.parquet`` (always written, empty when nothing was rejected), parts in name order."""
    info = fs.get_file_info(pafs.FileSelector(parts_dir, allow_not_found=True))
    parts = sorted(i.path for i in info if i.type == pafs.FileType.File)
    fs.create_dir(staging, recursive=True)
    total = 0
    with pq.ParquetWriter(f"{staging}/_quarantine.parquet", schema, filesystem=fs) as writer:
        for part in parts:
            table = pq.read_table(part, filesystem=fs, schema=schema)
            total += table.num_rows
            writer.write_table(table)
    _delete(fs, parts_dir)
    return total


def _check(result: BatchResult, max_fraction: float, fs: pafs.FileSystem, staging: str) -> None:
    if not result.reconciled:
        raise IntegrityError(
            f"rows do not reconcile: {result.rows_in} in != {result.rows_scored} scored + "
            f"{result.rows_quarantined} quarantined; nothing was published")
    if result.rows_in and result.rows_scored == 0:
        raise GateFailed(f"no row of {result.rows_in} could be scored; see the quarantine reasons")
    fraction = result.rows_quarantined / max(result.rows_in, 1)
    if fraction >= max_fraction and result.rows_quarantined:
        first = pq.read_table(f"{staging}/_quarantine.parquet", filesystem=fs, columns=["reason"]).column(0)[0]
        limit = "--on-invalid fail" if max_fraction == 0 else f"the {max_fraction:.0%} limit"
        raise GateFailed(f"{result.rows_quarantined} of {result.rows_in} rows ({fraction:.1%}) failed validation "
                         f"({limit}); first: {first}; nothing was published, the rows are in "
                         f"{result.output_path.rsplit('/', 1)[0]}/_rejected-version={result.model_version}/",
                         rows=result.rows_quarantined)


def _keep_rejected_quarantine(fs: pafs.FileSystem, staging: str, target: str) -> None:
    """A refused job's quarantine file is the only way to see why: keep it (reruns replace it)."""
    source = f"{staging}/_quarantine.parquet"
    if fs.get_file_info(source).type != pafs.FileType.File:
        return
    _delete(fs, target)
    fs.create_dir(target, recursive=True)
    fs.move(source, f"{target}/_quarantine.parquet")


def _write_summary(fs: pafs.FileSystem, staging: str, result: BatchResult) -> None:
    with fs.open_output_stream(f"{staging}/{SUMMARY_FILE}") as out:
        out.write(json.dumps(result.to_dict(), indent=1, sort_keys=True).encode())


SUMMARY_FILE = "_summary.json"


def _commit(fs: pafs.FileSystem, staging: str, final: str) -> None:
    """Move the complete staging folder into place; a previous output of the same version is replaced whole."""
    if fs.get_file_info(final).type == pafs.FileType.NotFound:
        _move_dir(fs, staging, final)
        return
    head, _, tail = final.rpartition("/")
    old = f"{head}/.{tail}.replaced-{uuid.uuid4().hex[:8]}"  # hidden, like the staging folder
    _move_dir(fs, final, old)
    try:
        _move_dir(fs, staging, final)
    except BaseException:
        _move_dir(fs, old, final)  # put the previous good output back
        raise
    _delete(fs, old)


def _move_dir(fs: pafs.FileSystem, source: str, target: str) -> None:
    """A directory rename where the filesystem has one. Object stores (S3, GCS) have none (pyarrow's move of a
    "directory" there fails with NO_SUCH_KEY): every object is copied, the summary last, so a reader that waits for
    ``_summary.json`` never sees a partial output, and then the source is deleted."""
    if isinstance(fs, pafs.LocalFileSystem):
        fs.move(source, target)
        return
    files = [i.path for i in fs.get_file_info(pafs.FileSelector(source, recursive=True))
             if i.type == pafs.FileType.File]
    for path in sorted(files, key=lambda p: (p.rsplit("/", 1)[-1] == SUMMARY_FILE, p)):
        fs.copy_file(path, target + path[len(source):])
    fs.delete_dir(source)


def _delete(fs: pafs.FileSystem, path: str) -> None:
    try:
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            fs.delete_dir(path)
    except OSError:  # best effort: a leftover staging folder is hidden (dot prefix) and never read
        logger.warning("could not delete %s", path)


def _delete_if_empty(fs: pafs.FileSystem, path: str) -> None:
    try:
        if not fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
            fs.delete_dir(path)
    except OSError:
        pass


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _worker_error(exc: BaseException) -> tuple[str, str] | None:
    """The original exception of a failed Ray Data task as (type name, message).

    Ray Data re-raises a UDF failure as ``RayTaskError(UserCodeException)`` whose cause chain no longer holds the
    original exception object; only the worker traceback text does. Its exception line is the first line at
    column 0 after the last indented traceback frame.
    """
    text = _ANSI.sub("", str(exc)).split("The above exception was the direct cause")[0].rstrip()
    lines = text.splitlines()
    indented = [i for i, line in enumerate(lines) if line.startswith(" ")]
    if not indented or indented[-1] + 1 >= len(lines):
        return None
    head = lines[indented[-1] + 1]
    name, _, message = head.partition(": ")
    if not name or " " in name:
        return None
    return name.rsplit(".", 1)[-1], " ".join([message, *lines[indented[-1] + 2:]]).strip()


def _translate(exc: BaseException, final: str) -> BaseException:
    """Platform errors raised on the driver pass through; worker failures become one clear platform error."""
    if isinstance(exc, MLPlatformError) or not isinstance(exc, Exception):
        return exc
    where = f"no output was published to {final}"
    found = _worker_error(exc)
    if found is None:
        return MLPlatformError(f"batch scoring failed: {type(exc).__name__}: {exc}; {where}")
    name, message = found

    category = getattr(errors, name, None)
    if isinstance(category, type) and issubclass(category, MLPlatformError):
        return category(f"batch scoring failed in a worker: {message}; {where}")
    return MLPlatformError(f"batch scoring failed in a worker: {name}: {message}; {where}")


def _dataset_version(client: Client, input_uri: str) -> str | None:
    """The registered dataset version whose URI is this input, when there is one (a cheap lookup)."""
    try:
        for dataset in client.datasets.list(limit=500):
            if dataset.uri and dataset.uri.rstrip("/") == input_uri.rstrip("/"):
                return f"{dataset.name}@{dataset.version[:12]}"
    except MLPlatformError:
        return None
    return None
