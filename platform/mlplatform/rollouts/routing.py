"""Sticky weighted assignment (SPEC S7.1-S7.2) and the stage table.

bucket = first 8 bytes of SHA-256(salt + key) mod 10,000; the challenger takes buckets below weight x 100. The
same key and salt always land in the same bucket, so one user sees one version for the whole stage, and raising
the weight only moves users from champion to challenger (never back and forth).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from mlplatform.errors import InvalidInput

BUCKETS = 10_000
CHAMPION, CHALLENGER, SHADOW = "champion", "challenger", "shadow"
KEY_HEADERS = ("x-user-id", "x-request-key")
DEFAULT_STAGES: tuple[dict[str, Any], ...] = (
    {"name": "shadow", "weight": 0.0, "mirror": True},  # 100/0, the challenger gets a copy of every request
    {"name": "canary", "weight": 5.0, "mirror": False},  # 95/5
    {"name": "gradual", "weight": 30.0, "mirror": False},  # 70/30
    {"name": "full", "weight": 100.0, "mirror": False},  # 0/100: the challenger is promoted to champion
)


def bucket(key: str, salt: str = "") -> int:
    digest = hashlib.sha256((salt + key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign(key: str, salt: str, challenger_weight: float) -> str:
    """``challenger`` for the first ``weight`` percent of buckets, else ``champion``."""
    if challenger_weight <= 0:
        return CHAMPION
    return CHALLENGER if bucket(key, salt) < round(challenger_weight * BUCKETS / 100) else CHAMPION


def routing_key(headers: Mapping[str, str], instances: Sequence[Mapping[str, Any]], request_id: str,
                entity_field: str | None = None) -> str:
    """X-User-ID, else X-Request-Key, else the first instance's entity id, else the request id."""
    for header in KEY_HEADERS:
        value = headers.get(header)
        if value:
            return f"h:{value}"
    if entity_field and instances:
        value = instances[0].get(entity_field) if isinstance(instances[0], Mapping) else None
        if value is not None and not isinstance(value, bool):
            return f"e:{value}"
    return f"r:{request_id}"


def validate_stages(stages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Weights in [0, 100], unique names, at least one stage; returns plain dicts."""
    if not stages:
        raise InvalidInput("a rollout needs at least one stage", field="stages")
    out: list[dict[str, Any]] = []
    for i, stage in enumerate(stages):
        name = str(stage.get("name") or "").strip()
        weight = stage.get("weight")
        if not name:
            raise InvalidInput(f"stage {i} needs a name", field=f"stages[{i}].name")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= float(weight) <= 100:
            raise InvalidInput(f"stage {name!r}: weight must be a number in [0, 100], got {weight!r}",
                               field=f"stages[{i}].weight")
        out.append({"name": name, "weight": float(weight), "mirror": bool(stage.get("mirror", False))})
    names = [s["name"] for s in out]
    if len(set(names)) != len(names):
        raise InvalidInput(f"stage names must be unique, got {names}", field="stages")
    return out


def parse_stages(spec: str) -> list[dict[str, Any]]:
    """``"shadow:0:mirror,canary:5,gradual:30,full:100"`` -> stage dicts (the CLI's ``--stages``)."""
    stages = []
    for i, part in enumerate(p.strip() for p in spec.split(",") if p.strip()):
        fields = part.split(":")
        if len(fields) not in (2, 3) or (len(fields) == 3 and fields[2] != "mirror"):
            raise InvalidInput(f"stage {part!r} must be name:weight or name:weight:mirror", field=f"stages[{i}]")
        try:
            weight = float(fields[1])
        except ValueError:
            raise InvalidInput(f"stage {part!r}: weight {fields[1]!r} is not a number",
                               field=f"stages[{i}].weight") from None
        stages.append({"name": fields[0], "weight": weight, "mirror": len(fields) == 3})
    return validate_stages(stages)
