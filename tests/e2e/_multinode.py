"""Run by test_multinode.py in its own process: a 3-node ``ray.cluster_utils.Cluster`` (head + 2 workers) on one
machine, with one shared artifact location. Prints one JSON line with where things ran."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def actor_nodes(prefix: str) -> list[str]:
    from ray.util.state import list_actors

    return sorted({a.node_id for a in list_actors(limit=2000, raise_on_missing_output=False)
                   if a.class_name.startswith(prefix) or prefix in a.class_name})


def main(home: str) -> None:
    os.environ["MLPLATFORM_HOME"] = home
    import pandas as pd
    import ray
    from ray.cluster_utils import Cluster

    # Every port explicit: the test session's own Ray already holds the defaults (the dashboard agent's 52365).
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": free_port(),
        "dashboard_agent_listen_port": free_port()})
    workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    facts: dict[str, object] = {"nodes": len([n for n in ray.nodes() if n["Alive"]]),
                                "worker_node_ids": sorted(w.node_id for w in workers)}

    from mlplatform.client import Client
    from mlplatform.config.train import train_config_from_dict
    from mlplatform.training import pipeline

    client = Client()
    config = train_config_from_dict({
        "experiment": "multinode", "model_name": "churn", "task": "classification", "seed": 42,
        "data": {"source": "synthetic_churn", "n_rows": 2000, "target": "churned"},
        "model": {"family": "mlp", "params": {"hidden": [16]}},
        "training": {"epochs": 2, "batch_size": 128},
        "scaling": {"num_workers": 2, "use_gpu": False, "placement_strategy": "STRICT_SPREAD"},
    })
    outcome = pipeline.train(config, client=client, force=True)
    facts["train_status"] = outcome.status
    facts["train_version"] = outcome.model_version
    facts["train_worker_nodes"] = actor_nodes("RayTrainWorker")

    from ray import serve

    from mlplatform.serving.app import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    settings = client.settings
    serve.run(build_app({
        "models": [{"name": "churn", "ref": "churn@champion", "num_replicas": 2}],
        "store_url": settings.shareable_store_url(), "artifact_uri": settings.resolved_artifact_uri(),
        "home": str(settings.home), "model_num_cpus": 0.5, "ingress_num_cpus": 0.1,
    }), name="models", route_prefix="/")
    import httpx

    from mlplatform.datasets.synthetic import FEATURES, make_churn

    rows = json.loads(make_churn(20, seed=3)[FEATURES].to_json(orient="records"))
    deadline = time.monotonic() + 60
    while True:
        response = httpx.post(f"http://127.0.0.1:{port}/v1/models/churn:predict", json={"instances": rows},
                              timeout=30)
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    facts["serve_status"] = response.status_code
    facts["serve_predictions"] = len(response.json().get("predictions", []))
    facts["serve_replica_nodes"] = actor_nodes("ServeReplica:models:Model_churn")

    from mlplatform.batch import run_batch

    scoring = Path(home) / "scoring.parquet"
    make_churn(3000, seed=9).drop(columns=["churned"]).to_parquet(scoring, index=False)
    result = run_batch("churn@champion", str(scoring), str(Path(home) / "out"), concurrency=2,
                       keep_columns=["customer_id"], client=client)
    facts["batch_rows"] = result.rows_scored
    facts["batch_output_rows"] = len(pd.read_parquet(Path(home) / "out"))
    serve.shutdown()
    ray.shutdown()
    cluster.shutdown()
    print("RESULT " + json.dumps(facts))


if __name__ == "__main__":
    main(sys.argv[1])
