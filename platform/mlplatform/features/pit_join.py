"""Feature views, point-in-time correct joins and the online table (SPEC S4.9-S4.11).

For a label row at time ``t`` a feature takes the latest value of the same entity with event time ``<= t``
(inclusive) and, with a TTL, ``>= t - ttl``; otherwise null. Exactly one output row per input row, in input order.
The join is pandas ``merge_asof`` (backward, by entity; over factorized entity codes and int64 times, which is
several times faster than on the raw keys), never a merge on the entity key alone, which would let early labels
see later events.

The online table is one SQLite file under ``MLPLATFORM_HOME`` (``online/online_features.db``): a primary-key lookup
per entity, well under the 5 ms budget, and readable by any process on the node that owns the home.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlplatform._internal.config_file import StrictModel, load_config
from mlplatform.errors import Conflict, InvalidInput, NotFound
from mlplatform.features.datasets import read_table
from mlplatform.features.schema import dtype_family, is_number_family
from mlplatform.settings import get_settings

logger = logging.getLogger(__name__)

class FeatureView(BaseModel):
    """A declared set of features of one entity, read from a Parquet/CSV source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]{0,127}$")
    entity: str = Field(min_length=1, description="entity key column, in the source and in entity frames")
    timestamp: str = Field(default="event_time", min_length=1, description="event-time column of the source")
    features: list[str] = Field(min_length=1)
    entity_type: Literal["int", "string"] | None = Field(
        default=None, description="declared entity key type: both sides of a join are cast to it exactly; "
        "None: the source column's type")
    ttl: timedelta | None = Field(default=None, description="older feature rows are not used; None: no limit")
    source: str | None = Field(default=None, description="Parquet or CSV path/URI of the feature rows")
    owner: str | None = None

    @field_validator("ttl")
    @classmethod
    def _positive_ttl(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("ttl must be positive")
        return value

    @field_validator("features")
    @classmethod
    def _unique_features(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("feature names must be unique")
        return value

    @property
    def version(self) -> str:
        """Content hash of the definition (name, keys, features, ttl, source)."""
        data = self.model_dump(mode="json")
        if data["entity_type"] is None:  # views declared before entity_type keep their version
            del data["entity_type"]
        body = json.dumps(data, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()

    def read_source(self) -> pd.DataFrame:
        if not self.source:
            raise InvalidInput(f"feature view {self.name} has no source", field="source")

        return read_table(self.source)


class FeatureViewsFile(StrictModel):
    """A YAML file of feature views: ``views: [...]``, or the list alone."""

    views: list[FeatureView]

    @field_validator("views")
    @classmethod
    def _unique_names(cls, value: list[FeatureView]) -> list[FeatureView]:
        names = [v.name for v in value]
        if len(set(names)) != len(names):
            raise ValueError("feature view names must be unique")
        return value


def load_feature_views(path: str | Path) -> list[FeatureView]:
    """Views from YAML (:class:`FeatureViewsFile`), through the one config loader: errors name the file and the
    field."""
    return load_config(path, FeatureViewsFile, list_key="views").views


def _utc(series: pd.Series, what: str) -> pd.Series:
    try:
        values = pd.to_datetime(series, utc=True)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{what} must be timestamps: {exc}", field=what) from exc
    # One unit on both sides: merge_asof refuses datetime64[us] against datetime64[ns].
    return values.astype("datetime64[ns, UTC]")


def point_in_time_join(entity_df: pd.DataFrame, feature_df: pd.DataFrame, *, entity: str, features: Sequence[str],
                       label_time: str = "event_time", feature_time: str = "event_time",
                       ttl: timedelta | None = None, prefix: str = "",
                       entity_type: str | None = None) -> pd.DataFrame:
    """``entity_df`` with ``features`` (named ``prefix + feature``) and the event time of the feature row used
    (``{prefix}event_time``, or ``feature_event_time`` without a prefix; NaT: no row, so features are null).
    Entity keys are compared as :func:`align_entity_keys` casts them (``entity_type``: the declared key type).

    Ties (two feature rows of one entity at the same time) resolve to the later row of ``feature_df``."""
    for column in (entity, label_time):
        if column not in entity_df.columns:
            raise InvalidInput(f"entity frame has no column {column!r}", field=column)
    for column in (entity, feature_time, *features):
        if column not in feature_df.columns:
            raise InvalidInput(f"feature frame has no column {column!r}", field=column)
    out_names = [f"{prefix}{f}" for f in features]
    time_name = f"{prefix}event_time" if prefix else "feature_event_time"
    clash = [c for c in [*out_names, time_name] if c in entity_df.columns]
    if clash:
        raise InvalidInput(f"entity frame already has column {clash[0]!r}; use a prefix", field=clash[0])
    label_times = _utc(entity_df[label_time], label_time)
    if label_times.isna().any():
        raise InvalidInput(f"{label_time} has missing timestamps", field=label_time)
    feature_times = _utc(feature_df[feature_time], feature_time).reset_index(drop=True)
    label_keys, feature_keys = align_entity_keys(entity_df[entity].reset_index(drop=True),
                                                 feature_df[entity].reset_index(drop=True), entity_type)
    source = _asof_positions(label_keys, label_times, feature_keys, feature_times, ttl)
    found = source >= 0
    take = np.where(found, source, 0)
    result = entity_df.copy()
    for name, feature in zip(out_names, features, strict=True):
        values = feature_df[feature].reset_index(drop=True)
        result[name] = _take(values, take, found, entity_df.index)
    result[time_name] = _take(feature_times, take, found, entity_df.index)
    unmatched = int((~found).sum())
    if unmatched:
        logger.info("point-in-time join: %d of %d row(s) found no feature row", unmatched, len(found))
    return result


def _take(values: pd.Series, take: np.ndarray, found: np.ndarray, index: pd.Index) -> pd.Series:
    """``values[take]`` with nulls where nothing was found, on ``index`` (ints become floats only when a null is
    needed, as with ``merge_asof``; tz-aware times stay tz-aware)."""
    if len(values) == 0:
        picked = values.reindex(range(len(take)))
    else:
        picked = values.take(take).reset_index(drop=True)
        if not found.all():
            picked = picked.where(found)
    picked.index = index
    return picked


def _asof_positions(label_keys: pd.Series, label_times: pd.Series, feature_keys: pd.Series,
                    feature_times: pd.Series, ttl: timedelta | None) -> np.ndarray:
    """Per label row, the position in the feature frame of the row to use, or -1.

    ``merge_asof`` (backward, by entity) over integer codes and int64 nanoseconds only: entity keys are
    factorized jointly first, because ``merge_asof``'s ``by`` on string keys is several times slower than the
    whole join on codes (benchmarks/pit_join.py). Stable sorts by time keep the source order among equal times,
    and ``merge_asof`` takes the last of them, so the later source row wins a tie."""
    label_keys = label_keys.reset_index(drop=True)
    feature_keys = feature_keys.reset_index(drop=True)
    codes, _ = pd.factorize(pd.concat([feature_keys, label_keys], ignore_index=True), use_na_sentinel=True)
    feature_codes, label_codes = codes[:len(feature_keys)], codes[len(feature_keys):]
    feature_ns = _nanoseconds(feature_times)
    usable = (feature_codes >= 0) & feature_times.notna().to_numpy()
    if usable.all():  # the common case: no copy of the whole column
        right_order = np.argsort(feature_ns, kind="stable")
    else:
        kept = np.flatnonzero(usable)
        right_order = kept[np.argsort(feature_ns[kept], kind="stable")]
    label_ns = _nanoseconds(label_times)
    # labels need no stable order: each one is answered on its own; the (faster) default sort does
    left_order = np.argsort(label_ns)
    # distinct dtypes per column, so that pandas does not copy them into one 2-D block
    left = pd.DataFrame({"t": label_ns[left_order].view("datetime64[ns]"),
                         "k": label_codes[left_order].astype(np.int32)})
    right = pd.DataFrame({"t": feature_ns[right_order].view("datetime64[ns]"),
                          "k": feature_codes[right_order].astype(np.int32), "src": right_order})
    joined = pd.merge_asof(left, right, on="t", by="k", direction="backward", allow_exact_matches=True,
                           tolerance=None if ttl is None else pd.Timedelta(ttl))
    positions = np.full(len(label_keys), -1, dtype=np.int64)
    matched = joined["src"].notna().to_numpy()
    positions[left_order[matched]] = joined["src"].to_numpy()[matched].astype(np.int64)
    return positions


def align_entity_keys(label_keys: pd.Series, feature_keys: pd.Series,
                      declared: str | None = None) -> tuple[pd.Series, pd.Series]:
    """The entity keys of both sides in one type, so that equal ids compare equal (SPEC S4.10).

    ``declared`` (the view's ``entity_type``) casts both sides exactly: ``int`` (integral floats and integer
    strings; anything else is an error naming the value and its type) or ``string`` (an integral float is the
    integer's string, as in the online table). Undeclared, the feature source's key type is the declared one:
    integer and float keys meet as integers when every float key is integral (1 and 1.0 are one entity; a CSV
    column with a gap reads as float); a float key with a fraction cannot name an integer entity, so that is an
    error naming both types rather than a join that silently matches nothing. Other mixes (a number against a
    string) compare as strings, as before."""
    if declared == "int":
        return _int_keys(label_keys, "entity frame"), _int_keys(feature_keys, "feature source")
    if declared == "string":
        return _string_keys(label_keys), _string_keys(feature_keys)
    if label_keys.dtype == feature_keys.dtype:
        return label_keys, feature_keys
    label_family, feature_family = dtype_family(label_keys), dtype_family(feature_keys)
    if is_number_family(label_family) and is_number_family(feature_family):
        label_int = label_family == "int"
        feature_int = feature_family == "int"
        if label_int and feature_int:
            return label_keys.astype("Int64"), feature_keys.astype("Int64")
        if label_int or feature_int:
            floats = feature_keys if label_int else label_keys
            values = floats.to_numpy(dtype="float64", na_value=np.nan)
            present = values[~np.isnan(values)]
            exact = np.isfinite(present) & (present == np.round(present)) & (np.abs(present) < 2.0 ** 63)
            if not exact.all():
                bad = present[~exact][0]
                raise InvalidInput(
                    f"entity key types disagree: the entity frame has {label_keys.dtype} keys and the feature "
                    f"source {feature_keys.dtype} keys, and {bad!r} is not an integer id",
                    field=str(label_keys.name or "entity"))
            return label_keys.astype("Int64"), feature_keys.astype("Int64")
        return label_keys.astype("float64"), feature_keys.astype("float64")
    # ids are compared as strings when one side is not numeric (1 and "1" are one entity)
    return label_keys.astype(str), feature_keys.astype(str)


def _int_keys(keys: pd.Series, side: str) -> pd.Series:
    family = dtype_family(keys)
    if family == "int":
        return keys.astype("Int64")
    present = keys[keys.notna()]
    numbers = pd.to_numeric(present, errors="coerce") if family != "bool" else None
    if numbers is not None:
        values = numbers.to_numpy(dtype="float64", na_value=np.nan)
        exact = np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 2.0 ** 53)
    if numbers is None or not exact.all():
        bad = present.iloc[0] if numbers is None else present.iloc[int(np.flatnonzero(~exact)[0])]
        raise InvalidInput(f"entity key {keys.name!r} is declared int, but the {side} has {keys.dtype} keys and "
                           f"{bad!r} ({type(bad).__name__}) is not an integer id", field=str(keys.name or "entity"))
    out = pd.Series(pd.NA, index=keys.index, dtype="Int64")
    out[present.index] = values.astype(np.int64)
    return out


def _string_keys(keys: pd.Series) -> pd.Series:
    return keys.map(lambda v: None if v is None or (not isinstance(v, str) and pd.isna(v)) else entity_key(v))


def entity_key(value: Any, entity_type: str | None = None) -> str:
    """The online table's key of one entity id: an integral float names the same entity as the integer (1.0 is
    "1"), as in the offline join; with a declared ``int`` key, so does an integer string ("007" is "7")."""
    if isinstance(value, np.generic):
        value = value.item()
    if entity_type == "int" and isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _nanoseconds(times: pd.Series) -> np.ndarray:
    """UTC nanoseconds since the epoch as int64 (NaT: the int64 minimum, filtered by the callers)."""
    return np.asarray(times.dt.tz_convert(None), dtype="datetime64[ns]").view(np.int64)


def feature_column(view: FeatureView, feature: str, full_feature_names: bool = False) -> str:
    """The one naming scheme of offline and online features (as in Feast): ``feature``, or ``view__feature`` with
    ``full_feature_names`` (for views that share feature names)."""
    return f"{view.name}__{feature}" if full_feature_names else feature


def get_historical_features(entity_df: pd.DataFrame, views: Sequence[FeatureView], *,
                            label_time: str = "event_time",
                            sources: dict[str, pd.DataFrame] | None = None,
                            full_feature_names: bool = False) -> pd.DataFrame:
    """Point-in-time join of every view, one row out per row in. Features are named as online lookups name them
    (:func:`feature_column`: ``feature``, or ``view__feature`` with ``full_feature_names``), so a model trained on
    this frame is served by entity id. The event time of the row used is ``view__event_time``."""
    if not full_feature_names:
        seen: dict[str, str] = {}
        for view in views:
            for feature in view.features:
                if feature in seen:
                    raise InvalidInput(f"feature {feature!r} is in views {seen[feature]} and {view.name}; pass "
                                       "full_feature_names to name features view__feature", field="features")
                seen[feature] = view.name
    result = entity_df
    for view in views:
        feature_df = (sources or {}).get(view.name)
        if feature_df is None:
            feature_df = view.read_source()
        time_name = f"{view.name}__event_time"
        if time_name in result.columns:
            raise InvalidInput(f"entity frame already has column {time_name!r}", field=time_name)
        result = point_in_time_join(result, feature_df, entity=view.entity, features=view.features,
                                    label_time=label_time, feature_time=view.timestamp, ttl=view.ttl,
                                    prefix=f"{view.name}__" if full_feature_names else "",
                                    entity_type=view.entity_type)
        if not full_feature_names:
            result = result.rename(columns={"feature_event_time": time_name})
    return result


# -- online table ---------------------------------------------------------------------------------------------------
def online_store_path(home: Path | None = None) -> Path:
    if home is None:
        home = get_settings().home
    return Path(home) / "online" / "online_features.db"


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("CREATE TABLE IF NOT EXISTS online_features (view TEXT NOT NULL, entity TEXT NOT NULL, "
                 "view_version TEXT NOT NULL, payload TEXT NOT NULL, event_time TEXT NOT NULL, "
                 "materialized_at TEXT NOT NULL, PRIMARY KEY (view, entity))")
    return conn


def _json_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def materialize(view: FeatureView, *, end_time: datetime | None = None, feature_df: pd.DataFrame | None = None,
                home: Path | None = None, overwrite: bool = False) -> dict[str, int]:
    """Write each entity's latest in-TTL value as of ``end_time`` (default now) to the online table.

    Idempotent: the same data again changes nothing. A newer event replaces an older one; an older event never
    replaces a newer one; a different value at the same event time raises Conflict unless ``overwrite``."""
    end_time = end_time or datetime.now(UTC)
    if end_time.tzinfo is None:
        raise InvalidInput("end_time must be timezone-aware UTC", field="end_time")
    df = view.read_source() if feature_df is None else feature_df
    entities = pd.DataFrame({view.entity: pd.unique(df[view.entity].dropna()),
                             "__as_of__": pd.Timestamp(end_time)})
    latest = point_in_time_join(entities, df, entity=view.entity, features=view.features, label_time="__as_of__",
                                feature_time=view.timestamp, ttl=view.ttl, prefix="", entity_type=view.entity_type)
    latest = latest[latest["feature_event_time"].notna()]
    now = datetime.now(UTC).isoformat()
    counts = {"written": 0, "unchanged": 0, "skipped_older": 0, "expired_or_future": len(entities) - len(latest)}
    with _connect(online_store_path(home)) as conn:
        stored = {row[0]: (row[1], row[2]) for row in conn.execute(
            "SELECT entity, payload, event_time FROM online_features WHERE view = ?", (view.name,))}
        rows = []
        for record in latest.to_dict("records"):
            key = entity_key(record[view.entity], view.entity_type)
            payload = json.dumps({f: _json_value(record[f]) for f in view.features}, sort_keys=True)
            event = pd.Timestamp(record["feature_event_time"]).isoformat()
            if key in stored:
                old_payload, old_event = stored[key]
                if pd.Timestamp(old_event) > pd.Timestamp(event):
                    counts["skipped_older"] += 1
                    continue
                if old_event == event and old_payload == payload:
                    counts["unchanged"] += 1
                    continue
                if old_event == event and not overwrite:
                    raise Conflict(f"online value of {view.name}/{key} at {event} differs from the stored one; "
                                   "pass overwrite to replace it", field="entity")
            rows.append((view.name, key, view.version, payload, event, now))
        conn.executemany("INSERT OR REPLACE INTO online_features VALUES (?, ?, ?, ?, ?, ?)", rows)
        counts["written"] = len(rows)
    logger.info("materialized %s: %s", view.name, counts)
    return counts


_local = threading.local()


def _reader(path: Path) -> sqlite3.Connection | None:
    """One read connection per thread and online table file (None: no table yet): opening SQLite costs more than
    the lookup itself. Keyed by the file's identity too, so a table deleted and created again is not read through
    a connection to the old file."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    cache: dict[tuple[Path, int, int], sqlite3.Connection] = getattr(_local, "connections", None) or {}
    _local.connections = cache
    key = (path, stat.st_dev, stat.st_ino)
    conn = cache.get(key)
    if conn is None:
        for old in [k for k in cache if k[0] == path]:
            cache.pop(old).close()
        conn = cache[key] = sqlite3.connect(path, timeout=30)
    return conn


def get_online_records(view: FeatureView, entity_ids: Sequence[Any], *, home: Path | None = None,
                       strict: bool = False, as_of: datetime | None = None,
                       full_feature_names: bool = False) -> list[dict[str, Any]]:
    """The serving fast path (no pandas): one dict per requested id, in request order, with the features,
    ``event_time`` and ``materialized_at`` (ISO strings, or None when there is no value). Unknown ids, and
    values older than the view's TTL at ``as_of`` (default now), give nulls (or NotFound with ``strict``), as the
    offline join would. Features are named by :func:`feature_column`, as offline."""
    path = online_store_path(home)
    oldest = None
    if view.ttl is not None:
        oldest = (as_of or datetime.now(UTC)) - view.ttl
    keys = [entity_key(e, view.entity_type) for e in entity_ids]
    found: dict[str, tuple[str, str, str]] = {}
    conn = _reader(path) if keys else None
    if conn is not None:
        for start in range(0, len(keys), 500):  # SQLite caps the number of bound parameters
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for entity, payload, event, materialized in conn.execute(
                    f"SELECT entity, payload, event_time, materialized_at FROM online_features "
                    f"WHERE view = ? AND entity IN ({marks})", (view.name, *chunk)):
                if oldest is None or datetime.fromisoformat(event) >= oldest:
                    found[entity] = (payload, event, materialized)
    elif keys:
        logger.debug("online table %s does not exist yet", path)
    if strict:
        missing = [k for k in keys if k not in found]
        if missing:
            raise NotFound(f"no online features of {view.name} for {missing[0]!r}", field=view.entity)
    names = [(f, feature_column(view, f, full_feature_names)) for f in view.features]
    records = []
    for key, original in zip(keys, entity_ids, strict=True):
        hit = found.get(key)
        if hit is None:
            records.append({view.entity: original, **{name: None for _, name in names}, "event_time": None,
                            "materialized_at": None})
        else:
            values = json.loads(hit[0])
            records.append({view.entity: original, **{name: values.get(f) for f, name in names},
                            "event_time": hit[1], "materialized_at": hit[2]})
    return records


def get_online_features(view: FeatureView, entity_ids: Sequence[Any], *, home: Path | None = None,
                        strict: bool = False, as_of: datetime | None = None,
                        full_feature_names: bool = False) -> pd.DataFrame:
    """:func:`get_online_records` as a DataFrame (``event_time`` and ``materialized_at`` as UTC timestamps)."""
    records = get_online_records(view, entity_ids, home=home, strict=strict, as_of=as_of,
                                 full_feature_names=full_feature_names)
    columns = [view.entity, *(feature_column(view, f, full_feature_names) for f in view.features), "event_time",
               "materialized_at"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    for column in ("event_time", "materialized_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame
