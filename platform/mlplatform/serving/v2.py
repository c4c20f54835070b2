"""Open Inference Protocol v2 (KServe V2 REST) beside V1: only the translation between tensors and rows.

A V2 request becomes the same ``instances`` (a list of feature dicts) a V1 body carries, and the ingress sends them
down the one predict path (:meth:`mlplatform.serving.http_api.ServingAPI._answer`): the row validator, the rollout
router, the cache, the prediction log and auth see no difference. This module only parses tensors, renders
metadata and outputs, and words errors as ``{"error": "..."}``.

Inputs are columnar: one tensor per feature (BYTES for categoricals, FP64/FP32/INT64 for numbers, shape ``[n]`` or
``[n, 1]``), or one 2-D FP32/FP64 tensor ``[n, k]`` whose columns are the model's features in schema order (all-numeric
models only). Triton's binary tensor extension (``Inference-Header-Content-Length``) is read for inputs, because
``tritonclient`` sends binary data by default; outputs are always JSON (clients read both).
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi.responses import JSONResponse

from mlplatform.errors import InvalidInput, PayloadTooLarge
from mlplatform.serving.answer import ModelAnswer
from mlplatform.serving.validation import parse_json_body

BINARY_HEADER = "inference-header-content-length"
OUTPUTS = ("predict", "predict_proba")
# numpy's little-endian layout of each fixed-size datatype (binary extension) and the JSON values it accepts
_FIXED = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8", "INT32": "<i4", "BOOL": "|b1"}
_NUMBER = {"FP64", "FP32", "INT64", "INT32"}
DATATYPES = (*_FIXED, "BYTES")
_ROW_FIELD = re.compile(r"^instances\[(\d+)\]\.(.+)$")
_FEATURE_DATATYPE = {"float": "FP64", "int": "INT64", "bool": "BOOL", "category": "BYTES"}


@dataclass(frozen=True)
class InferRequest:
    """A parsed V2 body: the columns by input name (all of length ``rows``) or one matrix, and what to answer."""

    columns: dict[str, list[Any]]
    matrix: list[list[Any]] | None
    rows: int
    id: str | None
    outputs: tuple[str, ...]

    def instances(self, schema: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """The V1 rows. A matrix needs the model's schema (its column order) and an all-numeric model."""
        if self.matrix is None:
            names = list(self.columns)
            return [{name: self.columns[name][i] for name in names} for i in range(self.rows)]
        if not schema:
            raise InvalidInput("this model publishes no input schema: send one input tensor per feature",
                               field="inputs")
        categorical = [f["name"] for f in schema if f.get("dtype") not in ("float", "int", "bool")]
        if categorical:
            raise InvalidInput(f"a single 2-D tensor serves all-numeric models only; {categorical[0]!r} is "
                               "categorical: send one input tensor per feature (BYTES for categoricals)",
                               field="inputs[0]")
        names = [f["name"] for f in schema]
        width = len(self.matrix[0]) if self.matrix else 0
        if width != len(names):
            raise InvalidInput(f"a 2-D input needs {len(names)} columns (the model's features {names}), got "
                               f"{width}", field="inputs[0].shape")
        return [dict(zip(names, row, strict=True)) for row in self.matrix]


def parse_infer(body: bytes, headers: Any, max_bytes: int, max_rows: int) -> InferRequest:
    """The V2 infer body (JSON, or JSON + binary tensors) as columns; InvalidInput names the input and the rule."""
    declared = headers.get(BINARY_HEADER)
    binary = b""
    if declared is not None:
        if not declared.isdigit() or int(declared) > len(body):
            raise InvalidInput(f"{BINARY_HEADER} must be the JSON part's length in bytes (<= {len(body)})",
                               field="body")
        body, binary = body[:int(declared)], body[int(declared):]
    payload = parse_json_body(body, max_bytes)
    if not isinstance(payload, dict):
        raise InvalidInput("request body must be a JSON object with an 'inputs' list", field="body")
    tensors = payload.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidInput("'inputs' must be a non-empty list of tensors", field="inputs")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string", field="id")
    columns: dict[str, list[Any]] = {}
    matrix = None
    rows: int | None = None
    offset = 0
    for i, tensor in enumerate(tensors):
        name, datatype, shape, data, offset = _tensor(tensor, i, binary, offset)
        if len(shape) == 2 and shape[1] != 1:  # a matrix: every feature in one tensor
            if len(tensors) != 1:
                raise InvalidInput("a 2-D input of several columns must be the only input", field=f"inputs[{i}]")
            if datatype not in ("FP32", "FP64"):
                raise InvalidInput(f"a 2-D input must be FP32 or FP64, got {datatype}", field=f"inputs[{i}].datatype")
            matrix = [data[r * shape[1]:(r + 1) * shape[1]] for r in range(shape[0])]
        elif name in columns:
            raise InvalidInput(f"input {name!r} is given twice", field=f"inputs[{i}].name")
        else:
            columns[name] = data
        if rows is not None and shape[0] != rows:
            raise InvalidInput(f"input {name!r} has {shape[0]} rows, the first input {rows}", field=f"inputs[{i}]")
        rows = shape[0]
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data belong to no input", field="body")
    assert rows is not None
    if rows == 0:
        raise InvalidInput("inputs hold no rows", field="inputs[0].shape")
    if rows > max_rows:
        raise PayloadTooLarge(f"{rows} rows; the limit is {max_rows}", field="inputs[0].shape")
    return InferRequest(columns, matrix, rows, request_id, _requested_outputs(payload))


