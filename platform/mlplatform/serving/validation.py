"""Request validation before anything touches the model (SPEC S6.4): raw JSON -> typed rows in schema order.

Everything here raises :class:`InvalidInput` (422) or :class:`PayloadTooLarge` (413) naming the field, so bad input
can never reach the transform and become a 500.
"""

from __future__ import annotations

import json
import math
from typing import Any

from mlplatform.errors import InvalidInput, PayloadTooLarge
from mlplatform.features.schema import FeatureSpec


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


def validate_rows(instances: list[dict[str, Any]], schema: list[FeatureSpec]) -> list[tuple[Any, ...]]:
    """Rows as tuples in schema order with values normalised by dtype; extra keys are dropped."""
    return [_validate_row(i, instance, schema) for i, instance in enumerate(instances)]


def _validate_row(index: int, instance: dict[str, Any], schema: list[FeatureSpec]) -> tuple[Any, ...]:
    values = []
    for spec in schema:
        field = f"instances[{index}].{spec.name}"
        if spec.name not in instance:
            raise InvalidInput(f"missing required feature {spec.name!r}", field=field)
        value = instance[spec.name]
        if value is None:
            if not spec.nullable:
                raise InvalidInput(f"feature {spec.name!r} must not be null", field=field)
            values.append(None)
        elif spec.is_numeric:
            values.append(_number(value, spec, field))
        else:
            if not isinstance(value, str):
                raise InvalidInput(f"expected a string for {spec.name!r}, got {type(value).__name__}", field=field)
            values.append(value)
    return tuple(values)


def _number(value: Any, spec: FeatureSpec, field: str) -> float:
    # bool is an int subclass in Python; a JSON true for a numeric feature is a client bug unless the dtype is bool.
    if isinstance(value, bool):
        if spec.dtype != "bool":
            raise InvalidInput(f"expected a number for {spec.name!r}, got a boolean", field=field)
        return float(value)
    if not isinstance(value, int | float):
        raise InvalidInput(f"expected a number for {spec.name!r}, got {type(value).__name__}", field=field)
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InvalidInput(f"feature {spec.name!r} must be a finite number", field=field)
    return number
