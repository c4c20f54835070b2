"""The shape of a predict request before anything touches the model (SPEC S6.4): a JSON body with a bounded,
non-empty ``instances`` list of objects. What each value must be is the platform's one row validator
(:mod:`mlplatform.features.rows`), which the model server calls with the model's own schema and rules.

Everything here raises :class:`InvalidInput` (422) or :class:`PayloadTooLarge` (413) naming the field, so bad input
can never reach the transform and become a 500.
"""

from __future__ import annotations

import json
from typing import Any

from mlplatform.errors import InvalidInput, PayloadTooLarge


def _reject_constant(token: str) -> Any:
    # json.loads accepts NaN / Infinity / -Infinity by default; they are not JSON and no model wants them.
    raise InvalidInput(f"{token} is not a valid JSON number", field="body")


def parse_json_body(body: bytes, max_bytes: int) -> Any:
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"request body is {len(body)} bytes; the limit is {max_bytes}", field="body")
    if not body:
        raise InvalidInput("request body is empty; expected a JSON object", field="body")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except InvalidInput:
        raise
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"request body is not valid JSON ({str(exc).splitlines()[0][:120]})",
                           field="body") from None


def parse_instances(payload: Any, max_instances: int) -> list[dict[str, Any]]:
    """The ``instances`` list of a predict body: a non-empty list of JSON objects, at most ``max_instances``."""
    if not isinstance(payload, dict):
        raise InvalidInput("request body must be a JSON object with an 'instances' list", field="body")
    if "instances" not in payload:
        if "entity_ids" in payload:
            raise InvalidInput("entity_ids needs online features, which this deployment does not have",
                               field="entity_ids")
        raise InvalidInput("'instances' is required", field="instances")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise InvalidInput("'instances' must be a list of objects", field="instances")
    if not instances:
        raise InvalidInput("'instances' must not be empty", field="instances")
    if len(instances) > max_instances:
        raise PayloadTooLarge(f"{len(instances)} instances; the limit is {max_instances}", field="instances")
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise InvalidInput("each instance must be a JSON object of feature: value", field=f"instances[{i}]")
    return instances
