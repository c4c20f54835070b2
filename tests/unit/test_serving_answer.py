"""The serving contract: a ModelAnswer crosses replicas (pickled) and renders the V1/V2 bodies they always had."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest
from ray import cloudpickle

from mlplatform.serving.answer import ModelAnswer
from mlplatform.serving.v2 import InferRequest, infer_response

ROWS = [{"prediction": 1, "probabilities": [0.25, 0.75], "confidence": 0.75},
        {"prediction": 0, "probabilities": [0.5, 0.5], "confidence": 0.5}]


def _routed() -> ModelAnswer:
    return ModelAnswer(model_name="churn", model_version=3, results=ROWS, cached=[True, False], variant="champion",
                       mirror_versions=(4,))


def _fallback() -> ModelAnswer:
    return ModelAnswer(model_name="churn", model_version=3, results=ROWS, cached=[False, False],
                       variant="challenger", fallback_version=1, fallback_model="churn")


def _ensemble() -> ModelAnswer:
    members = [{"ref": "a:1", "model_name": "a", "model_version": 1, "status": "ok"},
               {"ref": "b:2", "model_name": None, "model_version": None, "status": "failed", "error": "timeout"}]
    return ModelAnswer(model_name="both", model_version=None, results=ROWS, cached=[False, False],
                       variant="ensemble", ensemble="mean", members=members, degraded=True)


@pytest.mark.parametrize("answer", [_routed(), _fallback(), _ensemble()])
def test_answer_survives_pickling_between_replicas_unchanged(answer: ModelAnswer) -> None:
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, pickle.loads)):
        again = loads(dumps(answer))
        assert again == answer and type(again) is ModelAnswer


def test_answer_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _routed().variant = "shadow"  # type: ignore[misc]


def test_v1_fields_keep_the_keys_and_order_of_the_former_answer_dict() -> None:
    # the dicts the deployments used to answer, after the ingress popped results and mirror_versions
    assert json.dumps(_routed().v1_fields()) == json.dumps(
        {"model_name": "churn", "model_version": 3, "cached": [True, False], "variant": "champion"})
    assert json.dumps(_fallback().v1_fields(["u1", 7])) == json.dumps(
        {"model_name": "churn", "model_version": 3, "cached": [False, False], "fallback": True,
         "fallback_version": 1, "fallback_model": "churn", "variant": "challenger", "entity_ids": ["u1", 7]})
    ensemble = _ensemble()
    assert json.dumps(ensemble.v1_fields()) == json.dumps(
        {"model_name": "both", "model_version": None, "ensemble": "mean", "members": ensemble.members,
         "degraded": True, "cached": [False, False], "variant": "ensemble"})


def test_logged_version_and_variant_name_whose_numbers_these_are() -> None:
    assert (_routed().answered_version, _routed().logged_variant) == (3, "champion")
    assert (_fallback().answered_version, _fallback().logged_variant) == (1, "fallback")
    assert (_ensemble().answered_version, _ensemble().logged_variant) == (None, "ensemble-degraded")


def test_v2_body_names_the_fallback_version_and_counts_cache_hits() -> None:
    parsed = InferRequest(columns={}, matrix=None, rows=2, outputs=("predict", "predict_proba"), id=None)
    body = infer_response("churn", parsed, _fallback(), "req-1")
    assert body["model_version"] == "1"
    assert body["parameters"] == {"request_id": "req-1", "variant": "challenger", "cached": 0, "fallback": True}
    assert body["outputs"][1] == {"name": "predict_proba", "datatype": "FP64", "shape": [2, 2],
                                  "data": [0.25, 0.75, 0.5, 0.5]}
    routed = infer_response("churn", parsed, _routed(), "req-2")
    assert routed["model_version"] == "3" and routed["parameters"]["cached"] == 1
