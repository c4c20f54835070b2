"""Serving throughput and latency in one run: the in-process model (the limit), a plain async FastAPI + uvicorn app
with the same model, a bare Ray Serve deployment written the way Ray's docs show, and this platform's endpoint
(default proxy mode) with batching on and off. Load comes from an asyncio httpx client on 127.0.0.1, bounded by
request count and time (BENCH_SECONDS, BENCH_MAX_REQUESTS).

Targets (issue 8): platform_vs_bare_serve >= 0.8 (single-row req/s at c=32), p99_ms_c1 < 50, cache_hit_p99_ms_c1
< 10, batched_vs_unbatched >= 2.0 (c=32, a random forest whose single-row latency is >= 5 ms). The high-throughput
mode targets (ht_platform_vs_fastapi, ht_p99_ms_c32) are not measured: that mode is not implemented yet.

``--rollout`` runs the rollout benchmark instead (benchmarks/serve_rollout.py: routing_cost, shadow_cost).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT / "platform"), str(ROOT)]
from _report import emit_target, print_table  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402 - module level: FastAPI resolves the route's annotations here

BENCH = "serve_load"
SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))
MAX_REQUESTS = int(os.environ.get("BENCH_MAX_REQUESTS", "3000"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def summary(name: str, concurrency: int, latencies: list[float], elapsed: float, errors: int) -> dict[str, Any]:
    ordered = sorted(latencies) or [float("nan")]
    return {"target": name, "c": concurrency, "requests": len(latencies), "errors": errors,
            "req_s": len(latencies) / elapsed, "p50_ms": ordered[len(ordered) // 2] * 1000,
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000}


async def _load(url: str, bodies: list[bytes], concurrency: int) -> tuple[list[float], float, int]:
    import httpx

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + SECONDS
    counter = iter(range(MAX_REQUESTS))
    headers = {"Content-Type": "application/json"}

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            if time.perf_counter() > deadline:
                return
            started = time.perf_counter()
            response = await http.post(url, content=bodies[i % len(bodies)], headers=headers)
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        await http.post(url, content=bodies[0], headers=headers)  # warm the connection and the model
        started = time.perf_counter()
        await asyncio.gather(*[worker(http) for _ in range(concurrency)])
        return latencies, time.perf_counter() - started, errors


def load(name: str, url: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    latencies, elapsed, errors = asyncio.run(_load(url, bodies, concurrency))
    return summary(name, concurrency, latencies, elapsed, errors)


def in_process(name: str, predictor: Any, frames: list[Any]) -> dict[str, Any]:
    latencies = []
    deadline = time.perf_counter() + SECONDS
    started = time.perf_counter()
    for i in range(MAX_REQUESTS):
        if time.perf_counter() > deadline:
            break
        t = time.perf_counter()
        predictor.predict(frames[i % len(frames)])
        latencies.append(time.perf_counter() - t)
    return summary(name, 1, latencies, time.perf_counter() - started, 0)


def request_bodies(n: int) -> tuple[list[bytes], list[Any]]:
    """Distinct single-row bodies (so the platform's cache does not answer) and the same rows as DataFrames."""
    import json
    import math

    import pandas as pd

    from mlplatform.datasets.synthetic import FEATURES, make_churn

    df = make_churn(n, seed=11)[FEATURES]
    df["tenure_months"] = df["tenure_months"] + pd.Series(range(n), index=df.index) / 1e4
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in df.to_dict(orient="records")]
    return [json.dumps({"instances": [r]}).encode() for r in rows], [df.iloc[[i]] for i in range(min(n, 500))]


# -- the plain FastAPI baseline (run in a child process so it does not share the client's GIL) ---------------------
def fastapi_child(artifact_dir: str, port: int) -> None:
    import pandas as pd
    import uvicorn

    from mlplatform.predictor import Predictor

    predictor = Predictor.from_dir(Path(artifact_dir))
    api = FastAPI()

    @api.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        body = await request.json()
        result = predictor.predict(pd.DataFrame(body["instances"]))
        return {"predictions": [int(p) for p in result.predictions]}

    uvicorn.run(api, host="127.0.0.1", port=port, log_level="warning")


def wait_http(url: str, timeout_s: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def bare_serve_app(artifact_dir: str) -> Any:
    import pandas as pd
    from ray import serve

    @serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.5})
    class BareModel:
        def __init__(self, path: str) -> None:
            from mlplatform.predictor import Predictor

            self.predictor = Predictor.from_dir(Path(path))

        async def __call__(self, request: Any) -> dict[str, Any]:
            body = await request.json()
            result = self.predictor.predict(pd.DataFrame(body["instances"]))
            return {"predictions": [int(p) for p in result.predictions]}

    return BareModel.bind(artifact_dir)


