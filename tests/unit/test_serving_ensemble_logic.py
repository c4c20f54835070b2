"""Ensemble combination rules and the new serving config options (no Ray)."""

from __future__ import annotations

import pytest

from mlplatform.config.serve import ServeConfig
from mlplatform.errors import ConfigError, InvalidInput, PayloadTooLarge
from mlplatform.serving.ensemble import combine_classifier, combine_regressor
from mlplatform.serving.names import member_deployment_name
from mlplatform.serving.online_features import check_feature_views, parse_entity_ids, parse_request_values

META = {"classes": [0, 1], "threshold": 0.5}


def row(label: int, p1: float) -> dict:
    return {"prediction": label, "probabilities": [1 - p1, p1], "confidence": max(p1, 1 - p1)}


def test_mean_and_weighted_probabilities() -> None:
    rows = [row(1, 0.9), row(0, 0.2), row(0, 0.4)]
    mean = combine_classifier(rows, [1, 1, 1], [META] * 3, "mean")
    assert mean["prediction"] == 1 and mean["probabilities"] == pytest.approx([0.5, 0.5])  # threshold 0.5: >=
    weighted = combine_classifier(rows, [1, 3, 1], [META] * 3, "weighted")
    assert weighted["prediction"] == 0 and weighted["probabilities"][1] == pytest.approx((0.9 + 0.6 + 0.4) / 5)


def test_vote_majority_and_tie_break_by_mean_probability() -> None:
    vote = combine_classifier([row(1, 0.6), row(0, 0.1), row(1, 0.7)], [1, 1, 1], [META] * 3, "vote")
    assert vote["prediction"] == 1 and vote["confidence"] == pytest.approx(2 / 3)
    tie = combine_classifier([row(1, 0.55), row(0, 0.05)], [1, 1], [META] * 2, "vote")
    assert tie["prediction"] == 0  # mean p(1) = 0.3: class 0 is more probable


def test_members_must_agree_on_classes() -> None:
    with pytest.raises(ConfigError):
        combine_classifier([row(1, 0.6), row(0, 0.1)], [1, 1], [META, {"classes": ["a", "b"], "threshold": None}],
                           "mean")


def test_regressors_average_or_vote() -> None:
    assert combine_regressor([1.0, 2.0, 6.0], [1, 1, 1], "mean")["prediction"] == pytest.approx(3.0)
    assert combine_regressor([1.0, 2.0], [3, 1], "weighted")["prediction"] == pytest.approx(1.25)
    assert combine_regressor([2.0, 1.0, 1.0], [1, 1, 1], "vote")["prediction"] == 1.0


@pytest.mark.parametrize(("ensemble", "message"), [
    ({"combine": "weighted"}, "one weight per member"),
    ({"combine": "weighted", "weights": [1, 0]}, "positive"),
    ({"combine": "mean", "weights": [1, 1]}, "only used with"),
    ({"min_members": 3}, "min_members"),
    ({"members": ["m:1"]}, "members"),
])
def test_bad_ensemble_configs_name_the_problem(ensemble: dict, message: str) -> None:
    entry = {"name": "e", "members": ["m:1", "m:2"], **ensemble}
    with pytest.raises(ConfigError) as info:
        ServeConfig.parse({"ensembles": [entry]})
    assert message in info.value.message or message in (info.value.field or "")


def test_names_unique_across_models_and_ensembles_and_something_served() -> None:
    with pytest.raises(ConfigError, match="unique"):
        ServeConfig.parse({"models": [{"name": "m"}], "ensembles": [{"name": "m", "members": ["m:1", "m:2"]}]})
    with pytest.raises(ConfigError, match="at least one"):
        ServeConfig.parse({})
    assert member_deployment_name("churn@champion") == "Member_churn_champion"


def test_autoscaling_look_back_must_exceed_metrics_interval() -> None:
    with pytest.raises(ConfigError, match="look_back_period_s"):
        ServeConfig.parse({"models": [{"name": "m"}], "autoscaling": {"look_back_period_s": 2}})


def test_online_views_must_share_an_entity() -> None:
    views = [{"name": "a", "entity": "customer_id", "features": ["x"]},
             {"name": "b", "entity": "user", "features": ["y"]}]
    with pytest.raises(ConfigError, match="one entity key"):
        ServeConfig.parse({"models": [{"name": "m", "online_features": {"views": views}}]})


def test_parse_entity_ids() -> None:
    assert parse_entity_ids({"entity_ids": ["a", 3]}, 10) == ["a", 3]
    with pytest.raises(InvalidInput) as info:
        parse_entity_ids({"entity_ids": ["a", True]}, 10)
    assert info.value.field == "entity_ids[1]"
    with pytest.raises(PayloadTooLarge):
        parse_entity_ids({"entity_ids": ["a"] * 11}, 10)
    # instances beside entity_ids are request values (SPEC S4.11): one object per id
    assert parse_request_values({"entity_ids": ["a"], "instances": [{"x": 1}]}, 1) == [{"x": 1}]
    assert parse_request_values({"entity_ids": ["a"]}, 1) is None
    with pytest.raises(InvalidInput, match="one per entity id"):
        parse_request_values({"entity_ids": ["a"], "instances": []}, 1)
    with pytest.raises(InvalidInput) as info:
        parse_request_values({"entity_ids": ["a"], "instances": [3]}, 1)
    assert info.value.field == "instances[0]"


def test_check_feature_views_refuses_other_versions() -> None:
    from mlplatform.errors import Conflict

    trained = {"views": [{"name": "v", "version": "a" * 64}], "full_feature_names": False}
    check_feature_views(trained, {"views": [{"name": "v", "version": "a" * 64}], "full_feature_names": False},
                        "m:1")
    check_feature_views(None, {"views": [], "full_feature_names": False}, "m:1")  # trained on a plain table
    for served in ({"views": [{"name": "v", "version": "c" * 64}], "full_feature_names": False},
                   {"views": [{"name": "v", "version": "a" * 64}, {"name": "w", "version": "b"}],
                    "full_feature_names": False},
                   {"views": [{"name": "v", "version": "a" * 64}], "full_feature_names": True}):
        with pytest.raises(Conflict, match=r"m:1 was trained on feature views v@aaaaaaaaaaaa") as info:
            check_feature_views(trained, served, "m:1")
        assert info.value.field == "entity_ids"
