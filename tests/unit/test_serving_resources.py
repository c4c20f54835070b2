"""Serve replicas request the cluster's "serve" slots through the serving config (SPEC S9.4)."""

from __future__ import annotations

from mlplatform.config.serve import ServeConfig
from mlplatform.serving.app import model_deployment_options

ARGS = {"models": [{"name": "churn", "ref": "churn@champion"}]}


def test_replicas_reserve_serve_slots_when_the_cluster_has_them() -> None:
    cfg = ServeConfig.parse(ARGS).for_cluster({"CPU": 16.0, "serve": 4.0})
    options = model_deployment_options(cfg, "churn")["ray_actor_options"]
    assert options == {"num_cpus": 0.0, "resources": {"serve": 1.0}}
    assert cfg.actor_options(cfg.ingress_num_cpus) == {"num_cpus": 0.0, "resources": {"serve": 1.0}}


def test_a_laptop_without_serve_slots_requests_only_cpus() -> None:
    cfg = ServeConfig.parse(ARGS).for_cluster({"CPU": 2.0})
    assert model_deployment_options(cfg, "churn")["ray_actor_options"] == {"num_cpus": 0.5}


def test_an_explicit_choice_wins_over_auto() -> None:
    cfg = ServeConfig.parse({**ARGS, "replica_resources": {}}).for_cluster({"serve": 4.0})
    assert model_deployment_options(cfg, "churn")["ray_actor_options"] == {"num_cpus": 0.5}
    cfg = ServeConfig.parse({**ARGS, "replica_resources": {"serve": 0.5}, "model_num_cpus": 1}).for_cluster({})
    assert model_deployment_options(cfg, "churn")["ray_actor_options"] == {"num_cpus": 1.0,
                                                                           "resources": {"serve": 0.5}}
