"""V2 tensor parsing: a tensor is accepted exactly when every value is of a JSON type its datatype takes (a bool is
no number, an integer is a float, nothing else converts), the first value that does not fit is named, and nested
data is flattened row-major."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlplatform.errors import InvalidInput
from mlplatform.serving import v2

VALUES: list[Any] = [None, True, False, 0, 1, -3, 2.5, 1e300, "a", "", {"a": 1}]
TAKES = {"BYTES": (str,), "BOOL": (bool,), "FP64": (int, float), "FP32": (int, float), "INT64": (int,),
         "INT32": (int,)}


def parse(datatype: str, data: list[Any], shape: list[Any] | None = None) -> v2.InferRequest:
    body = {"inputs": [{"name": "x", "datatype": datatype, "shape": [len(data)] if shape is None else shape,
                        "data": data}]}
    return v2.parse_infer(json.dumps(body).encode(), {}, 1 << 20, 1000)


@pytest.mark.parametrize("datatype", ["BYTES", "BOOL", "FP64", "FP32", "INT64", "INT32"])
@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_a_tensor_is_accepted_exactly_when_every_value_fits_its_datatype(datatype: str, value: Any) -> None:
    data = [value, value] if value is None else [None, value]  # a null beside it never decides
    fits = value is None or type(value) in TAKES[datatype]
    if fits:
        assert parse(datatype, data).columns["x"] == data
    else:
        with pytest.raises(InvalidInput) as refused:
            parse(datatype, data)
        assert refused.value.field == "inputs[0].data[1]"


def test_nested_data_is_flattened_row_major_and_flat_data_is_kept() -> None:
    assert parse("FP64", [[1.0], [2.0], [3.0]], shape=[3, 1]).columns["x"] == [1.0, 2.0, 3.0]
    assert parse("FP64", [[1.0, 2.0], [3.0, 4.0]], shape=[2, 2]).matrix == [[1.0, 2.0], [3.0, 4.0]]
    assert parse("BYTES", ["a", "b"]).columns["x"] == ["a", "b"]


@pytest.mark.parametrize("shape", [[True], [1.0], [-1], ["1"], [2**31 + 1], [1, 1, 1], []], ids=repr)
def test_a_shape_of_anything_but_one_or_two_non_negative_ints_is_refused(shape: list[Any]) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse("FP64", [1.0], shape=shape)
    assert refused.value.field == "inputs[0].shape"
