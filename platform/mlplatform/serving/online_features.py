"""``{"entity_ids": [...]}`` requests: features read from the online table, then predicted like instances.

The lookup runs in the ingress (the model deployments stay pure functions of their rows), off the event loop,
with the dependency retry policy (3 attempts, jittered exponential backoff, capped) for a busy or locked SQLite
file. An entity with no online row in any view is the client's mistake: 422 naming ``entity_ids[i]`` and the id.
404 stays reserved for an unknown model in the URL.

``instances`` sent with ``entity_ids`` (one object per id) carry request values that override the online ones
(SPEC S4.11). A model version trained on feature views (``data.feature_views``) records them with their
versions; it answers ``entity_ids`` only from exactly those views (409 otherwise).
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd

from mlplatform._internal.retry import RetryPolicy, acall_with_retry
from mlplatform.config.serve import OnlineFeaturesConfig
from mlplatform.errors import ConfigError, Conflict, InvalidInput, PayloadTooLarge, Timeout, Unavailable
from mlplatform.features.pit_join import FeatureView, feature_column, get_online_features
from mlplatform.features.repo import get_view, views_record

ONLINE_STORE_POLICY = RetryPolicy(max_attempts=3, base_seconds=0.02, cap_seconds=0.2, deadline_seconds=2.0)
MAX_ENTITY_ID_CHARS = 255  # the prediction log column holds 255


def parse_entity_ids(payload: dict[str, Any], max_instances: int) -> list[str | int]:
    ids = payload["entity_ids"]
    if not isinstance(ids, list):
        raise InvalidInput("'entity_ids' must be a list of strings or integers", field="entity_ids")
    if not ids:
        raise InvalidInput("'entity_ids' must not be empty", field="entity_ids")
    if len(ids) > max_instances:
        raise PayloadTooLarge(f"{len(ids)} entity ids; the limit is {max_instances}", field="entity_ids")
    for i, value in enumerate(ids):
        ok = (isinstance(value, str) and 0 < len(value) <= MAX_ENTITY_ID_CHARS) or (
            isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise InvalidInput(f"entity id must be a non-empty string (at most {MAX_ENTITY_ID_CHARS} characters) "
                               "or an integer", field=f"entity_ids[{i}]")
    return ids


def parse_request_values(payload: dict[str, Any], n_ids: int) -> list[dict[str, Any]] | None:
    """``instances`` sent with ``entity_ids``: per id, request values that override the online ones (SPEC S4.11:
    request > online table > defaults). One object per id, in the same order; a field given (even as null)
    replaces the online value, a field left out keeps it."""
    if "instances" not in payload:
        return None
    values = payload["instances"]
    if not isinstance(values, list) or len(values) != n_ids:
        raise InvalidInput(f"with entity_ids, 'instances' must be a list of {n_ids} object(s) of request values, "
                           "one per entity id", field="entity_ids")
    for i, value in enumerate(values):
        if not isinstance(value, dict):
            raise InvalidInput("request values must be an object of feature values", field=f"instances[{i}]")
    return values


def resolve_views(entries: list[dict[str, Any] | str], home: Path | None) -> list[FeatureView]:
    """Inline view definitions as they are; a name is the view applied in the feature repository under ``home``
    (its exact current version, the one ``features apply`` recorded and training joined)."""
    return [get_view(v, home) if isinstance(v, str) else FeatureView.model_validate(v) for v in entries]


def check_feature_views(trained: dict[str, Any] | None, served: dict[str, Any], model: str) -> None:
    """Refuse to answer ``entity_ids`` from views other than exactly those the model version was trained on
    (S4.9): the same names and versions, no more (an extra view would add fields the model never saw), no fewer.

    A model that records no views was trained on a plain table: its input schema is the only contract, checked by
    row validation as for any instances."""
    if not trained:
        return
    want = {(v["name"], v["version"]) for v in trained.get("views", [])}
    have = {(v["name"], v["version"]) for v in served.get("views", [])}
    if want == have and bool(trained.get("full_feature_names")) == bool(served.get("full_feature_names")):
        return

    def names(items: set[tuple[str, str]]) -> str:
        return ", ".join(f"{n}@{v[:12]}" for n, v in sorted(items)) or "none"

    raise Conflict(f"model {model} was trained on feature views {names(want)} (full_feature_names="
                   f"{bool(trained.get('full_feature_names'))}), but this deployment serves {names(have)} "
                   f"(full_feature_names={bool(served.get('full_feature_names'))}); materialize and serve the "
                   "views the model was trained on", field="entity_ids")


class OnlineFeatureLookup:
    def __init__(self, cfg: OnlineFeaturesConfig, default_home: str | None) -> None:
        home = cfg.home or default_home
        self.home = Path(home) if home else None  # None: the replica's own settings (usually wrong under Ray)
        self.views = resolve_views(cfg.views, self.home)
        entities = {v.entity for v in self.views}
        if len(entities) != 1:
            raise ConfigError(f"all online feature views must share one entity key, got {sorted(entities)}",
                              field="online_features.views")
        self.full_feature_names = cfg.full_feature_names
        self.record = views_record(self.views, cfg.full_feature_names)
        self.timeout_s = cfg.timeout_s

    def _read(self, ids: list[str | int]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [{} for _ in ids]
        found = [False] * len(ids)
        for view in self.views:
            frame = get_online_features(view, ids, home=self.home, full_feature_names=self.full_feature_names)
            present = frame["event_time"].notna().tolist()
            names = [feature_column(view, f, self.full_feature_names) for f in view.features]
            for i, record in enumerate(frame[names].to_dict("records")):
                if present[i]:
                    found[i] = True
                    rows[i].update({k: (None if _missing(v) else v) for k, v in record.items()})
        for i, ok in enumerate(found):
            if not ok:
                raise InvalidInput(f"no online features for entity {ids[i]!r} "
                                   f"(views: {', '.join(v.name for v in self.views)})", field=f"entity_ids[{i}]")
        return rows

    async def instances(self, ids: list[str | int],
                        request_values: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """One instance per id, in request order: the union of the views' features (later views win), then the
        request's own values over them (SPEC S4.11); what is still missing is imputed by the model's transform."""
        try:
            rows = await acall_with_retry(lambda: asyncio.to_thread(functools.partial(self._read, ids)),
                                          ONLINE_STORE_POLICY, what="online feature lookup",
                                          attempt_timeout=self.timeout_s)
        except TimeoutError:
            raise Timeout(f"the online feature store did not answer within {self.timeout_s:g} s") from None
        except sqlite3.Error as exc:  # still failing after the retries: a dependency outage, not a bug
            raise Unavailable(f"the online feature store is unavailable: {exc}", retry_after_s=1) from None
        for row, given in zip(rows, request_values or [], strict=False):
            row.update(given)
        return rows


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
