"""Online serving through real HTTP to Ray Serve on 127.0.0.1 (issue 8, SPEC S6)."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mlplatform.datasets.synthetic import FEATURES
from mlplatform.predictor import Predictor

pytestmark = [pytest.mark.ray, pytest.mark.slow]

APP = "serving-api"
PREFIX = "/api"


def wait_for(condition: Callable[[], Any], timeout_s: float = 20.0, interval_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


def instances(df: pd.DataFrame) -> list[dict[str, Any]]:
    rows = df[FEATURES].to_dict(orient="records")
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in rows]


def make_store(root: Path, artifact_dir: Path, versions: int = 1) -> tuple[Any, dict[str, str]]:
    from mlplatform.client import Client
    from mlplatform.settings import Settings

    where = {"store_url": f"sqlite:///{root / 'store.db'}", "artifact_uri": str(root / "artifacts"),
             "home": str(root)}
    client = Client(Settings(home=root), store_url=where["store_url"], artifact_uri=where["artifact_uri"])
    for i in range(versions):
        client.registry.register("churn", artifact_dir, alias="champion" if i == 0 else None)
    return client, where


def app_args(where: dict[str, str], **overrides: Any) -> dict[str, Any]:
    return {"models": [{"name": "churn", "ref": "churn:1", "num_replicas": 1}], **where,
            "prediction_log": {"flush_interval_s": 0.2}, "model_num_cpus": 0.25, "ingress_num_cpus": 0.1,
            **overrides}


@pytest.fixture(scope="module")
def served(serve_instance: str, tmp_path_factory: pytest.TempPathFactory,
           model_artifact_dir: Path) -> Iterator[dict[str, Any]]:
    """One app for the read-only tests of this module (deploying costs seconds on 2 cores)."""
    from ray import serve

    from mlplatform.serving.app import build_app

    client, where = make_store(tmp_path_factory.mktemp("serve-home"), model_artifact_dir)
    serve.run(build_app(app_args(where)), name=APP, route_prefix=PREFIX)
    yield {"client": client, "url": serve_instance + PREFIX}
    serve.delete(APP)
    client.close()


def predict(url: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/churn:predict", json=body, timeout=30, **kwargs)


def test_predictions_equal_in_process_predictor(served: dict[str, Any], churn_df: pd.DataFrame,
                                                model_artifact_dir: Path) -> None:

    rows = churn_df.iloc[2000:2025]
    response = predict(served["url"], {"instances": instances(rows)}, headers={"X-Request-ID": "req-equal-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = Predictor.from_dir(model_artifact_dir).predict(rows[FEATURES])
    assert body["predictions"] == list(expected.predictions)
    np.testing.assert_allclose(np.array(body["probabilities"]), expected.probabilities, rtol=0, atol=1e-12)
    assert (body["model_name"], body["model_version"], body["request_id"]) == ("churn", 1, "req-equal-1")
    assert response.headers["X-Request-ID"] == "req-equal-1"
    meta = httpx.get(f"{served['url']}/v1/models/churn").json()
    assert meta["ready"] and meta["version"] == 1
    assert [f["name"] for f in meta["input_schema"]] == FEATURES
    assert httpx.get(f"{served['url']}/v1/models").json()["models"][0]["name"] == "churn"
    assert httpx.get(f"{served['url']}/healthz").status_code == 200
    assert "/v1/models/{name}:predict" in httpx.get(f"{served['url']}/openapi.json").json()["paths"]


@pytest.mark.parametrize(("content", "field"), [
    (b'{"instances": [{"tenure_months": NaN}]}', "body"),
    (b'{"instances": [', "body"),
    (b"not json at all", "body"),
    (b'{"instances": []}', "instances"),
    (b'{"instances": {"a": 1}}', "instances"),
    (b'{"rows": []}', "instances"),
    (b'{"instances": [1, 2]}', "instances[0]"),
])
def test_malformed_bodies_get_422_naming_the_field(served: dict[str, Any], content: bytes, field: str) -> None:
    response = httpx.post(f"{served['url']}/v1/models/churn:predict", content=content,
                          headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["fields"][0]["field"] == field
    assert response.json()["request_id"]


@pytest.mark.parametrize(("feature", "value", "field", "reason"), [
    ("tenure_months", "twelve", "instances[0].tenure_months", "wrong_type (expected float, got 'twelve')"),
    ("tenure_months", True, "instances[0].tenure_months", "wrong_type (expected float, got bool"),
    ("tenure_months", float("inf"), "body", "Infinity"),  # json.dumps writes the non-JSON token Infinity
    ("tenure_months", "__1e999__", "instances[0].tenure_months", "not_finite"),  # valid JSON, overflows to inf
    ("plan", 3.5, "instances[0].plan", "wrong_type"),  # 3 would be the category "3"; 3.5 names no category
    ("age", "__missing__", "instances[0].age", "missing_field"),
])
def test_bad_feature_values_get_422_naming_the_feature(served: dict[str, Any], churn_df: pd.DataFrame,
                                                       feature: str, value: Any, field: str, reason: str) -> None:
    row = instances(churn_df.iloc[:1])[0]
    if value == "__missing__":
        del row[feature]
    else:
        row[feature] = value
    content = json.dumps({"instances": [row]}).replace('"__1e999__"', "1e999")
    response = httpx.post(f"{served['url']}/v1/models/churn:predict", content=content,
                          headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["fields"][0]["field"] == field
    assert reason in error["message"]


def test_unknown_model_404_and_oversized_413(served: dict[str, Any], churn_df: pd.DataFrame) -> None:
    url = served["url"]
    row = instances(churn_df.iloc[:1])[0]
    missing = httpx.post(f"{url}/v1/models/nope:predict", json={"instances": [row]}, timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFound"
    assert httpx.get(f"{url}/v1/models/nope", timeout=30).status_code == 404
    too_many = predict(url, {"instances": [row] * 1001})
    assert too_many.status_code == 413 and too_many.json()["error"]["fields"][0]["field"] == "instances"
    huge = httpx.post(f"{url}/v1/models/churn:predict", content=b'{"instances": ["' + b"x" * (1 << 20) + b'"]}',
                      headers={"Content-Type": "application/json"}, timeout=30)
    assert huge.status_code == 413 and huge.json()["error"]["type"] == "PayloadTooLarge"


def test_concurrent_requests_are_batched(served: dict[str, Any], churn_df: pd.DataFrame) -> None:
    from ray import serve

    salt = uuid.uuid4().int % 1000  # fresh feature values: cache hits would never reach the model
    rows = instances(churn_df.iloc[:64])
    for i, row in enumerate(rows):
        row["tenure_months"] = 1000.0 + salt + i / 100

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=32)) as http:
            return await asyncio.gather(*[http.post(f"{served['url']}/v1/models/churn:predict",
                                                    json={"instances": [row]}) for row in rows])

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [200] * len(rows)
    stats = serve.get_deployment_handle("Model_churn", app_name=APP).stats.remote().result()
    assert max(stats["batch_sizes"]) > 1, stats["batch_sizes"]
    again = predict(served["url"], {"instances": [rows[0]]})
    assert again.json()["cached"] == [True] and again.headers["X-Cache"] == "hit"


def test_feedback_stores_label_and_conflict_is_409(served: dict[str, Any], churn_df: pd.DataFrame) -> None:
    url = served["url"]
    request_id = predict(url, {"instances": instances(churn_df.iloc[5:6])}).json()["request_id"]
    first = httpx.post(f"{url}/v1/feedback", json={"request_id": request_id, "label": 1}, timeout=30)
    assert first.status_code == 200 and first.json()["stored"] is True
    same = httpx.post(f"{url}/v1/feedback", json={"request_id": request_id, "label": 1}, timeout=30)
    assert same.status_code == 200 and same.json()["stored"] is False
    conflict = httpx.post(f"{url}/v1/feedback", json={"request_id": request_id, "label": 0}, timeout=30)
    assert conflict.status_code == 409 and conflict.json()["error"]["type"] == "Conflict"
    labels = served["client"].monitoring.labels(request_ids=[request_id])
    assert [label.label for label in labels] == [1]
    bad = httpx.post(f"{url}/v1/feedback", json={"request_id": "a b", "label": 1}, timeout=30)
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "request_id"


def test_prediction_log_has_one_row_per_instance(served: dict[str, Any], churn_df: pd.DataFrame) -> None:
    body = predict(served["url"], {"instances": instances(churn_df.iloc[10:13])}).json()
    rows = wait_for(lambda: served["client"].monitoring.predictions("churn", request_id=body["request_id"]),
                    timeout_s=15)
    assert sorted(r.instance_index for r in rows) == [0, 1, 2]
    assert all(r.version == 1 and r.latency_ms and r.latency_ms > 0 for r in rows)
    assert [r.prediction for r in sorted(rows, key=lambda r: r.instance_index)] == body["predictions"]
    assert rows[0].features["plan"] == churn_df.iloc[10]["plan"]
    # class probabilities are logged with every prediction: monitoring reads the true score from them
    ordered = sorted(rows, key=lambda r: r.instance_index)
    assert all(len(r.probabilities) == 2 and abs(sum(r.probabilities) - 1) < 1e-6 for r in ordered)
    assert np.allclose([r.probabilities for r in ordered], body["probabilities"])


# -- version changes through user_config (declarative deploys reconfigure live replicas) ---------------------------

@pytest.fixture(params=[False, True], ids=["separate", "colocated"])
def declarative_app(request: pytest.FixtureRequest, serve_instance: str, tmp_path: Path,
                    model_artifact_dir: Path) -> Iterator[dict[str, Any]]:
    """A ``serve deploy``-style app, with the model in its own deployment or inside the ingress replica."""
    from ray import serve

    from mlplatform.serving import deploy

    client, where = make_store(tmp_path / "reload-home", model_artifact_dir, versions=2)
    name = f"reload-{uuid.uuid4().hex[:6]}"
    port = int(serve_instance.rsplit(":", 1)[1])
    document = deploy.prepare({"http_options": {"host": "127.0.0.1", "port": port}, "applications": [{
        "name": name, "route_prefix": f"/{name}", "import_path": "serve_apps.model_app:build_app",
        "args": app_args(where, colocate_models=request.param)}]})
    deploy.deploy(document)
    yield {"client": client, "document": document, "name": name, "url": f"{serve_instance}/{name}",
           "artifact_dir": model_artifact_dir}
    serve.delete(name)
    client.close()


def test_version_change_reloads_in_place_without_failed_requests(declarative_app: dict[str, Any],
                                                                  churn_df: pd.DataFrame) -> None:
    from mlplatform.serving import deploy

    url, rows = declarative_app["url"], instances(churn_df.iloc[:8])
    first = predict(url, {"instances": rows[:1]})
    assert first.json()["model_version"] == 1
    expected = Predictor.from_dir(declarative_app["artifact_dir"]).predict(churn_df.iloc[:1][FEATURES])
    assert first.json()["predictions"] == list(expected.predictions)
    assert first.json()["probabilities"][0] == pytest.approx(list(expected.probabilities[0]), abs=1e-12)
    assert predict(url, {"instances": rows[:1]}).json()["cached"] == [True]
    statuses: list[int] = []
    versions: set[int] = set()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as http:
            i = 0
            while not stop.is_set():
                r = http.post(f"{url}/v1/models/churn:predict", json={"instances": [rows[i % len(rows)]]})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.add(r.json()["model_version"])
                i += 1

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        wait_for(lambda: len(statuses) >= 20)
        deploy.deploy(deploy.with_model_ref(declarative_app["document"], declarative_app["name"], "churn",
                                            "churn:2"))
        wait_for(lambda: 2 in versions, timeout_s=60)
        settled = len(statuses)
        wait_for(lambda: len(statuses) >= settled + 20)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert statuses and set(statuses) == {200}, f"failed requests: {[s for s in statuses if s != 200][:5]}"
    after = predict(url, {"instances": rows[:1]}).json()
    assert after["model_version"] == 2 and after["served_by"] == first.json()["served_by"]
    # the cache key holds the version: the first answer of the new version for an old request is a miss
    assert predict(url, {"instances": rows[7:8]}).json()["model_version"] == 2


def test_version_pinned_endpoint(declarative_app: dict[str, Any], churn_df: pd.DataFrame) -> None:
    """SPEC S6.2: /v1/models/{name}/versions/{v}:predict answers from exactly that version, outside the split."""
    url, row = declarative_app["url"], instances(churn_df.iloc[20:21])
    routed = predict(url, {"instances": row}).json()
    assert routed["model_version"] == 1 and routed["variant"] == "champion"
    for version in (2, 1):
        answer = httpx.post(f"{url}/v1/models/churn/versions/{version}:predict", json={"instances": row},
                            timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["model_version"], body["variant"]) == (version, "pinned")
        assert body["predictions"] == routed["predictions"]  # the two versions share one artifact
    missing = httpx.post(f"{url}/v1/models/churn/versions/9:predict", json={"instances": row}, timeout=30)
    assert missing.status_code == 404 and "9" in missing.json()["error"]["message"]
    bad = httpx.post(f"{url}/v1/models/churn/versions/latest:predict", json={"instances": row}, timeout=30)
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "version"
    pinned_rows = wait_for(lambda: [r for r in declarative_app["client"].monitoring.predictions("churn")
                                    if r.variant == "pinned" and r.version == 2], timeout_s=15)
    assert pinned_rows[0].features == row[0]


def test_tampered_version_is_refused_and_current_keeps_serving(declarative_app: dict[str, Any],
                                                               churn_df: pd.DataFrame) -> None:
    import pyarrow.fs as pafs

    from mlplatform.serving import deploy

    client, url = declarative_app["client"], declarative_app["url"]
    row = instances(churn_df.iloc[:1])
    assert predict(url, {"instances": row}).json()["model_version"] == 1
    tampered = client.registry.register("churn", declarative_app["artifact_dir"])
    root = tampered.artifact_uri
    base = pafs.FileSystem.from_uri(root)[1] if "://" in root else root
    weights = next(name for name in tampered.files if name.startswith("model."))
    with open(Path(base) / weights, "ab") as handle:
        handle.write(b"tampered")
    deploy.deploy(deploy.with_model_ref(declarative_app["document"], declarative_app["name"], "churn",
                                        f"churn:{tampered.version}"))

    def refused() -> dict[str, Any] | None:
        meta = httpx.get(f"{url}/v1/models/churn", timeout=30).json()
        return meta if meta.get("requested_ref") == f"churn:{tampered.version}" and meta.get("refused") else None

    meta = wait_for(refused, timeout_s=60)
    assert meta["version"] == 1 and "sha256" in meta["refused"]
    answer = predict(url, {"instances": row})
    assert answer.status_code == 200 and answer.json()["model_version"] == 1


def test_cli_serve_up_status_down(serve_instance: str, client: Any, model_artifact_dir: Path,
                                  churn_df: pd.DataFrame, tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from mlplatform.cli.main import app
    from mlplatform.serving import deploy

    client.registry.register("churn", model_artifact_dir, alias="champion")
    document = deploy.load_config(Path(__file__).resolve().parents[2] / "serve_apps" / "config.yaml")
    name = f"cli-{uuid.uuid4().hex[:6]}"
    application = document["applications"][0]
    application.update(name=name, route_prefix=f"/{name}", deployments=[])
    application["args"].update(autoscaling={"min_replicas": 1, "max_replicas": 1}, model_num_cpus=0.25,
                               ingress_num_cpus=0.1)
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump(document))
    port = serve_instance.rsplit(":", 1)[1]
    runner = CliRunner()
    try:
        result = runner.invoke(app, ["serve", "up", "--config", str(config), "--port", port, "--json"])
        assert result.exit_code == 0, result.output
        # Ray's raylet may print a warning into the same stdout capture; the document starts at the first "{"
        shown = json.loads(result.stdout[result.stdout.index("{\n"):])
        assert shown["endpoint"] == f"{serve_instance}/{name}" and "curl -s -X POST" in shown["curl"]
        response = predict(shown["endpoint"], {"instances": instances(churn_df.iloc[:2])})
        assert response.status_code == 200 and response.json()["model_version"] == 1
        status = runner.invoke(app, ["serve", "status", "--json"])
        assert status.exit_code == 0, status.output
        assert json.loads(status.stdout)["applications"][name]["status"] == "RUNNING"
        # the web console comes up beside the models, on the same port and store (issue 21)
        assert shown["console"] == f"{serve_instance}/console/"
        page = httpx.get(f"{shown['console']}models", timeout=30)
        assert page.status_code == 200 and 'href="/console/models/churn"' in page.text
    finally:
        down = runner.invoke(app, ["serve", "down", "--app", name])
        runner.invoke(app, ["serve", "down", "--app", "console"])
    assert down.exit_code == 0, down.output
    bad = runner.invoke(app, ["serve", "up", "--config", str(tmp_path / "missing.yaml")])
    assert bad.exit_code == 2 and "does not exist" in bad.output
