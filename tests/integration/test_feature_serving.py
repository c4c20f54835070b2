"""A model trained on a feature view is served by entity id (issue 15, deliverable 6), end to end: ``features
apply``d view -> training joins it point-in-time (float label keys against integer feature keys) and records the
view and its version -> ``materialize`` -> real Serve on 127.0.0.1 answers ``entity_ids`` exactly as the offline
path does, request values override online ones (SPEC S4.11), and a deployment serving other view versions is
refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from mlplatform.datasets.synthetic import FEATURES, TARGET

pytestmark = [pytest.mark.ray, pytest.mark.slow]

APP = "feature-serving"
IDS = [10, 3, 2777]


@pytest.fixture(scope="module")
def trained(serve_instance: str, tmp_path_factory: pytest.TempPathFactory,
            churn_df: pd.DataFrame) -> Iterator[dict[str, Any]]:
    from ray import serve

    from mlplatform.client import Client
    from mlplatform.features.pit_join import materialize
    from mlplatform.features.repo import apply_file, get_view
    from mlplatform.serving.app import build_app
    from mlplatform.settings import Settings
    from mlplatform.training import pipeline

    root = tmp_path_factory.mktemp("feature-serving")
    where = {"store_url": f"sqlite:///{root / 'store.db'}", "artifact_uri": str(root / "artifacts"),
             "home": str(root)}
    client = Client(Settings(home=root), store_url=where["store_url"], artifact_uri=where["artifact_uri"])
    # integer entity keys in the feature source; the label file's keys are floats (as a CSV with a gap reads)
    source = churn_df[["event_time", *FEATURES]].assign(customer_id=np.arange(len(churn_df), dtype=np.int64))
    source.to_parquet(root / "profile.parquet")
    labels = pd.DataFrame({"customer_id": np.arange(len(churn_df), dtype="float64"),
                           "event_time": churn_df["event_time"], TARGET: churn_df[TARGET]})
    labels.to_parquet(root / "labels.parquet")
    (root / "views.yaml").write_text(yaml.safe_dump([{"name": "churn_profile", "entity": "customer_id",
                                                      "features": FEATURES, "source": "profile.parquet"}]))
    apply_file(root / "views.yaml", home=root)
    config = root / "train.yaml"
    config.write_text(yaml.safe_dump({
        "experiment": "fv", "model_name": "churn_fv", "seed": 7,
        "data": {"source": "file", "path": str(root / "labels.parquet"), "feature_views": ["churn_profile"]},
        "model": {"family": "logistic", "params": {}}}))
    outcome = pipeline.train_from_file(config, client=client, force=True)
    view = get_view("churn_profile", root)
    materialize(view, home=root, end_time=datetime.now(UTC))
    # the same artifact under a second name, served from a view of another version (a changed definition)
    version = client.registry.resolve("churn_fv@champion")
    client.registry.register("churn_other", client.registry.fetch(version), alias="champion")
    changed = {**view.model_dump(mode="json"), "owner": "someone-else"}
    args = {"models": [
        {"name": "churn_fv", "num_replicas": 1, "online_features": {"views": ["churn_profile"]}},
        {"name": "churn_other", "num_replicas": 1, "online_features": {"views": [changed]}}],
        **where, "prediction_log": {"enabled": False}, "model_num_cpus": 0.2, "ingress_num_cpus": 0.05}
    serve.run(build_app(args), name=APP, route_prefix=f"/{APP}")
    yield {"client": client, "url": f"{serve_instance}/{APP}", "root": root, "outcome": outcome, "view": view}
    serve.delete(APP)
    client.close()


def _post(trained: dict[str, Any], model: str, body: Any) -> httpx.Response:
    return httpx.post(f"{trained['url']}/v1/models/{model}:predict", json=body, timeout=30)


def _offline(trained: dict[str, Any], ids: list[int]) -> pd.DataFrame:
    from mlplatform.features.pit_join import get_historical_features

    entities = pd.DataFrame({"customer_id": ids, "event_time": pd.Timestamp.now(tz="UTC")})
    return get_historical_features(entities, [trained["view"]])


def test_model_records_the_views_it_was_trained_on(trained: dict[str, Any]) -> None:
    predictor = trained["client"].registry.load("churn_fv@champion")
    record = predictor.manifest.lineage["feature_views"]
    assert record == {"views": [{"name": "churn_profile", "version": trained["view"].version}],
                      "full_feature_names": False}
    # the float label keys found their integer entities: every feature came from the view, none is all-null
    assert [f["name"] for f in predictor.manifest.input_schema] == FEATURES
    assert predictor.transform.imputation_report(_offline(trained, list(range(50))))["age"]["missing_before"] < 10


def test_entity_ids_answer_like_the_offline_path(trained: dict[str, Any]) -> None:
    response = _post(trained, "churn_fv", {"entity_ids": IDS})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = trained["client"].registry.load("churn_fv@champion").predict(_offline(trained, IDS))
    assert body["entity_ids"] == IDS and body["predictions"] == list(expected.predictions)
    np.testing.assert_array_equal(np.array(body["probabilities"]), expected.probabilities)


def test_request_values_override_online_values(trained: dict[str, Any]) -> None:
    given = [{"tenure_months": 1.0, "plan": "premium"}, {}, {"support_calls": 9.0}]
    response = _post(trained, "churn_fv", {"entity_ids": IDS, "instances": given})
    assert response.status_code == 200, response.text
    offline = _offline(trained, IDS)
    for i, values in enumerate(given):
        for column, value in values.items():
            offline.loc[i, column] = value
    expected = trained["client"].registry.load("churn_fv@champion").predict(offline)
    np.testing.assert_array_equal(np.array(response.json()["probabilities"]), expected.probabilities)
    plain = _post(trained, "churn_fv", {"entity_ids": IDS}).json()["probabilities"]
    assert plain[1] == response.json()["probabilities"][1] and plain[0] != response.json()["probabilities"][0]


def test_other_view_versions_are_refused(trained: dict[str, Any]) -> None:
    response = _post(trained, "churn_other", {"entity_ids": IDS})
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["fields"][0]["field"] == "entity_ids"
    assert f"churn_profile@{trained['view'].version[:12]}" in error["message"]
    # rows sent as instances do not come from the online table: nothing to check
    instances = _offline(trained, IDS)[FEATURES].to_dict("records")
    assert _post(trained, "churn_other", {"instances": instances}).status_code == 200
