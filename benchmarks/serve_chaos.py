"""Serving that contains failures (issue 16): scenarios (a)-(d) at c=32 for a fixed number of requests each, on
one app (two model replicas, champion v1, v2 the shadow or challenger; the same small logistic model, so a
healthy shadow costs only the mirroring machinery). TEST-ONLY fault injection makes v2 raise inside its model call.

JSON lines (targets): champion_errors_with_failing_shadow 0, champion_errors_with_failing_canary 0,
errors_replica_kill_ratio <= 0.01, recovery_s_replica_kill <= 30 (kill until the deployment runs two replicas
again and answers), errors_version_swap 0, throughput_ratio_shadow_on >= 0.75 (healthy shadow / no shadow).

BENCH_REQUESTS (default 1500) per scenario, BENCH_CONCURRENCY (default 32).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT / "platform"), str(ROOT)]
from _report import emit_target, print_table  # noqa: E402
from serve_load import free_port, request_bodies  # noqa: E402
from serve_rollout import two_version_store  # noqa: E402

BENCH = "serve_chaos"
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "1500"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
APP = "chaos"


async def _fire(url: str, bodies: list[bytes], keys: list[str]) -> tuple[list[tuple[float, int, str]], float]:
    """Exactly len(bodies) requests at CONCURRENCY; (finish time, status, routing key) each, and the elapsed time."""
    import httpx

    out: list[tuple[float, int, str]] = []
    todo = iter(range(len(bodies)))
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    async def worker(http: httpx.AsyncClient) -> None:
        for i in todo:
            try:
                response = await http.post(url, content=bodies[i], headers={
                    "Content-Type": "application/json", "X-User-ID": keys[i]})
                status = response.status_code
            except httpx.HTTPError:
                status = 599  # the connection failed: an error like any other
            out.append((time.monotonic(), status, keys[i]))

    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*[worker(http) for _ in range(CONCURRENCY)])
        return out, time.perf_counter() - started


class Phase:
    def __init__(self, url: str, bodies: list[bytes]) -> None:
        self.url, self.bodies, self.offset, self.rows = url, bodies, 0, {}

    def run(self, label: str, during: Callable[[], None] | None = None) -> list[tuple[float, int, str]]:
        bodies = self.bodies[self.offset:self.offset + REQUESTS]  # fresh rows per phase: no cache hits
        keys = [f"{label}-{i}" for i in range(len(bodies))]
        self.offset += REQUESTS
        thread = threading.Thread(target=during) if during else None
        if thread:
            thread.start()
        results, elapsed = asyncio.run(_fire(self.url, bodies, keys))
        if thread:
            thread.join()
        errors = sum(status != 200 for _, status, _ in results)
        failed = Counter(status for _, status, _ in results if status != 200)
        self.rows[label] = {"scenario": label, "requests": len(results), "errors": errors,
                            "req_s": len(results) / elapsed, "error_statuses": dict(failed) or "-"}
        return results


def wait(check: Callable[[], Any], timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = check()
        except Exception:
            found = None
        if found:
            return found
        time.sleep(0.2)
    raise RuntimeError("condition not met")


def main() -> None:
    import httpx
    import ray
    from ray import serve

    from mlplatform.rollouts import control
    from mlplatform.rollouts.routing import CHALLENGER, assign
    from mlplatform.serving.app import build_app
    from mlplatform.serving.names import deployment_name

    client, where = two_version_store("chaos-bench-", None)
    bodies, _ = request_bodies(REQUESTS * 8)
    from ray.cluster_utils import Cluster

    # a private cluster on free ports, as the tests start theirs (never the default ports another Ray may hold)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "include_dashboard": False})
    ray.init(address=cluster.address, log_to_driver=False, runtime_env={"env_vars": {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)])}})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    base = f"http://127.0.0.1:{port}/{APP}"

    def routing() -> dict[str, Any]:
        return httpx.get(f"{base}/v1/models/churn", timeout=5).json().get("routing") or {}

    def replicas() -> list[str]:
        return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                      if "SERVE_REPLICA" in a["name"] and f"{APP}#{deployment_name('churn')}#" in a["name"])

    def faults(rate: float) -> None:
        """Set v2's fault rate on every model replica (the handle picks replicas: call until each answered)."""
        handle = serve.get_deployment_handle(deployment_name("churn"), app_name=APP)
        seen: set[str] = set()
        for _ in range(200):
            seen |= {r.result() for r in [handle.inject_faults.remote(rates={2: rate}) for _ in range(8)]}
            if len(seen) >= len(replicas()):
                return
        raise RuntimeError(f"fault rates reached only replicas {sorted(seen)}")

    try:
        serve.run(build_app({"models": [{"name": "churn", "num_replicas": 2}], **where, "model_num_cpus": 0.25,
                             "ingress_num_cpus": 0.25, "rollout": {"poll_interval_s": 0.5,
                                                                   "fault_injection": {2: 0.0}}}),
                  name=APP, route_prefix=f"/{APP}")
        wait(lambda: routing().get("champion") == 1)
        phase = Phase(f"{base}/v1/models/churn:predict", bodies)
        phase.run("warm-up")  # connections, replicas' first batches: not part of any comparison
        phase.run("champion alone")

        client.registry.set_alias("churn", "shadow", 2)
        wait(lambda: routing().get("mirrors") == [2])
        phase.run("healthy shadow")
        faults(1.0)
        phase.run("failing shadow")
        faults(0.0)
        client.registry.delete_alias("churn", "shadow")
        wait(lambda: routing().get("mirrors") == [])

        faults(1.0)
        client.registry.set_alias("churn", "challenger", 2)
        state = control.start(client, "churn", stage="canary", actor="bench",
                              policy={"min_requests": 10**9, "auto_advance": False})
        wait(lambda: routing().get("challenger") == 2)
        canary = phase.run("failing canary 5%")
        champion_errors = sum(1 for _, status, key in canary
                              if status != 200 and assign(f"h:{key}", state.salt, 5.0) != CHALLENGER)
        control.abort(client, "churn")
        wait(lambda: routing().get("challenger") is None)
        faults(0.0)

        killed: dict[str, float] = {}

        def kill_one() -> None:
            time.sleep(1.0)
            victim = replicas()[0]
            killed["at"] = time.monotonic()
            ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
            wait(lambda: len(replicas()) == 2 and victim not in replicas()
                 and httpx.get(f"{base}/v1/models/churn", timeout=5).status_code == 200, timeout_s=120)
            killed["recovered"] = time.monotonic()

        kill = phase.run("replica killed", kill_one)

        def swap() -> None:
            time.sleep(1.0)
            client.registry.promote("churn", actor="bench", reason="chaos benchmark")

        phase.run("version swap", swap)
        wait(lambda: routing().get("champion") == 2)
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
        client.close()
    rows = phase.rows
    print_table(f"serving chaos: {REQUESTS} single-row requests per scenario, c={CONCURRENCY}", list(rows.values()))
    emit_target(BENCH, "champion_errors_with_failing_shadow", rows["failing shadow"]["errors"], 0,
                higher_is_better=False)
    emit_target(BENCH, "champion_errors_with_failing_canary", champion_errors, 0, higher_is_better=False)
    emit_target(BENCH, "errors_replica_kill_ratio", rows["replica killed"]["errors"] / len(kill), 0.01,
                higher_is_better=False)
    emit_target(BENCH, "recovery_s_replica_kill", killed["recovered"] - killed["at"], 30, higher_is_better=False)
    emit_target(BENCH, "errors_version_swap", rows["version swap"]["errors"], 0, higher_is_better=False)
    emit_target(BENCH, "throughput_ratio_shadow_on",
                rows["healthy shadow"]["req_s"] / rows["champion alone"]["req_s"], 0.75)


if __name__ == "__main__":
    main()
