"""Open Inference Protocol v2 beside V1 (issue 19), through the real clients ``tritonclient[http]`` and KServe's
``InferenceRESTClient`` to Ray Serve on 127.0.0.1.

One app for the module: ``churn`` (v1 champion, v2 the same artifact as a 5 % canary: the version number tells them
apart) and ``numeric`` (a model of the numeric features only, for the 2-D tensor).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mlplatform.datasets.synthetic import FEATURES, TARGET
from mlplatform.rollouts import control
from mlplatform.rollouts.routing import assign
from tests.integration.test_serving import app_args, instances, make_store, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
NUMERIC = ["tenure_months", "monthly_charges", "support_calls", "usage_gb", "age"]
CATEGORICAL = [f for f in FEATURES if f not in NUMERIC]
SALT = "v2-salt"
KSERVE_HINT = ("run `make kserve-client` (a virtualenv with tests/kserve-client-requirements.txt at .venv-kserve) "
               "or set MLPLATFORM_TEST_KSERVE_PYTHON to a python that has kserve")


@pytest.fixture(scope="module")
def v2_app(serve_instance: str, tmp_path_factory: pytest.TempPathFactory, model_artifact_dir: Path,
           churn_df: pd.DataFrame) -> Iterator[dict[str, Any]]:
    from ray import serve

    from mlplatform.learning.sklearn_fit import fit_sklearn_artifact
    from mlplatform.serving.app import build_app

    root = tmp_path_factory.mktemp("v2")
    numeric_dir = root / "numeric-artifact"
    fit_sklearn_artifact(churn_df.iloc[:1000], target=TARGET, features=NUMERIC, family="logistic",
                         out_dir=numeric_dir)
    client, where = make_store(root, model_artifact_dir)
    client.registry.register("churn", model_artifact_dir, alias="challenger")
    client.registry.register("numeric", numeric_dir, alias="champion")
    control.start(client, "churn", stage="canary", salt=SALT, actor="test",
                  policy={"min_requests": 1_000_000, "auto_advance": False})
    name = f"v2-{uuid.uuid4().hex[:6]}"
    serve.run(build_app(app_args(where, models=[{"name": "churn", "num_replicas": 1},
                                                {"name": "numeric", "num_replicas": 1}],
                                 rollout={"poll_interval_s": 0.5})), name=name, route_prefix=f"/{name}")
    url = f"{serve_instance}/{name}"
    wait_for(lambda: (httpx.get(f"{url}/v1/models/churn", timeout=30).json().get("routing") or {})
             .get("challenger") == 2, timeout_s=30)
    yield {"url": url, "client": client}
    serve.delete(name)
    client.close()


def triton(url: str) -> Any:
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=30.0)


def triton_inputs(rows: pd.DataFrame, binary: bool = True) -> list[Any]:
    import tritonclient.http as httpclient

    inputs = []
    for name in FEATURES:
        tensor = httpclient.InferInput(name, [len(rows)], "BYTES" if name in CATEGORICAL else "FP64")
        array = rows[name].to_numpy(dtype=object if name in CATEGORICAL else np.float64)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def v1(url: str, rows: pd.DataFrame, model: str = "churn", **headers: str) -> dict[str, Any]:
    response = httpx.post(f"{url}/v1/models/{model}:predict", json={"instances": instances(rows)}, headers=headers,
                          timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_tritonclient_metadata_infer_and_errors_match_v1(v2_app: dict[str, Any], churn_df: pd.DataFrame) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    url = v2_app["url"]
    http = triton(url)
    assert http.is_server_live() and http.is_server_ready() and http.is_model_ready("churn")
    assert not http.is_model_ready("no-such-model")
    meta = http.get_model_metadata("churn")
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        (f, "BYTES" if f in CATEGORICAL else "FP64", [-1]) for f in FEATURES]
    assert [(o["name"], o["shape"]) for o in meta["outputs"]] == [("predict", [-1]), ("predict_proba", [-1, 2])]
    assert meta["versions"] == ["1"] and http.get_model_metadata("churn", "2")["versions"] == ["2"]
    assert http.is_model_ready("churn", "2")

    # rows with missing numbers: binary FP64 NaN and JSON null are the missing value V1's null is
    scored = churn_df.iloc[2000:]
    rows = pd.concat([scored.iloc[:30], scored[scored[NUMERIC].isna().any(axis=1)].iloc[:5]])
    champion_key = next(k for k in (f"user-{i}" for i in range(100)) if assign(f"h:{k}", SALT, 5.0) == "champion")
    expected = v1(url, rows, **{"X-User-ID": champion_key})
    for binary in (True, False):
        if not binary:  # tritonclient's JSON path cannot say null for a float: rows without missing numbers
            rows = rows.dropna()
            expected = v1(url, rows, **{"X-User-ID": champion_key})
        result = http.infer("churn", triton_inputs(rows, binary), headers={"X-User-ID": champion_key},
                            outputs=[httpclient.InferRequestedOutput("predict", binary_data=binary),
                                     httpclient.InferRequestedOutput("predict_proba", binary_data=binary)])
        assert result.as_numpy("predict").tolist() == expected["predictions"]
        # the same rows give the same numbers, to the last bit
        assert result.as_numpy("predict_proba").tolist() == expected["probabilities"]
        answer = result.get_response()
        assert answer["model_name"] == "churn" and answer["model_version"] == "1"
        assert answer["parameters"]["variant"] == "champion"

    # a 2-D FP32 tensor for the all-numeric model; the same rows as V1 (rounded to float32, as the client sends)
    dense = churn_df.iloc[2100:2110][NUMERIC].dropna().astype(np.float32)
    matrix = httpclient.InferInput("input-0", list(dense.shape), "FP32")
    matrix.set_data_from_numpy(dense.to_numpy())
    result = http.infer("numeric", [matrix])
    same = httpx.post(f"{url}/v1/models/numeric:predict", timeout=30,
                      json={"instances": dense.astype(np.float64).to_dict(orient="records")}).json()
    assert result.as_numpy("predict").tolist() == same["predictions"]
    assert result.as_numpy("predict_proba").tolist() == same["probabilities"]

    def refused(call: Any) -> InferenceServerException:
        with pytest.raises(InferenceServerException) as caught:
            call()
        return caught.value

    bad = churn_df.iloc[2000:2002][FEATURES].copy()
    bad_inputs = triton_inputs(bad)
    bad_inputs[0] = httpclient.InferInput("tenure_months", [2], "BYTES")
    bad_inputs[0].set_data_from_numpy(np.array(["twelve", "3"], dtype=object))
    error = refused(lambda: http.infer("churn", bad_inputs))
    # the row validator's reason, named by input and row
    assert error.status() == "400" and "tenure_months[0]: wrong_type" in error.message(), error.message()
    error = refused(lambda: http.infer("churn", [matrix]))  # a 2-D tensor for a model with categoricals
    assert error.status() == "400" and "'plan' is categorical" in error.message(), error.message()
    assert refused(lambda: http.infer("no-such-model", triton_inputs(rows))).status() == "404"
    assert refused(lambda: http.get_model_metadata("no-such-model")).status() == "404"
    assert refused(lambda: http.get_model_metadata("churn", "99")).status() == "404"
    http.close()


@pytest.mark.parametrize("body", [
    {"inputs": []}, {"inputs": [{"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["a"]}]},
    {"inputs": [{"name": "plan", "shape": [1], "datatype": "STRING", "data": ["a"]}]},
    {"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "data": ["old"]}]},
    {"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "data": [1.0]},
                {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]},
    {"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "data": [1.0]}], "outputs": [{"name": "x"}]},
    [1, 2],
])
def test_malformed_v2_bodies_are_400_with_an_error_string(v2_app: dict[str, Any], body: Any) -> None:
    response = httpx.post(f"{v2_app['url']}/v2/models/churn/infer", json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert isinstance(response.json()["error"], str) and response.json()["error"]


def test_v2_goes_through_the_rollout_router_and_the_prediction_log(v2_app: dict[str, Any],
                                                                   churn_df: pd.DataFrame) -> None:
    """A canary split is visible in V2's model_version (sticky per X-User-ID, exactly where V1 puts the same key);
    a pinned version answers for itself; every V2 answer is logged with its variant."""
    url, client = v2_app["url"], v2_app["client"]
    http = triton(url)
    rows = churn_df.iloc[2000:2001]
    keys = [f"user-{i}" for i in range(200)]
    seen = {}
    for key in keys:
        answer = http.infer("churn", triton_inputs(rows), headers={"X-User-ID": key}).get_response()
        seen[key] = (answer["parameters"]["variant"], answer["model_version"])
    assert all(variant == assign(f"h:{k}", SALT, 5.0) for k, (variant, _) in seen.items())
    assert {v for _, v in seen.values()} == {"1", "2"}
    assert all((variant == "challenger") == (version == "2") for variant, version in seen.values())
    challenger = next(k for k, (variant, _) in seen.items() if variant == "challenger")
    assert v1(url, rows, **{"X-User-ID": challenger})["model_version"] == 2
    pinned = http.infer("churn", triton_inputs(rows), model_version="2").get_response()
    assert (pinned["model_version"], pinned["parameters"]["variant"]) == ("2", "pinned")
    request_id = http.infer("churn", triton_inputs(rows), headers={"X-User-ID": challenger,
                                                                   "X-Request-ID": "v2-logged-1"}).get_response()
    assert request_id["parameters"]["request_id"] == "v2-logged-1"
    logged = wait_for(lambda: client.monitoring.predictions("churn", request_id="v2-logged-1"))
    assert [(r.variant, r.version) for r in logged] == [("challenger", 2)]
    http.close()


def test_kserve_inference_rest_client(v2_app: dict[str, Any], churn_df: pd.DataFrame, tmp_path: Path) -> None:
    python = os.environ.get("MLPLATFORM_TEST_KSERVE_PYTHON") or str(ROOT / ".venv-kserve" / "bin" / "python")
    if not os.access(python, os.X_OK):
        pytest.skip(f"no kserve client: {KSERVE_HINT}")
    url = v2_app["url"]
    rows = churn_df.iloc[2000:2020]
    spec = tmp_path / "rows.json"
    spec.write_text(json.dumps({"columns": {f: [r[f] for r in instances(rows)] for f in FEATURES},
                                "categorical": CATEGORICAL}))
    done = subprocess.run([python, str(Path(__file__).with_name("_kserve_client.py")), url, "churn", str(spec)],
                          capture_output=True, text=True, timeout=120, env={"PATH": os.environ.get("PATH", "")})
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert (out["live"], out["ready"], out["model_ready"], out["unknown_ready"]) == (True, True, True, False)
    # no routing key: the request id decides the split, so compare with V1 pinned to the version that answered
    for how in ("json", "binary"):
        answer = out[how]
        version = {"champion": 1, "challenger": 2}[answer["parameters"]["variant"]]
        response = httpx.post(f"{url}/v1/models/churn/versions/{version}:predict",
                              json={"instances": instances(rows)}, timeout=30)
        assert response.status_code == 200, response.text
        expected = response.json()
        assert answer["id"] == f"kserve-{how == 'binary'}"
        assert answer["outputs"]["predict"] == expected["predictions"]
        assert answer["outputs"]["predict_proba"] == expected["probabilities"]
    bad_row, unknown = out["errors"]
    assert bad_row["status"] == 400 and "tenure_months[0]: wrong_type" in bad_row["message"], bad_row
    assert unknown["status"] == 404 and "no-such-model" in unknown["message"], unknown
