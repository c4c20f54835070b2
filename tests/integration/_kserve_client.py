"""KServe's own InferenceRESTClient against a live app: run by the kserve virtualenv's python (``.venv-kserve``;
kserve's pins conflict with the project's, see tests/kserve-client-requirements.txt), never imported by pytest.

argv: base URL, model name, a JSON file ``{"columns": {feature: [values]}, "categorical": [names]}``. Prints one JSON
object: readiness, the answers of a JSON and a binary infer request, and the status and message of two bad ones.
"""

from __future__ import annotations

import asyncio
import json
import sys

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


def tensors(columns: dict[str, list], categorical: list[str], binary: bool) -> list[InferInput]:
    inputs = []
    for name, values in columns.items():
        if name in categorical:
            array = np.array(values, dtype=object)
            tensor = InferInput(name, [len(values)], "BYTES")
        else:
            array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            tensor = InferInput(name, [len(values)], "FP64")
        if binary:
            tensor.set_data_from_numpy(array, binary_data=True)
        else:
            tensor.data = list(values)  # JSON: a missing number is null
        inputs.append(tensor)
    return inputs


async def main(base: str, model: str, spec: dict) -> dict:
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    columns, categorical = spec["columns"], spec["categorical"]
    out: dict = {"live": await client.is_server_live(base), "ready": await client.is_server_ready(base),
                 "model_ready": await client.is_model_ready(base, model),
                 "unknown_ready": await client.is_model_ready(base, "no-such-model")}
    for binary in (False, True):
        request = InferRequest(model, tensors(columns, categorical, binary), request_id=f"kserve-{binary}")
        answer = await client.infer(base, request, model_name=model)
        out["binary" if binary else "json"] = {
            # kserve's REST client drops the response's model_version (InferResponse.from_bytes): parameters stay
            "id": answer.id, "parameters": answer.parameters,
            "outputs": {o.name: o.as_numpy().tolist() for o in answer.outputs}}
    bad = {name: ["twelve" if name == "tenure_months" else v for v in values] for name, values in columns.items()}
    failures = []
    text = {*categorical, "tenure_months"}  # a number sent as text that is no number: the row validator's call
    for name, body in ((model, {"inputs": [{"name": k, "shape": [len(v)], "data": v,
                                            "datatype": "BYTES" if k in text else "FP64"} for k, v in bad.items()]}),
                       ("no-such-model", InferRequest("no-such-model", tensors(columns, categorical, False)))):
        try:
            await client.infer(base, body, model_name=name)
            failures.append({"status": None})
        except httpx.HTTPStatusError as exc:
            failures.append({"status": exc.response.status_code, "message": str(exc)})
    out["errors"] = failures
    await client.close()
    return out


if __name__ == "__main__":
    with open(sys.argv[3]) as handle:
        print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], json.load(handle)))))
