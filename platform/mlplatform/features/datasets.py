"""Dataset versions: a content hash of a canonical form, a profile, and a record in the store (SPEC S4.8).

The hash covers a header (column names sorted, logical dtypes, shape) and then the values column by column, with
the rows in a canonical order (sorted by all columns). Parquet vs CSV, row groups, compression, column order and
row order therefore do not change it; any changed value, dtype family or row count does.
"""

from __future__ import annotations

import hashlib
import logging
import math
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from mlplatform.entities import DatasetVersion
from mlplatform.errors import IntegrityError, InvalidInput, NotFound
from mlplatform.features.schema import dtype_family
from mlplatform.features.stats import ColumnStats, sorted_quantiles

if TYPE_CHECKING:  # the config package imports this module and must import no store module
    from mlplatform.store.interfaces import DatasetStore

logger = logging.getLogger(__name__)

HASH_FORMAT = "mlplatform-dataset-v1"
PROFILE_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP_CATEGORIES = 50
ANOMALY_Z = 3.0
ROBUST_SCALE = 1.4826


def csv_convert_options(string_columns: list[str] | tuple[str, ...] = ()) -> pacsv.ConvertOptions:
    """How every path reads CSV. An empty field is the format's only null; "NA", "null" and friends stay text, as
    in Parquet and JSON, unless a model declares them missing tokens (pyarrow's default reads a dozen such strings
    as null). ``string_columns`` are read as text (batch casts features per row, so one bad cell quarantines its
    row instead of changing a block's column type)."""
    return pacsv.ConvertOptions(column_types={c: pa.string() for c in string_columns}, null_values=[""],
                                strings_can_be_null=True, quoted_strings_can_be_null=False)


# -- reading -----------------------------------------------------------------------------------------------------
def _filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    if "://" in path:
        try:
            return pafs.FileSystem.from_uri(path)
        except Exception as exc:  # ArrowInvalid for an unknown scheme, OSError for an unreachable bucket
            raise InvalidInput(f"cannot open {path}: {exc}", field="path") from exc
    return pafs.LocalFileSystem(), str(Path(path).expanduser().resolve())


def _format_of(path: str, info: pafs.FileInfo, fs: pafs.FileSystem) -> str:
    name = path.lower()
    if info.type == pafs.FileType.Directory:
        files = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        suffixes = {Path(f.path).suffix.lower() for f in files if f.type == pafs.FileType.File}
        return "csv" if suffixes & {".csv"} and not suffixes & {".parquet", ".pq"} else "parquet"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    raise InvalidInput(f"cannot tell the format of {path}: use .parquet or .csv (or pass format=)", field="path")


def read_table(path: str | Path, format: str | None = None) -> pd.DataFrame:
    """A Parquet or CSV file or directory on any pyarrow filesystem (local path, file://, s3://, gs://...)."""
    fs, resolved = _filesystem(str(path))
    info = fs.get_file_info(resolved)
    if info.type == pafs.FileType.NotFound:
        raise NotFound(f"data file {path} does not exist", field="path")
    fmt = format or _format_of(resolved, info, fs)
    try:
        if fmt == "csv" and info.type == pafs.FileType.File:
            with fs.open_input_stream(resolved, compression="detect") as stream:
                table = pacsv.read_csv(stream, convert_options=csv_convert_options())
        else:
            table = pads.dataset(resolved, filesystem=fs, format=fmt).to_table()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"cannot read {path} as {fmt}: {exc}", field="path") from exc
    return table.to_pandas()


# -- canonical form and hash -------------------------------------------------------------------------------------
def _canonical_column(series: pd.Series, family: str) -> pd.Series:
    """Values in one representation per family; missing as ``None``/NaN so every missing marker hashes alike."""
    if family == "float":
        values = series.astype("float64")
        return values.where(values != 0.0, 0.0)  # -0.0 == 0.0; NaN stays NaN (missing)
    if family == "int":
        return series.astype("Int64")
    if family == "bool":
        return series.astype("boolean")
    if family == "datetime":
        values = pd.to_datetime(series, utc=True)
        return values.dt.tz_convert("UTC") if values.dt.tz is not None else values
    return series.astype("object").where(series.notna(), None).map(lambda v: v if v is None else str(v))


