"""Run by test_high_throughput.py in its own process: a fresh Ray started with RAY_SERVE_THROUGHPUT_OPTIMIZED=1
(Serve's controller and proxies read it when Ray starts, so the test session's Ray cannot be reused), the
platform deployed the way ``mlplatform serve up --high-throughput`` does, then real HTTP to the ingress replica's
direct-ingress port and to the proxy. Prints one JSON line with what it saw."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(home: str) -> None:
    os.environ["MLPLATFORM_HOME"] = home
    os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    import httpx
    import ray
    from ray.cluster_utils import Cluster

    from mlplatform.client import Client
    from mlplatform.datasets.synthetic import FEATURES, TARGET, make_churn
    from mlplatform.learning.sklearn_fit import fit_sklearn_artifact
    from mlplatform.predictor import Predictor
    from mlplatform.serving import deploy

    frame = make_churn(1500, seed=3)
    artifact = Path(home) / "artifact"
    fit_sklearn_artifact(frame.iloc[:1000], target=TARGET, features=FEATURES, family="logistic", out_dir=artifact)
    client = Client()
    client.registry.register("churn", artifact, alias="champion")

    # Every port explicit: the test session's own Ray holds the defaults.
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "include_dashboard": False, "dashboard_agent_listen_port": free_port()})
    ray.init(address=cluster.address, log_to_driver=False)
    settings = client.settings
    document = deploy.prepare({"http_options": {"host": "127.0.0.1", "port": free_port()}, "applications": [{
        "name": "ht", "route_prefix": "/ht", "import_path": "serve_apps.model_app:build_app",
        "args": {"models": [{"name": "churn", "ref": "churn@champion", "num_replicas": 1}],
                 "model_num_cpus": 0.25, "ingress_num_cpus": 0.25}}]},
        store_url=settings.shareable_store_url(), artifact_uri=settings.resolved_artifact_uri(), home=home,
        high_throughput=True)
    deploy.deploy(document)
    status = deploy.status()
    direct = status["direct_ingress"].get("ht", [])
    rows = frame.iloc[1000:1020][FEATURES]
    body = {"instances": json.loads(rows.to_json(orient="records"))}
    expected = Predictor.from_dir(artifact).predict(rows)
    facts: dict[str, object] = {"direct_urls": direct, "colocated": document["applications"][0]["args"].get(
        "colocate_models"), "deployments": sorted(status["applications"]["ht"]["deployments"])}
    with httpx.Client(timeout=30) as http:
        for via, base in (("direct", direct[0] if direct else None), ("proxy", deploy.endpoint(document))):
            if base is None:
                continue
            answer = http.post(f"{base}/v1/models/churn:predict", json=body)
            data = answer.json()
            facts[via] = {"status": answer.status_code, "version": data.get("model_version"),
                          "equal": data.get("predictions") == list(expected.predictions)}
        if direct:
            bad = http.post(f"{direct[0]}/v1/models/churn:predict", json={"instances": [{"tenure_months": "x"}]})
            facts["direct_bad_input"] = {"status": bad.status_code, "fields": [
                f["field"] for f in bad.json().get("error", {}).get("fields", [])]}
            fresh = {"instances": json.loads(frame.iloc[1020:1021][FEATURES].to_json(orient="records"))}
            facts["direct_cache"] = [http.post(f"{direct[0]}/v1/models/churn:predict", json=fresh).headers.get(
                "x-cache") for _ in range(2)]
    print("RESULT " + json.dumps(facts), flush=True)
    from ray import serve

    serve.shutdown()
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
