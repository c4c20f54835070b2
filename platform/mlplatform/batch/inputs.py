"""Batch input discovery on any pyarrow filesystem: a file, a directory or a glob; Parquet or CSV.

Everything here runs on the driver and reads only metadata (Parquet footers) so that the schema check and the
input row count exist before Ray does any work. CSV has no footer: its rows are counted by one streaming pass.
"""

from __future__ import annotations

import fnmatch
import hashlib
import posixpath
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mlplatform.errors import InvalidInput, NotFound, Unavailable
from mlplatform.features.datasets import csv_convert_options

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class InputFiles:
    filesystem: pafs.FileSystem
    paths: list[str]
    format: str  # "parquet" | "csv"
    schema: pa.Schema
    row_count: int
    fingerprint: str  # paths, sizes and row counts: cheap identity of what was read (not a content hash)


def open_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it, for ``s3://``, ``gs://``, ``file://`` or a local path."""
    try:
        if "://" in uri:
            return pafs.FileSystem.from_uri(uri)
        return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for unknown schemes or unreachable stores
        raise Unavailable(f"cannot open {uri}: {exc}") from exc


def _is_data_file(path: str) -> bool:
    base = posixpath.basename(path)
    hidden = any(part.startswith(("_", ".")) for part in path.split("/")[-2:])
    return not hidden and base.lower().endswith(PARQUET_SUFFIXES + CSV_SUFFIXES)


def list_input_files(uri: str) -> tuple[pafs.FileSystem, list[str]]:
    fs, path = open_filesystem(uri)
    if _GLOB_CHARS & set(path):
        # Expand the glob under its first literal directory; pyarrow filesystems have no glob of their own.
        parts = path.split("/")
        literal = "/".join(p for p in parts[: next(i for i, p in enumerate(parts) if _GLOB_CHARS & set(p))])
        infos = fs.get_file_info(pafs.FileSelector(literal or "/", recursive=True, allow_not_found=True))
        files = sorted(i.path for i in infos if i.type == pafs.FileType.File and fnmatch.fnmatch(i.path, path))
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise NotFound(f"batch input {uri} does not exist", field="input")
        if info.type == pafs.FileType.Directory:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
            files = sorted(i.path for i in infos if i.type == pafs.FileType.File and _is_data_file(i.path))
        else:
            files = [path]
    if not files:
        raise NotFound(f"batch input {uri} matches no Parquet or CSV files", field="input")
    return fs, files


def _format_of(paths: list[str]) -> str:
    formats = {"parquet" if p.lower().endswith(PARQUET_SUFFIXES) else
               "csv" if p.lower().endswith(CSV_SUFFIXES) else "unknown" for p in paths}
    if len(formats) != 1 or "unknown" in formats:
        raise InvalidInput(f"batch input must be all Parquet or all CSV files, found {sorted(formats)}",
                           field="input")
    return formats.pop()


def discover_inputs(uri: str, csv_string_columns: list[str] | None = None) -> InputFiles:
    fs, paths = list_input_files(uri)
    kind = _format_of(paths)
    digest = hashlib.sha256()
    rows = 0
    schema: pa.Schema | None = None
    for path in paths:
        size = fs.get_file_info(path).size
        if kind == "parquet":
            with fs.open_input_file(path) as handle:
                meta = pq.ParquetFile(handle).metadata
                file_schema, count = meta.schema.to_arrow_schema(), meta.num_rows
        else:
            file_schema, count = _csv_schema_and_rows(fs, path, csv_string_columns or [])
        if schema is None:
            schema = file_schema
        elif not file_schema.equals(schema):
            raise InvalidInput(f"input file {path} has a different schema from {paths[0]}", field="input")
        rows += count
        digest.update(f"{path}\0{size}\0{count}\n".encode())
    assert schema is not None
    return InputFiles(fs, paths, kind, schema, rows, digest.hexdigest())


def _csv_schema_and_rows(fs: pafs.FileSystem, path: str, string_columns: list[str]) -> tuple[pa.Schema, int]:
    with fs.open_input_stream(path, compression="detect") as stream:
        reader = pacsv.open_csv(stream, convert_options=csv_convert_options(string_columns))
        rows = sum(batch.num_rows for batch in reader)
        return reader.schema, rows