def main() -> None:
    import ray
    from ray import serve

    from mlplatform.client import Client
    from mlplatform.datasets.synthetic import FEATURES, TARGET, make_churn
    from mlplatform.predictor import Predictor
    from mlplatform.serving.app import build_app
    from mlplatform.settings import Settings
    from mlplatform.training.sklearn_fit import fit_sklearn_artifact

    home = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    train = make_churn(3000, seed=7)
    fast_dir, slow_dir = home / "fast", home / "slow"
    fit_sklearn_artifact(train, target=TARGET, features=FEATURES, family="logistic", out_dir=fast_dir)
    fit_sklearn_artifact(train, target=TARGET, features=FEATURES, family="random_forest", out_dir=slow_dir,
                         params={"n_estimators": 300})
    where = {"store_url": f"sqlite:///{home / 'store.db'}", "artifact_uri": str(home / "artifacts"),
             "home": str(home)}
    client = Client(Settings(home=home), store_url=where["store_url"], artifact_uri=where["artifact_uri"])
    client.registry.register("fast", fast_dir, alias="champion")
    client.registry.register("slow", slow_dir, alias="champion")
    bodies, frames = request_bodies(MAX_REQUESTS)
    rows: list[dict[str, Any]] = []

    fast, slow = Predictor.from_dir(fast_dir), Predictor.from_dir(slow_dir)
    rows.append(in_process("in-process fast", fast, frames))
    slow_in_process = in_process("in-process slow (forest)", slow, frames[:50])
    rows.append(slow_in_process)

    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--fastapi-child", str(fast_dir), str(port)])
    try:
        wait_http(f"http://127.0.0.1:{port}/docs")
        for c in (1, 32):
            rows.append(load("plain FastAPI", f"http://127.0.0.1:{port}/predict", bodies, c))
    finally:
        child.terminate()
        child.wait(10)

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)])}})
    serve_port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
    base = f"http://127.0.0.1:{serve_port}"
    results: dict[str, dict[str, Any]] = {}
    try:
        serve.run(bare_serve_app(str(fast_dir)), name="bare", route_prefix="/bare")
        for c in (1, 32):
            rows.append(results.setdefault(f"bare c{c}", load("bare Serve", f"{base}/bare", bodies, c)))
        serve.delete("bare")

        def platform_args(name: str, batching: bool) -> dict[str, Any]:
            return {"models": [{"name": name, "num_replicas": 1}], **where, "model_num_cpus": 0.5,
                    "ingress_num_cpus": 0.5, "batching": {"enabled": batching}}

        serve.run(build_app(platform_args("fast", True)), name="platform", route_prefix="/p")
        url = f"{base}/p/v1/models/fast:predict"
        for c in (1, 32):
            rows.append(results.setdefault(f"platform c{c}", load("platform (batched)", url, bodies, c)))
        rows.append(results.setdefault("cache hit", load("platform cache hit", url, bodies[:1], 1)))
        serve.delete("platform")

        for batching in (True, False):
            app = f"slow-{'b' if batching else 'u'}"
            serve.run(build_app(platform_args("slow", batching)), name=app, route_prefix=f"/{app}")
            label = f"platform forest {'batched' if batching else 'unbatched'}"
            rows.append(results.setdefault(label, load(label, f"{base}/{app}/v1/models/slow:predict", bodies, 32)))
            serve.delete(app)
    finally:
        serve.shutdown()
        ray.shutdown()
        client.close()

    print_table("serving: single-row requests", rows)
    print("high-throughput mode (direct ingress / HAProxy): not measured, not implemented yet")
    print(f"forest single-row in-process p50 {slow_in_process['p50_ms']:.1f} ms (needs >= 5 ms)")
    emit_target(BENCH, "platform_vs_bare_serve", results["platform c32"]["req_s"] / results["bare c32"]["req_s"], 0.8)
    emit_target(BENCH, "p99_ms_c1", results["platform c1"]["p99_ms"], 50, higher_is_better=False)
    emit_target(BENCH, "cache_hit_p99_ms_c1", results["cache hit"]["p99_ms"], 10, higher_is_better=False)
    emit_target(BENCH, "batched_vs_unbatched", results["platform forest batched"]["req_s"]
                / results["platform forest unbatched"]["req_s"], 2.0)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--fastapi-child":
        fastapi_child(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:] == ["--rollout"]:  # issue 9: req/s with a 95/5 split and with a shadow vs direct
        import serve_rollout

        serve_rollout.main()
    else:
        main()