def _tensor(tensor: Any, i: int, binary: bytes, offset: int) -> tuple[str, str, list[int], list[Any], int]:
    where = f"inputs[{i}]"
    if not isinstance(tensor, dict):
        raise InvalidInput("each input must be an object with name, shape, datatype and data", field=where)
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if not isinstance(name, str) or not name:
        raise InvalidInput("'name' must be a non-empty string", field=f"{where}.name")
    if datatype not in DATATYPES:
        raise InvalidInput(f"input {name!r}: datatype must be one of {list(DATATYPES)}, got {str(datatype)[:40]!r}",
                           field=f"{where}.datatype")
    if (not isinstance(shape, list) or len(shape) not in (1, 2)
            or not all(type(d) is int and 0 <= d <= 2**31 for d in shape)):  # JSON ints (a bool is no int here)
        raise InvalidInput(f"input {name!r}: shape must be [rows] or [rows, columns] of non-negative integers",
                           field=f"{where}.shape")
    count = math.prod(shape)
    parameters = tensor.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= len(binary) - offset:
            raise InvalidInput(f"input {name!r}: binary_data_size must fit the {len(binary) - offset} bytes left",
                               field=f"{where}.parameters.binary_data_size")
        data = _from_binary(binary[offset:offset + size], datatype, count, name, where)
        return name, datatype, shape, data, offset + size
    if "data" not in tensor:
        raise InvalidInput(f"input {name!r}: 'data' is required", field=f"{where}.data")
    data = _flatten(tensor["data"], f"{where}.data")
    if len(data) != count:
        raise InvalidInput(f"input {name!r}: shape {shape} needs {count} values, data has {len(data)}",
                           field=f"{where}.data")
    accepted = _JSON_TYPES[datatype]
    if not accepted.issuperset(map(type, data)):  # then name the first value that does not fit
        j = next(j for j, value in enumerate(data) if type(value) not in accepted)
        raise InvalidInput(f"input {name!r}: value {j} ({str(data[j])[:40]!r}) is not {datatype}",
                           field=f"{where}.data[{j}]")
    return name, datatype, shape, data, offset


def _flatten(data: Any, where: str) -> list[Any]:
    """Row-major values of nested lists (the protocol allows flat or nested data)."""
    if not isinstance(data, list):
        raise InvalidInput("'data' must be a list", field=where)
    for value in data:
        if isinstance(value, list):
            break
    else:
        return data  # flat already (one value per row: the common case)
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:  # iterative: a deeply nested list must not become a RecursionError
        for value in stack[-1]:
            if isinstance(value, list):
                if len(stack) > 8:
                    raise InvalidInput("'data' nests lists more than 8 deep", field=where)
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


# The JSON values each datatype accepts, by exact type (json.loads makes no subclasses, so a bool is never a number
# here); None is a missing value. One set comparison checks a whole tensor.
_JSON_TYPES: dict[str, frozenset[type]] = {
    "BYTES": frozenset({str, type(None)}), "BOOL": frozenset({bool, type(None)}),
    **{t: frozenset({int, float, type(None)}) for t in ("FP64", "FP32")},
    **{t: frozenset({int, type(None)}) for t in ("INT64", "INT32")}}


