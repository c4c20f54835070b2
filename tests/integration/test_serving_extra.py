"""Entity-id requests (online features), ensembles over DeploymentHandles and the version-keyed cache, through
real HTTP to Ray Serve on 127.0.0.1 (issue 8 items 2, 4, 5).

One module app: ``churn`` (following ``churn@champion``, with online features) and three ensembles over members
``churn:1..4``; version 4 always fails (test-only fault injection), so the ``degrade`` and ``fail`` policies meet a
real failing member.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mlplatform.datasets.synthetic import FEATURES
from tests.integration.test_serving import instances, make_store, predict, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]

APP = "serving-ensembles"
VIEW = {"name": "churn_profile", "entity": "customer_id", "features": FEATURES}


@pytest.fixture(scope="module")
def app(serve_instance: str, tmp_path_factory: pytest.TempPathFactory, model_artifact_dir: Path,
        churn_df: pd.DataFrame) -> Iterator[dict[str, Any]]:
    from ray import serve

    from mlplatform.features.pit_join import FeatureView, materialize
    from mlplatform.serving.app import build_app

    root = tmp_path_factory.mktemp("ensemble-home")
    client, where = make_store(root, model_artifact_dir, versions=4)
    materialize(FeatureView(**VIEW), feature_df=churn_df, home=root, end_time=datetime.now(UTC))
    members = {"num_replicas": 1, "member_timeout_s": 10}
    args = {"models": [{"name": "churn", "ref": "churn@champion", "num_replicas": 1,
                        "online_features": {"views": [VIEW]}}],
            "ensembles": [
                {"name": "trio", "members": ["churn:1", "churn:2", "churn:3"], "combine": "mean", **members},
                {"name": "lenient", "members": ["churn:1", "churn:2", "churn:4"], "combine": "vote",
                 "on_member_failure": "degrade", "min_members": 2, **members},
                {"name": "strict", "members": ["churn:2", "churn:4"], "combine": "weighted", "weights": [2, 1],
                 **members}],
            **where, "prediction_log": {"flush_interval_s": 0.2}, "model_num_cpus": 0.2, "ingress_num_cpus": 0.05,
            "rollout": {"poll_interval_s": 0.5, "fault_injection": {4: 1.0}}}
    serve.run(build_app(args), name=APP, route_prefix=f"/{APP}")
    yield {"client": client, "url": f"{serve_instance}/{APP}", "home": root}
    serve.delete(APP)
    client.close()


def post(url: str, model: str, body: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/{model}:predict", json=body, timeout=30)


# -- entity_ids --------------------------------------------------------------------------------------------------

def test_entity_ids_predict_from_online_features(app: dict[str, Any], model_artifact_dir: Path) -> None:
    from mlplatform.features.pit_join import FeatureView, get_online_features
    from mlplatform.predictor import Predictor

    ids = ["c007-000010", "c007-000003", "c007-002777"]
    online = get_online_features(FeatureView(**VIEW), ids, home=app["home"])
    assert online["event_time"].notna().all(), "fixture: these customers must be materialized"
    response = post(app["url"], "churn", {"entity_ids": ids})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = Predictor.from_dir(model_artifact_dir).predict(online[FEATURES])
    assert body["entity_ids"] == ids and body["predictions"] == list(expected.predictions)
    np.testing.assert_allclose(np.array(body["probabilities"]), expected.probabilities, rtol=0, atol=1e-12)
    rows = wait_for(lambda: app["client"].monitoring.predictions("churn", request_id=body["request_id"]))
    assert sorted(r.entity_id for r in rows) == sorted(ids)


def test_unknown_entity_is_422_naming_it(app: dict[str, Any]) -> None:
    response = post(app["url"], "churn", {"entity_ids": ["c007-000010", "nobody-42"]})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["fields"][0]["field"] == "entity_ids[1]" and "'nobody-42'" in error["message"]


@pytest.mark.parametrize(("body", "field"), [
    ({"entity_ids": []}, "entity_ids"),
    ({"entity_ids": "c007-000010"}, "entity_ids"),
    ({"entity_ids": ["c007-000010", None]}, "entity_ids[1]"),
    ({"entity_ids": ["c007-000010"], "instances": [{}, {}]}, "entity_ids"),  # request values: one per id
])
def test_malformed_entity_ids_are_422(app: dict[str, Any], body: Any, field: str) -> None:
    response = post(app["url"], "churn", body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["fields"][0]["field"] == field


def test_entity_ids_without_online_features_is_422(app: dict[str, Any]) -> None:
    response = post(app["url"], "strict", {"entity_ids": ["c007-000010"]})
    assert response.status_code == 422 and "no online features" in response.json()["error"]["message"]


# -- ensembles -----------------------------------------------------------------------------------------------------

def test_ensemble_of_three_answers_with_all_member_versions(app: dict[str, Any], churn_df: pd.DataFrame,
                                                            model_artifact_dir: Path) -> None:
    from mlplatform.predictor import Predictor

    rows = churn_df.iloc[100:110]
    response = post(app["url"], "trio", {"instances": instances(rows)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "trio" and body["ensemble"] == "mean" and body["degraded"] is False
    assert [(m["ref"], m["model_version"], m["status"]) for m in body["members"]] == [
        ("churn:1", 1, "ok"), ("churn:2", 2, "ok"), ("churn:3", 3, "ok")]
    # three copies of one artifact: the mean equals the single model
    expected = Predictor.from_dir(model_artifact_dir).predict(rows[FEATURES])
    assert body["predictions"] == list(expected.predictions)
    np.testing.assert_allclose(np.array(body["probabilities"]), expected.probabilities, atol=1e-9)
    meta = httpx.get(f"{app['url']}/v1/models/trio", timeout=30).json()
    assert meta["kind"] == "ensemble" and [m["version"] for m in meta["members"]] == [1, 2, 3]
    assert [f["name"] for f in meta["input_schema"]] == FEATURES
    logged = wait_for(lambda: app["client"].monitoring.predictions("trio", request_id=body["request_id"]))
    assert len(logged) == len(rows) and {r.variant for r in logged} == {"ensemble"}


def test_failing_member_degrade_policy_answers_from_the_rest(app: dict[str, Any], churn_df: pd.DataFrame) -> None:
    response = post(app["url"], "lenient", {"instances": instances(churn_df.iloc[:3])})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["degraded"] is True and len(body["predictions"]) == 3
    by_ref = {m["ref"]: m for m in body["members"]}
    assert by_ref["churn:4"]["status"] == "failed" and by_ref["churn:4"]["error"] == "error"
    assert "injected" not in response.text.lower()  # the member's own error text stays in the replica's log
    assert [by_ref[r]["model_version"] for r in ("churn:1", "churn:2")] == [1, 2]


def test_failing_member_fail_policy_is_503(app: dict[str, Any], churn_df: pd.DataFrame) -> None:
    response = post(app["url"], "strict", {"instances": instances(churn_df.iloc[:1])})
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert "churn:4" in error["message"] and error["fields"][0]["field"] == "members[1]"
    assert "injected" not in response.text.lower()
    assert response.headers["Retry-After"] == "1"


def test_ensemble_invalid_input_stays_422(app: dict[str, Any], churn_df: pd.DataFrame) -> None:
    row = instances(churn_df.iloc[:1])[0] | {"age": "old"}
    response = post(app["url"], "lenient", {"instances": [row]})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["fields"][0]["field"] == "instances[0].age"


# -- cache and versions ----------------------------------------------------------------------------------------

def test_version_change_makes_a_repeated_request_a_miss(app: dict[str, Any], churn_df: pd.DataFrame) -> None:
    url, client = app["url"], app["client"]
    row = instances(churn_df.iloc[2500:2501])
    first = predict(url, {"instances": row})
    assert first.status_code == 200 and first.json()["model_version"] == 1
    hit = predict(url, {"instances": row})
    assert hit.json()["cached"] == [True] and hit.headers["X-Cache"] == "hit"
    client.registry.set_alias("churn", "champion", 2)  # replicas follow the alias within poll_interval_s
    wait_for(lambda: httpx.get(f"{url}/v1/models/churn", timeout=30).json().get("version") == 2, timeout_s=30)
    moved = predict(url, {"instances": row})
    assert moved.json()["model_version"] == 2
    assert moved.json()["cached"] == [False] and moved.headers["X-Cache"] == "miss"
    again = predict(url, {"instances": row})
    assert again.json()["cached"] == [True] and again.json()["model_version"] == 2


# -- invalid bodies, property-based --------------------------------------------------------------------------------

def _json_values() -> Any:
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=True) | st.text(
        max_size=20)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=10), inner, max_size=4), max_leaves=12)


def _bodies(row: dict[str, Any]) -> Any:
    """Bytes of predict bodies: arbitrary JSON, wrong shapes, rows with one feature replaced by any JSON value (or
    removed), huge instance lists, entity id lists of any content, and non-JSON bytes."""
    from hypothesis import strategies as st

    values = _json_values()

    def one_bad_feature(feature: str, value: Any, drop: bool) -> dict[str, Any]:
        instance = dict(row)
        if drop:
            del instance[feature]
        else:
            instance[feature] = value
        return {"instances": [instance]}

    shapes = st.one_of(
        values,
        st.fixed_dictionaries({"instances": values}),
        st.builds(one_bad_feature, st.sampled_from(FEATURES), values, st.booleans()),
        st.builds(lambda n: {"instances": [row] * n}, st.integers(1001, 1200)),
        st.fixed_dictionaries({"entity_ids": values}),
        st.fixed_dictionaries({"entity_ids": st.lists(st.text(max_size=300) | st.integers(), min_size=1,
                                                       max_size=3)}),
    )
    as_json = shapes.map(lambda body: json.dumps(body, allow_nan=True).encode())
    return as_json | st.binary(max_size=200)


def test_invalid_bodies_never_get_a_5xx(app: dict[str, Any], churn_df: pd.DataFrame) -> None:
    pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, given, settings

    row = instances(churn_df.iloc[:1])[0]
    statuses: list[int] = []

    @settings(max_examples=100, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(body=_bodies(row))
    def check(body: bytes) -> None:
        response = httpx.post(f"{app['url']}/v1/models/churn:predict", content=body,
                              headers={"Content-Type": "application/json"}, timeout=30)
        statuses.append(response.status_code)
        if response.status_code == 200:  # a body that happened to be valid: a real answer
            answer = response.json()
            assert len(answer["predictions"]) == len(answer.get("entity_ids") or json.loads(body)["instances"])
            return
        assert 400 <= response.status_code < 500, (body[:200], response.status_code, response.text[:300])
        error = response.json()["error"]
        assert error["message"] and error["type"] != "InternalError"
        if response.status_code in (413, 422):
            assert error["fields"] and error["fields"][0]["field"], error

    check()
    assert sum(400 <= s < 500 for s in statuses) >= 80, statuses


# -- autoscaling and high-throughput mode ----------------------------------------------------------------------

def _running(app_name: str, deployment: str) -> int:
    from ray import serve

    app_status = serve.status().applications.get(app_name)
    if app_status is None or deployment not in app_status.deployments:
        return 0
    states = app_status.deployments[deployment].replica_states
    return sum(n for state, n in states.items() if str(getattr(state, "value", state)) == "RUNNING")


def test_autoscaling_adds_a_replica_under_load_and_removes_it_after(
        serve_instance: str, tmp_path: Path, model_artifact_dir: Path, churn_df: pd.DataFrame) -> None:
    import threading

    from ray import serve

    from mlplatform.serving.app import build_app

    client, where = make_store(tmp_path / "autoscale-home", model_artifact_dir)
    name = "serving-autoscale"
    args = {"models": [{"name": "churn", "ref": "churn:1"}], **where, "model_num_cpus": 0.2,
            "ingress_num_cpus": 0.05, "cache": {"enabled": False}, "prediction_log": {"enabled": False},
            "autoscaling": {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
                            "upscale_delay_s": 1, "downscale_delay_s": 2, "look_back_period_s": 2,
                            "metrics_interval_s": 0.5}}
    serve.run(build_app(args), name=name, route_prefix=f"/{name}")
    url = f"{serve_instance}/{name}/v1/models/churn:predict"
    rows = instances(churn_df.iloc[:50])
    stop = threading.Event()
    statuses: list[int] = []

    def load() -> None:
        with httpx.Client(timeout=30) as http:
            i = 0
            while not stop.is_set():
                statuses.append(http.post(url, json={"instances": [rows[i % len(rows)]] * 8}).status_code)
                i += 1

    workers = [threading.Thread(target=load, daemon=True) for _ in range(12)]
    try:
        assert _running(name, "Model_churn") == 1
        for worker in workers:
            worker.start()
        wait_for(lambda: _running(name, "Model_churn") == 2, timeout_s=90, interval_s=0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    try:
        assert statuses and set(statuses) == {200}, [s for s in statuses if s != 200][:5]
        wait_for(lambda: _running(name, "Model_churn") == 1, timeout_s=90, interval_s=0.5)
    finally:
        serve.delete(name)
        client.close()


def test_the_hot_routes_find_the_replica_instance_inside_a_real_serve_replica(serve_instance: str) -> None:
    """The unit tests give the hot-route path its ingress instance; inside a replica it looks the instance up
    through Serve (serving/hot_routes.py). Were that lookup to find nothing, every request would quietly take the
    slower FastAPI route and every other test would still pass."""
    from ray import serve

    from mlplatform.serving.hot_routes import HotRouteMiddleware

    @serve.deployment(ray_actor_options={"num_cpus": 0.05})
    class Probe:
        async def __call__(self, request: Any) -> dict[str, bool]:
            return {"found_self": HotRouteMiddleware(app=None)._servable_now() is self}

    name = "hot-route-probe"
    serve.run(Probe.bind(), name=name, route_prefix=f"/{name}")
    try:
        assert httpx.get(f"{serve_instance}/{name}", timeout=30).json() == {"found_self": True}
    finally:
        serve.delete(name)


def test_high_throughput_option_reaches_the_replicas(serve_instance: str, tmp_path: Path,
                                                     model_artifact_dir: Path, churn_df: pd.DataFrame) -> None:
    from ray import serve

    from mlplatform.serving import deploy
    from tests.integration.test_serving import app_args

    client, where = make_store(tmp_path / "ht-home", model_artifact_dir)
    name = "serving-ht"
    port = int(serve_instance.rsplit(":", 1)[1])
    document = deploy.prepare({"http_options": {"host": "127.0.0.1", "port": port}, "applications": [{
        "name": name, "route_prefix": f"/{name}", "import_path": "serve_apps.model_app:build_app",
        "args": app_args(where, colocate_models=False)}]}, high_throughput=True)
    assert document["applications"][0]["runtime_env"]["env_vars"]["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    # an explicit layout wins over the mode's default (colocated; tests/e2e/test_high_throughput.py covers it)
    assert document["applications"][0]["args"]["colocate_models"] is False
    deploy.deploy(document)
    try:
        stats = serve.get_deployment_handle("Model_churn", app_name=name).stats.remote().result()
        assert stats["throughput_optimized"] is True
        response = predict(f"{serve_instance}/{name}", {"instances": instances(churn_df.iloc[:2])})
        assert response.status_code == 200, response.text
    finally:
        serve.delete(name)
        client.close()


# -- access rules: bearer token and rate limit (SPEC S6.12) ------------------------------------------------------

def test_bearer_token_and_rate_limit_over_http(serve_instance: str, tmp_path: Path, model_artifact_dir: Path,
                                               churn_df: pd.DataFrame) -> None:
    from ray import serve

    from mlplatform.serving import deploy
    from tests.integration.test_serving import app_args

    client, where = make_store(tmp_path / "access-home", model_artifact_dir)
    token_file = tmp_path / "serve-token"
    token_file.write_text("t0ken-for-tests\n")
    pii_key = tmp_path / "pii-key"
    pii_key.write_text("pii-key-for-tests\n")
    name = "serving-access"
    port = int(serve_instance.rsplit(":", 1)[1])
    document = deploy.prepare({"http_options": {"host": "127.0.0.1", "port": port}, "applications": [{
        "name": name, "route_prefix": f"/{name}", "import_path": "serve_apps.model_app:build_app",
        "runtime_env": {"env_vars": {"MLP_TEST_SERVE_TOKEN_FILE": str(token_file),
                                     "MLP_TEST_PII_KEY_FILE": str(pii_key)}},
        "args": app_args(where, auth={"enabled": True, "token_secret": "MLP_TEST_SERVE_TOKEN"},
                         rate_limit={"enabled": True, "requests": 3, "window_s": 60},
                         pii={"fields": ["region"], "key_secret": "MLP_TEST_PII_KEY"})}]})
    deploy.deploy(document)
    url = f"{serve_instance}/{name}/v1/models/churn:predict"
    body = {"instances": instances(churn_df.iloc[:1])}
    good = {"Authorization": "Bearer t0ken-for-tests"}
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            denied = httpx.post(url, json=body, headers=headers, timeout=30)
            assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
            assert denied.json()["error"]["fields"][0]["field"] == "authorization"
        statuses = [httpx.post(url, json=body, headers={**good, "X-User-ID": "alice"}, timeout=30).status_code
                    for _ in range(3)]
        assert statuses == [200, 200, 200]
        limited = httpx.post(url, json=body, headers={**good, "X-User-ID": "alice"}, timeout=30)
        assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.json()["error"]["type"] == "RateLimited"
        # the budget is the token's: a client header names no other client (no trusted proxy configured);
        # refused requests never reached the model or the log
        assert httpx.post(url, json=body, headers={**good, "X-User-ID": "bob"}, timeout=30).status_code == 429
        logged = wait_for(lambda: (rows := client.monitoring.predictions("churn")) and len(rows) >= 3 and rows)
        time.sleep(1.5)  # one more flush interval: nothing else may arrive
        assert len(client.monitoring.predictions("churn")) == len(logged) == 3
        # the PII rule: region is stored as a keyed pseudonym, the other features as sent
        import hmac

        sent = body["instances"][0]
        pseudonym = "hmac-sha256:" + hmac.new(b"pii-key-for-tests", json.dumps(sent["region"]).encode(),
                                              "sha256").hexdigest()
        assert {r.features["region"] for r in logged} == {pseudonym}
        assert all(r.features["tenure_months"] == sent["tenure_months"] for r in logged)
    finally:
        serve.delete(name)
        client.close()