def canonical_frame(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Columns sorted by name, values canonical, rows in their given order (SPEC S4.8: row order is content)."""
    columns = sorted(map(str, df.columns))
    if len(set(columns)) != len(columns):
        raise InvalidInput("duplicate column names cannot be versioned", field="columns")
    frame = df.rename(columns=str)[columns]
    families = {c: dtype_family(frame[c]) for c in columns}
    canon = pd.DataFrame({c: _canonical_column(frame[c], families[c]) for c in columns}, index=frame.index)
    return canon.reset_index(drop=True), families


def _column_bytes(values: pd.Series, family: str) -> bytes:
    mask = values.isna().to_numpy()
    header = np.packbits(mask).tobytes()
    if family == "float":
        data = np.where(mask, 0.0, values.to_numpy(dtype="float64", na_value=np.nan)).astype("<f8").tobytes()
    elif family == "int":
        data = values.fillna(0).to_numpy(dtype="int64").astype("<i8").tobytes()
    elif family == "bool":
        data = values.fillna(False).to_numpy(dtype="bool").tobytes()
    elif family == "datetime":
        # Nanoseconds since the epoch in UTC, whatever unit the reader chose (Parquet: us, CSV: ns).
        naive = values.dt.tz_convert("UTC").dt.tz_localize(None) if values.dt.tz is not None else values
        data = np.where(mask, 0, naive.to_numpy(dtype="datetime64[ns]").view("<i8")).astype("<i8").tobytes()
    else:
        # Length-prefixed UTF-8: no separator can be forged by a value.
        parts = [b"" if m else str(v).encode("utf-8") for v, m in zip(values.to_numpy(dtype=object), mask,
                                                                      strict=True)]
        data = b"".join(struct.pack("<Q", len(p)) + p for p in parts)
    return header + data


def content_hash(df: pd.DataFrame) -> str:
    """Full SHA-256 hex of the canonical form: same rows in any layout and order hash the same."""
    canon, families = canonical_frame(df)
    digest = hashlib.sha256()
    header = f"{HASH_FORMAT}\nshape={len(canon)}x{len(families)}\n" + "".join(
        f"{name}\t{family}\n" for name, family in families.items())
    digest.update(header.encode("utf-8"))
    for name, family in families.items():
        body = _column_bytes(canon[name], family)
        digest.update(struct.pack("<Q", len(body)))
        digest.update(body)
    return digest.hexdigest()


# -- profile -----------------------------------------------------------------------------------------------------
def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def profile_column(series: pd.Series) -> dict[str, Any]:
    family = dtype_family(series)
    n = len(series)
    if family in {"int", "float", "bool"}:
        values = series.astype("float64").to_numpy()
        present = np.sort(values[~np.isnan(values)])
        missing = n - present.size
        base: dict[str, Any] = {"dtype": family, "count": int(present.size), "missing": int(missing),
                                "missing_rate": missing / n if n else 0.0}
        if present.size == 0:
            return base | {"mean": None, "sd": None, "min": None, "max": None, "median": None, "mad": None,
                           "quantiles": {}}

        st = ColumnStats.of(present)
        median = sorted_quantiles(present, [0.5])[0]
        qs = sorted_quantiles(present, list(PROFILE_QUANTILES))
        mad = float(np.median(np.abs(present - median)))
        return base | {"mean": st.mean, "sd": st.std, "min": st.min, "max": st.max, "median": median,
                       "mad": mad, "skew": st.skew,
                       "quantiles": {str(q): _finite(v) for q, v in zip(PROFILE_QUANTILES, qs, strict=True)},
                       "robust": _robust_summary(present, median, mad)}
    if family == "datetime":
        values = pd.to_datetime(series, utc=True)
        present = values.dropna()
        return {"dtype": family, "count": len(present), "missing": int(n - len(present)),
                "missing_rate": (n - len(present)) / n if n else 0.0,
                "min": present.min().isoformat() if len(present) else None,
                "max": present.max().isoformat() if len(present) else None}
    strings = series.astype("object").where(series.notna(), None).map(lambda v: v if v is None else str(v))
    present = strings.dropna()
    counts = present.value_counts()
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CATEGORIES]
    return {"dtype": family, "count": len(present), "missing": int(n - len(present)),
            "missing_rate": (n - len(present)) / n if n else 0.0, "n_unique": len(counts),
            "frequencies": {k: int(v) / len(present) for k, v in top}}


def robust_z(values: np.ndarray, median: float, mad: float) -> np.ndarray:
    """|x - median| / (1.4826 MAD): a z-score an outlier cannot inflate (1.4826 makes it match sd for normals)."""
    return np.abs(values - median) / (ROBUST_SCALE * mad)


def _robust_summary(present: np.ndarray, median: float, mad: float) -> dict[str, Any]:
    """Mean and sd without the anomalies (robust z > 3) and their share: validation compares a batch's
    anomaly-free mean with this one, and its anomaly share with this share, so a skewed column is not an
    anomaly against itself."""
    if mad <= 0:
        return {"mean": None, "sd": None, "anomaly_share": 0.0, "z": ANOMALY_Z}
    keep = robust_z(present, median, mad) <= ANOMALY_Z
    kept = present[keep]
    return {"mean": float(kept.mean()), "sd": float(kept.std()), "anomaly_share": float(1 - keep.mean()),
            "z": ANOMALY_Z}


def profile_frame(df: pd.DataFrame) -> dict[str, Any]:
    """Per-column statistics: count, missing rate, mean, sd (ddof 0), min, max, median, MAD, quantiles;
    category frequencies (top 50) for strings. JSON-serialisable."""
    return {"row_count": len(df), "columns": {str(c): profile_column(df[c]) for c in df.columns}}


def schema_of(df: pd.DataFrame) -> dict[str, Any]:
    return {"columns": [{"name": str(c), "dtype": dtype_family(df[c])} for c in sorted(map(str, df.columns))],
            "shape": [len(df), len(df.columns)], "hash_format": HASH_FORMAT}


# -- store -------------------------------------------------------------------------------------------------------
class DatasetClient(Protocol):
    """All that versioning needs of a client (features sits below :mod:`mlplatform.client`): the dataset store."""

    @property
    def datasets(self) -> DatasetStore: ...


@overload
def version_dataset(source: str | Path | pd.DataFrame, name: str, *, client: DatasetClient, uri: str | None = None,
                    register: Literal[True] = True, digest: str | None = None) -> DatasetVersion: ...


@overload
def version_dataset(source: str | Path | pd.DataFrame, name: str, *, client: DatasetClient, uri: str | None = None,
                    register: Literal[False], digest: str | None = None) -> dict[str, Any]: ...


def version_dataset(source: str | Path | pd.DataFrame, name: str, *, client: DatasetClient, uri: str | None = None,
                    register: bool = True, digest: str | None = None) -> DatasetVersion | dict[str, Any]:
    """Hash, profile and (by default) register a dataset; returns the store's :class:`DatasetVersion`, or the
    would-be record as a dict when ``register`` is false. ``mlplatform data version`` and training both call this,
    so the same bytes are one version with one profile. ``digest``: the :func:`content_hash` already computed."""
    if not name or name.strip() != name:
        raise InvalidInput("a dataset needs a name without surrounding spaces", field="name")
    if isinstance(source, pd.DataFrame):
        df = source
    else:
        df = read_table(source)
        uri = uri or (str(source) if "://" in str(source) else str(Path(source).expanduser().resolve()))
    digest = digest or content_hash(df)
    record: dict[str, Any] = {"name": name, "version": digest, "uri": uri, "schema": schema_of(df),
                              "row_count": len(df), "profile": profile_frame(df)}
    if not register:
        return record
    version = client.datasets.register(name, digest, uri=uri, schema=record["schema"], row_count=record["row_count"],
                                       profile=record["profile"])
    logger.info("dataset %s version %s (%d rows) registered", name, digest[:12], len(df))
    return version


def load_dataset(name: str, version: str, *, client: DatasetClient) -> pd.DataFrame:
    """Read a registered version from its URI and verify its content hash: changed data is refused."""
    record = client.datasets.get(name, version)
    if record.name != name or (len(version) == 64 and record.version != version):
        raise NotFound(f"dataset {name}@{version} does not exist", field="dataset")
    if not record.uri:
        raise InvalidInput(f"dataset {name}@{record.version[:12]} has no URI to load from", field="dataset")
    df = read_table(record.uri)
    actual = content_hash(df)
    if actual != record.version:
        raise IntegrityError(f"dataset {name} at {record.uri} changed since it was versioned "
                             f"(expected {record.version[:12]}, found {actual[:12]})", field="dataset")
    return df