def _from_binary(raw: bytes, datatype: str, count: int, name: str, where: str) -> list[Any]:
    if datatype == "BYTES":  # each element: a 4-byte little-endian length, then that many bytes of UTF-8
        values, at = [], 0
        while at < len(raw):
            if at + 4 > len(raw):
                break
            (length,) = struct.unpack_from("<I", raw, at)
            if at + 4 + length > len(raw):
                break
            try:
                values.append(raw[at + 4:at + 4 + length].decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidInput(f"input {name!r}: element {len(values)} is not UTF-8 text",
                                   field=f"{where}.data") from None
            at += 4 + length
        if at != len(raw) or len(values) != count:
            raise InvalidInput(f"input {name!r}: binary BYTES data does not hold {count} length-prefixed elements",
                               field=f"{where}.data")
        return values
    dtype = np.dtype(_FIXED[datatype])
    if len(raw) != count * dtype.itemsize:
        raise InvalidInput(f"input {name!r}: {count} {datatype} values are {count * dtype.itemsize} bytes, got "
                           f"{len(raw)}", field=f"{where}.data")
    values = np.frombuffer(raw, dtype=dtype).tolist()
    if datatype.startswith("FP"):
        # binary data has no null: NaN is how a missing number travels, and becomes the missing value JSON's null
        # is (the row validator then accepts or refuses it; an infinity stays, for the validator's not_finite)
        return [None if v != v else v for v in values]
    return values


def _requested_outputs(payload: dict[str, Any]) -> tuple[str, ...]:
    wanted = payload.get("outputs")
    if wanted is None:
        return OUTPUTS
    if not isinstance(wanted, list) or not all(isinstance(o, dict) for o in wanted):
        raise InvalidInput("'outputs' must be a list of objects with a name", field="outputs")
    names = tuple(o.get("name") for o in wanted)
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise InvalidInput(f"unknown output {str(unknown[0])[:40]!r}; this model answers {list(OUTPUTS)}",
                           field="outputs")
    return names


def infer_response(name: str, parsed: InferRequest, answer: ModelAnswer, request_id: str) -> dict[str, Any]:
    """The V2 answer of the rows' results; ``model_version`` is the version whose numbers these are."""
    version = answer.answered_version
    results = answer.results
    outputs = []
    labels = [r["prediction"] for r in results]
    if "predict" in parsed.outputs:
        outputs.append({"name": "predict", "datatype": _datatype_of(labels), "shape": [len(labels)],
                        "data": labels})
    probabilities = [r["probabilities"] for r in results if r["probabilities"] is not None]
    if "predict_proba" in parsed.outputs and len(probabilities) == len(results):
        width = len(probabilities[0])
        outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [len(labels), width],
                        "data": [p for row in probabilities for p in row]})
    parameters = {"request_id": request_id, "variant": answer.variant, "cached": sum(answer.cached)}
    if answer.fallback:
        parameters["fallback"] = True
    return {"model_name": name, "model_version": "" if version is None else str(version),
            "id": parsed.id if parsed.id is not None else request_id, "parameters": parameters, "outputs": outputs}


def _datatype_of(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INT64"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "FP64"
    return "BYTES"


def model_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """V2 model metadata from the served metadata (V1's): inputs per feature, outputs by task."""
    schema = meta.get("input_schema") or []
    inputs = [{"name": f["name"], "datatype": _FEATURE_DATATYPE.get(f.get("dtype", ""), "BYTES"), "shape": [-1]}
              for f in schema]
    classes = meta.get("classes")
    outputs = [{"name": "predict", "datatype": _datatype_of(classes) if classes else "FP64", "shape": [-1]}]
    if classes:
        outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(classes)]})
    version = meta.get("version")
    platform = meta.get("framework") or meta.get("kind") or "mlplatform"
    return {"name": meta.get("name"), "versions": [] if version is None else [str(version)],
            "platform": f"mlplatform-{platform}", "inputs": inputs, "outputs": outputs,
            "parameters": {"task": meta.get("task"), "classes": classes}}


def _v2_field(match: re.Match[str]) -> str:
    return f"{match.group(2)}[{match.group(1)}]"


def error(exc_response: JSONResponse) -> JSONResponse:
    """The V1 error answer (status, headers, logging: :func:`~mlplatform.serving.http_api.error_response`) in
    V2's shape ``{"error": "..."}``. Bad input is 400 in V2 (V1 says 422, and 413 for too large)."""
    body = json.loads(bytes(exc_response.body))
    detail = body["error"]
    message = detail["message"]
    # a row's field is named as V2 names it: the input, then the row (instances[3].region -> region[3]), with the
    # row validator's reason code first
    fields = [f"{_ROW_FIELD.sub(_v2_field, f['field'])}: " + (f"{f['code']} ({f['reason']})" if f.get("code")
                                                              else f["reason"])
              for f in detail.get("fields", []) if f.get("field")]
    if fields and any(f.get("code") for f in detail["fields"]):
        message = "; ".join(fields)  # the row issues say it all (V1's message repeats the first)
    elif fields:
        message = f"{message} ({'; '.join(fields)})"
    status = 400 if exc_response.status_code in (413, 422) else exc_response.status_code
    headers = {k: v for k, v in exc_response.headers.items() if k.lower() in ("retry-after", "www-authenticate")}
    return JSONResponse({"error": message, "request_id": body.get("request_id")}, status_code=status,
                        headers=headers)
