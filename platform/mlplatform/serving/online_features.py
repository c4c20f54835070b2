"""``{"entity_ids": [...]}`` requests: features read from the online table, then predicted like instances.

The lookup runs in the ingress (the model deployments stay pure functions of their rows), off the event loop,
with the dependency retry policy (3 attempts, jittered exponential backoff, capped) for a busy or locked SQLite
file. An entity with no online row in any view is the client's mistake: 422 naming ``entity_ids[i]`` and the id.
404 stays reserved for an unknown model in the URL.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd

from mlplatform._internal.retry import RetryPolicy, acall_with_retry
from mlplatform.errors import InvalidInput, PayloadTooLarge, Timeout, Unavailable
from mlplatform.features.pit_join import FeatureView, get_online_features
from mlplatform.serving.config import OnlineFeaturesConfig

ONLINE_STORE_POLICY = RetryPolicy(max_attempts=3, base_seconds=0.02, cap_seconds=0.2, deadline_seconds=2.0)
MAX_ENTITY_ID_CHARS = 255  # the prediction log column holds 255


def parse_entity_ids(payload: dict[str, Any], max_instances: int) -> list[str | int]:
    if "instances" in payload:
        raise InvalidInput("send either 'instances' or 'entity_ids', not both", field="entity_ids")
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


class OnlineFeatureLookup:
    def __init__(self, cfg: OnlineFeaturesConfig, default_home: str | None) -> None:
        self.views = [FeatureView.model_validate(v) for v in cfg.views]
        home = cfg.home or default_home
        self.home = Path(home) if home else None  # None: the replica's own settings (usually wrong under Ray)
        self.timeout_s = cfg.timeout_s

    def _read(self, ids: list[str | int]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [{} for _ in ids]
        found = [False] * len(ids)
        for view in self.views:
            frame = get_online_features(view, ids, home=self.home)
            present = frame["event_time"].notna().tolist()
            for i, record in enumerate(frame[view.features].to_dict("records")):
                if present[i]:
                    found[i] = True
                    rows[i].update({k: (None if _missing(v) else v) for k, v in record.items()})
        for i, ok in enumerate(found):
            if not ok:
                raise InvalidInput(f"no online features for entity {ids[i]!r} "
                                   f"(views: {', '.join(v.name for v in self.views)})", field=f"entity_ids[{i}]")
        return rows

    async def instances(self, ids: list[str | int]) -> list[dict[str, Any]]:
        """One instance per id, in request order: the union of the views' features (later views win)."""
        try:
            return await acall_with_retry(lambda: asyncio.to_thread(functools.partial(self._read, ids)),
                                          ONLINE_STORE_POLICY, what="online feature lookup",
                                          attempt_timeout=self.timeout_s)
        except TimeoutError:
            raise Timeout(f"the online feature store did not answer within {self.timeout_s:g} s") from None
        except sqlite3.Error as exc:  # still failing after the retries: a dependency outage, not a bug
            raise Unavailable(f"the online feature store is unavailable: {exc}", retry_after_s=1) from None


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
