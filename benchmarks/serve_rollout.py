"""Cost of safe rollout on throughput (issue 9): single-row req/s at c=32 through this platform's endpoint with
the champion alone, with a 95/5 canary (sticky routing by request id), and with a shadow copy of every request,
all in the same run and the same app (the replicas follow the store, so only the rollout state changes).

Targets: routing_cost = 1 - canary / direct <= 0.15; shadow_cost = 1 - shadow / direct <= 0.25. Both versions are
the same small logistic model, so the numbers measure the rollout machinery, not a slower challenger.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT / "platform"), str(ROOT)]
from _report import emit_target, print_table  # noqa: E402
from serve_load import free_port, load, request_bodies, wait_routing  # noqa: E402 - serve_latency.py was renamed

BENCH = "serve_rollout"
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))


def two_version_store(prefix: str, second_alias: str | None) -> tuple[Any, dict[str, str]]:
    """A fresh SQLite store with the same small logistic model registered twice: v1 champion, v2 ``second_alias``
    (so a benchmark measures the serving machinery, not a slower second model)."""
    from mlplatform.client import Client
    from mlplatform.datasets.synthetic import FEATURES, TARGET, make_churn
    from mlplatform.learning.sklearn_fit import fit_sklearn_artifact
    from mlplatform.settings import Settings

    home = Path(tempfile.mkdtemp(prefix=prefix))
    artifact = home / "logistic"
    fit_sklearn_artifact(make_churn(3000, seed=7), target=TARGET, features=FEATURES, family="logistic",
                         out_dir=artifact)
    where = {"store_url": f"sqlite:///{home / 'store.db'}", "artifact_uri": str(home / "artifacts"),
             "home": str(home)}
    client = Client(Settings(home=home), store_url=where["store_url"], artifact_uri=where["artifact_uri"])
    client.registry.register("churn", artifact, alias="champion")
    client.registry.register("churn", artifact, alias=second_alias)
    return client, where


def main() -> None:
    import ray
    from ray import serve

    from mlplatform.rollouts import control
    from mlplatform.serving.app import build_app

    client, where = two_version_store("rollout-bench-", "challenger")
    bodies, _ = request_bodies(20_000)
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)])}})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    base = f"http://127.0.0.1:{port}/r/v1/models/churn"
    rows: dict[str, dict[str, Any]] = {}
    try:
        serve.run(build_app({"models": [{"name": "churn", "num_replicas": 1}], **where, "model_num_cpus": 0.5,
                             "ingress_num_cpus": 0.5, "rollout": {"poll_interval_s": 0.5}}),
                  name="rollout", route_prefix="/r")
        wait_routing(base, lambda r: r.get("champion") == 1)
        offset = 0

        def measure(label: str) -> None:
            nonlocal offset  # fresh rows per phase: cache hits would hide the model work
            rows[label] = load(label, f"{base}:predict", bodies[offset:offset + 6000], CONCURRENCY)
            offset += 6000

        measure("direct champion")
        control.start(client, "churn", stage="canary", policy={"min_requests": 10**9, "auto_advance": False})
        wait_routing(base, lambda r: r.get("challenger") == 2)
        measure("canary 95/5")
        control.abort(client, "churn")
        client.registry.set_alias("churn", "shadow", 2)
        wait_routing(base, lambda r: r.get("mirrors") == [2] and r.get("challenger") is None)
        measure("shadow (copy of every request)")
    finally:
        serve.shutdown()
        ray.shutdown()
        client.close()
    print_table(f"rollout: single-row requests, c={CONCURRENCY}", list(rows.values()))
    direct = rows["direct champion"]["req_s"]
    emit_target(BENCH, "routing_cost", 1 - rows["canary 95/5"]["req_s"] / direct, 0.15, higher_is_better=False)
    emit_target(BENCH, "shadow_cost", 1 - rows["shadow (copy of every request)"]["req_s"] / direct, 0.25,
                higher_is_better=False)


if __name__ == "__main__":
    main()
