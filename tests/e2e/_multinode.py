"""Run by test_multinode.py in its own process: a 3-node ``ray.cluster_utils.Cluster`` (head + 2 workers) on one
machine with nothing shared but the services: the store is PostgreSQL (MLPLATFORM_STORE_URL), artifacts live on S3
(MLPLATFORM_ARTIFACT_URI), and the driver and every node have their own MLPLATFORM_HOME. Prints one JSON line with
where things ran and what landed where."""

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


def actor_nodes(dashboard: str, prefix: str) -> list[str]:
    from ray.util.state import list_actors

    # The address is explicit: on a shared machine other Ray instances run too, and auto-detection then refuses
    # ("Found multiple active Ray instances") or picks another one.
    return sorted({a.node_id for a in list_actors(address=dashboard, limit=2000, raise_on_missing_output=False)
                   if a.class_name.startswith(prefix) or prefix in a.class_name})


ARTIFACT_NAMES = ("model.json", "model.skops", "model.pt", "transform.json", "drift_reference.json")


def local_artifacts(homes: list[Path]) -> list[str]:
    """Artifact-like files or artifact/checkpoint folders under any local home (there must be none)."""
    found = []
    for home in homes:
        for path in home.rglob("*") if home.exists() else []:
            if path.name in ARTIFACT_NAMES or path.name in {"artifacts", "ray_train", "ray_tune"} \
                    or path.name.startswith("checkpoint_"):
                found.append(str(path))
    return found


def main(home: str) -> None:
    root = Path(home)
    homes = {name: root / name for name in ("driver", "head", "node-1", "node-2")}
    os.environ["MLPLATFORM_HOME"] = str(homes["driver"])
    assert os.environ["MLPLATFORM_STORE_URL"].startswith("postgresql")
    assert os.environ["MLPLATFORM_ARTIFACT_URI"].startswith("s3://")
    import ray
    from ray.cluster_utils import Cluster

    # Every port explicit: the test session's own Ray already holds the defaults (the dashboard agent's 52365).
    # Each raylet (and so every worker on that node) gets its own home: nothing local is shared.
    dashboard_port = free_port()
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": dashboard_port,
        "dashboard_agent_listen_port": free_port(), "env_vars": {"MLPLATFORM_HOME": str(homes["head"])}})
    workers = [cluster.add_node(num_cpus=2, env_vars={"MLPLATFORM_HOME": str(homes[f"node-{i}"])})
               for i in (1, 2)]
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
    facts["train_worker_nodes"] = actor_nodes(dashboard, "RayTrainWorker")

    from ray import serve

    from mlplatform.serving.app import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    settings = client.settings
    serve.run(build_app({  # no "home": each replica uses its own node's
        "models": [{"name": "churn", "ref": "churn@champion", "num_replicas": 2}],
        "store_url": settings.shareable_store_url(), "artifact_uri": settings.resolved_artifact_uri(),
        "model_num_cpus": 0.5, "ingress_num_cpus": 0.1, "prediction_log": {"flush_interval_s": 0.2},
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
    facts["serve_replica_nodes"] = actor_nodes(dashboard, "ServeReplica:models:Model_churn")

    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from mlplatform.artifacts.storage import join_uri
    from mlplatform.batch import BatchConfig, run_batch

    base = settings.resolved_artifact_uri()
    fs, scoring = pafs.FileSystem.from_uri(join_uri(base, "scoring"))
    pq.write_table(pa_table(make_churn(3000, seed=9).drop(columns=["churned"])), f"{scoring}/part-0.parquet",
                   filesystem=fs)
    result = run_batch(BatchConfig(model="churn@champion", input=join_uri(base, "scoring"),
                                   output=join_uri(base, "scored"), concurrency=2,
                                   keep_columns=["customer_id"]), client=client)
    facts["batch_rows"] = result.rows_scored
    facts["batch_output_rows"] = pq.read_table(result.output_path, filesystem=fs).num_rows

    # Every stage's records are in the one PostgreSQL store; every byte on S3; nothing under a local home.
    deadline = time.monotonic() + 30
    while not client.monitoring.predictions("churn") and time.monotonic() < deadline:
        time.sleep(0.5)
    facts["logged_predictions"] = len(client.monitoring.predictions("churn"))
    facts["run_kinds"] = sorted({(r.kind, r.status) for r in client.runs.list_runs(limit=1000)
                                 if r.parent_run_id is None})
    facts["version_uri"] = client.registry.resolve("churn@champion").artifact_uri.split("?")[0].split("@")[-1]
    _, train_path = pafs.FileSystem.from_uri(join_uri(base, "ray_train", outcome.run_id))
    facts["train_checkpoints_on_s3"] = len([i for i in fs.get_file_info(pafs.FileSelector(train_path))
                                            if i.base_name.startswith("checkpoint_")])
    facts["store"] = client.engine.dialect.name
    serve.shutdown()
    ray.shutdown()
    cluster.shutdown()
    facts["local_artifacts"] = local_artifacts(list(homes.values()))
    facts["homes_used"] = sorted(name for name, path in homes.items() if path.exists())
    print("RESULT " + json.dumps(facts, default=list))


def pa_table(df: object) -> object:
    import pyarrow as pa

    return pa.Table.from_pandas(df, preserve_index=False)


if __name__ == "__main__":
    main(sys.argv[1])
