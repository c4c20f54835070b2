"""Serving throughput and latency in one run: the in-process model (the limit), a plain async FastAPI + uvicorn app
with the same model, a bare Ray Serve deployment written the way Ray's docs show, and this platform's endpoint with
batching on and off, first in the default mode (Serve's proxy on 127.0.0.1), then in the high-throughput mode (Ray
restarted with RAY_SERVE_THROUGHPUT_OPTIMIZED=1: each ingress replica answers on its own direct-ingress port).

Load comes from ``wrk`` (Debian package ``wrk``: a C client, so the client's own CPU stays small on 2 cores) with a
Lua script that makes every request body distinct (no cache hits unless a row repeats on purpose), bounded by
BENCH_SECONDS per point. Without wrk the benchmark refuses to run (`make bench` installs it); only 2xx answers are
counted, and any other answer fails the run (metric ``non_2xx``, target 0).

Targets (issue 8): platform_vs_bare_serve >= 0.8 (default mode, single-row req/s at c=32), ht_platform_vs_fastapi
>= 0.5 (high-throughput mode, c=32, over plain FastAPI), ht_p99_ms_c32 < 50, batched_vs_unbatched >= 2.0 (c=32, a
random forest whose single-row latency is >= 5 ms), p99_ms_c1 < 50 (default mode), cache_hit_p99_ms_c1 < 10.

``--rollout`` runs the rollout benchmark instead (benchmarks/serve_rollout.py: routing_cost, shadow_cost).
"""

from __future__ import annotations

import json
import os
import shutil
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
NON_2XX: dict[str, int] = {}  # non-2xx answers and socket errors per measured point


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def summary(name: str, concurrency: int, latencies: list[float], elapsed: float, errors: int) -> dict[str, Any]:
    ordered = sorted(latencies) or [float("nan")]
    return {"target": name, "c": concurrency, "requests": len(latencies), "errors": errors,
            "req_s": len(latencies) / elapsed, "p50_ms": ordered[len(ordered) // 2] * 1000,
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000}


def load(name: str, url: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    return wrk_load(name, url, bodies, concurrency)


def require_wrk() -> None:
    """The load comes from wrk only: a Python client caps the load on 2 cores (plain FastAPI at c=32 reached
    242 req/s from httpx, ~4,000 from wrk), so a run without it would measure the client (issue 19)."""
    if shutil.which("wrk") is None:
        sys.exit("serve_load: wrk is not installed (Debian package wrk; `make bench` installs it when missing). "
                 "Refusing to measure with a Python client.")


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local templates = {%(templates)s}
local bases = {%(bases)s}
local unique = %(unique)s
local next_thread = 0
local n = 0
function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
end
function request()
  n = n + 1
  local i = (n %% #templates) + 1
  local value = bases[i]
  if unique then value = value + (n * 16 + tid) * 1e-7 end
  local body = string.gsub(templates[i], "__T__", string.format("%%.7f", value))
  return wrk.format(nil, nil, nil, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "status_errors": %%d, ' ..
    '"socket_errors": %%d, "p50_us": %%d, "p99_us": %%d}\\n', summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_load(name: str, url: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    """One point with wrk: a 1 s warm-up at the same concurrency, then BENCH_SECONDS measured. Each body keeps its
    row but ``tenure_months`` moves by a per-request step, so no two requests share a cache key; a single body
    (the cache-hit point) is sent unchanged."""
    rows = [json.loads(b) for b in bodies[:400]]
    templates, bases = [], []
    for row in rows:
        instance = row["instances"][0]
        bases.append(float(instance.get("tenure_months") or 0.0))
        instance["tenure_months"] = "__T__"
        templates.append("[[" + json.dumps(row).replace('"__T__"', "__T__") + "]]")
    script = _WRK_SCRIPT % {"templates": ",".join(templates), "bases": ",".join(map(repr, bases)),
                            "unique": "true" if len(bodies) > 1 else "false"}
    threads = min(2, concurrency)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        base = ["wrk", f"-t{threads}", f"-c{concurrency}", "-s", handle.name, "--timeout", "10s"]
        subprocess.run([*base, "-d1s", url], capture_output=True, text=True, check=True)
        out = subprocess.run([*base, f"-d{max(1, round(SECONDS))}s", url], capture_output=True, text=True,
                             check=True).stdout
    finally:
        os.unlink(handle.name)
    line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary for {name}: {out[-500:]}")
    data = json.loads(line.removeprefix("WRKJSON "))
    seconds = data["duration_us"] / 1e6
    # wrk counts every answer in requests, a 503 as much as a 200: only 2xx answers count, and any other one (wrk's
    # status errors are >= 400) or socket error fails the run (NON_2XX, checked at the end of main)
    errors = data["status_errors"] + data["socket_errors"]
    NON_2XX[name] = NON_2XX.get(name, 0) + errors
    return {"target": name, "c": concurrency, "requests": data["requests"] - errors,
            "errors": errors, "req_s": (data["requests"] - errors) / seconds,
            "p50_ms": data["p50_us"] / 1000, "p99_ms": data["p99_us"] / 1000, "client": "wrk"}


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
    return {**summary(name, 1, latencies, time.perf_counter() - started, 0), "client": "in-process"}


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


def direct_ingress_url(app_name: str) -> str:
    """The direct-ingress address of an app's ingress replica (throughput-optimized mode), from the controller's
    target groups: what HAProxy would route to."""
    import ray
    from ray.serve.context import _get_global_client

    controller = _get_global_client()._controller
    for group in ray.get(controller.get_target_groups.remote(app_name)):
        if group.app_name == app_name and group.targets:
            return f"http://127.0.0.1:{group.targets[0].port}{group.route_prefix.rstrip('/')}"
    raise RuntimeError(f"no direct-ingress target for app {app_name}")


def start_ray(throughput_optimized: bool) -> str:
    """A fresh local Ray (+ Serve on 127.0.0.1); Serve's controller and replicas read the throughput switch when
    they start, so the mode is chosen here, before Ray exists."""
    import ray
    from ray import serve

    if throughput_optimized:
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
        # A direct-ingress replica drains for 30 s before it stops (so a load balancer can take it out); the
        # benchmark deletes four apps in a row and sends nothing during a delete.
        os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] = "2"
    else:
        os.environ.pop("RAY_SERVE_THROUGHPUT_OPTIMIZED", None)
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)])}})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return f"http://127.0.0.1:{port}"


def stop_ray() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def main() -> None:
    from ray import serve

    from mlplatform.client import Client
    from mlplatform.datasets.synthetic import FEATURES, TARGET, make_churn
    from mlplatform.learning.sklearn_fit import fit_sklearn_artifact
    from mlplatform.predictor import Predictor
    from mlplatform.serving.app import build_app
    from mlplatform.settings import Settings

    require_wrk()
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
    results: dict[str, dict[str, Any]] = {}

    def measure(key: str, name: str, url: str, concurrency: int, sample: list[bytes] | None = None) -> None:
        rows.append(results.setdefault(key, load(name, url, bodies if sample is None else sample, concurrency)))

    fast, slow = Predictor.from_dir(fast_dir), Predictor.from_dir(slow_dir)
    rows.append(in_process("in-process fast", fast, frames))
    slow_in_process = in_process("in-process slow (forest)", slow, frames[:50])
    rows.append(slow_in_process)

    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--fastapi-child", str(fast_dir), str(port)])
    try:
        wait_http(f"http://127.0.0.1:{port}/docs")
        for c in (1, 32):
            measure(f"fastapi c{c}", "plain FastAPI", f"http://127.0.0.1:{port}/predict", c)
    finally:
        child.terminate()
        child.wait(10)

    def platform_args(name: str, batching: bool, colocated: bool) -> dict[str, Any]:
        return {"models": [{"name": name, "num_replicas": 1}], **where, "model_num_cpus": 0.5,
                "ingress_num_cpus": 0.5, "batching": {"enabled": batching}, "colocate_models": colocated}

    for mode in ("default", "ht"):
        base = start_ray(throughput_optimized=mode == "ht")
        label = "" if mode == "default" else " [direct ingress]"
        try:
            serve.run(bare_serve_app(str(fast_dir)), name="bare", route_prefix="/bare")
            url = f"{base}/bare" if mode == "default" else direct_ingress_url("bare")
            for c in (1, 32):
                measure(f"{mode} bare c{c}", f"bare Serve{label}", url, c)
            serve.delete("bare")

            # The layouts each mode deploys: the default keeps the model in its own deployment (handle hop);
            # `serve up --high-throughput` serves it inside the ingress replica (colocate_models).
            colocated = mode == "ht"
            layout = "colocated" if colocated else "separate"
            serve.run(build_app(platform_args("fast", True, colocated)), name="platform", route_prefix="/p")
            prefix = f"{base}/p" if mode == "default" else direct_ingress_url("platform")
            url = f"{prefix}/v1/models/fast:predict"
            for c in (1, 32):
                measure(f"{mode} platform c{c}", f"platform {layout} (batched){label}", url, c)
            measure(f"{mode} cache hit", f"platform {layout} cache hit{label}", url, 1, bodies[:1])
            serve.delete("platform")
            if mode == "default":  # the other layout behind the proxy, for the record
                serve.run(build_app(platform_args("fast", True, True)), name="colo", route_prefix="/colo")
                url = f"{base}/colo/v1/models/fast:predict"
                measure("default colocated c32", "platform colocated (batched)", url, 32)
                measure("default colocated cache hit", "platform colocated cache hit", url, 1, bodies[:1])
                serve.delete("colo")

            for batching in (True, False):
                app = f"slow-{'b' if batching else 'u'}"
                serve.run(build_app(platform_args("slow", batching, colocated)), name=app, route_prefix=f"/{app}")
                prefix = f"{base}/{app}" if mode == "default" else direct_ingress_url(app)
                name = f"platform {layout} forest {'batched' if batching else 'unbatched'}{label}"
                measure(f"{mode} forest {'batched' if batching else 'unbatched'}", name,
                        f"{prefix}/v1/models/slow:predict", 32)
                serve.delete(app)
        finally:
            stop_ray()
    client.close()

    print_table("serving: single-row requests (c = concurrent clients)", rows)
    print(f"forest single-row in-process p50 {slow_in_process['p50_ms']:.1f} ms (needs >= 5 ms)")
    print("modes: default = Serve's proxy on 127.0.0.1, the model in its own deployment (one DeploymentHandle hop); "
          "direct ingress = RAY_SERVE_THROUGHPUT_OPTIMIZED=1, each ingress replica answers on its own port "
          "(30000-31000), and `serve up --high-throughput` serves the model inside it (colocated: no hop at all)")
    emit_target(BENCH, "platform_vs_bare_serve",
                results["default platform c32"]["req_s"] / results["default bare c32"]["req_s"], 0.8)
    emit_target(BENCH, "ht_platform_vs_fastapi",
                results["ht platform c32"]["req_s"] / results["fastapi c32"]["req_s"], 0.5)
    emit_target(BENCH, "ht_p99_ms_c32", results["ht platform c32"]["p99_ms"], 50, higher_is_better=False)
    emit_target(BENCH, "batched_vs_unbatched", results["default forest batched"]["req_s"]
                / results["default forest unbatched"]["req_s"], 2.0)
    emit_target(BENCH, "p99_ms_c1", results["default platform c1"]["p99_ms"], 50, higher_is_better=False)
    emit_target(BENCH, "cache_hit_p99_ms_c1", results["default cache hit"]["p99_ms"], 10, higher_is_better=False)
    # Reported beside the targets: the same figures in the other mode.
    for metric, value in (
        ("ht_batched_vs_unbatched", results["ht forest batched"]["req_s"] / results["ht forest unbatched"]["req_s"]),
        ("ht_cache_hit_p99_ms_c1", results["ht cache hit"]["p99_ms"]),
        ("ht_p99_ms_c1", results["ht platform c1"]["p99_ms"]),
        ("bare_serve_p99_ms_c1", results["default bare c1"]["p99_ms"]),
        ("colocated_cache_hit_p99_ms_c1", results["default colocated cache hit"]["p99_ms"]),
        ("colocated_vs_bare_serve", results["default colocated c32"]["req_s"] / results["default bare c32"]["req_s"]),
    ):
        print(json.dumps({"benchmark": BENCH, "metric": metric, "value": round(value, 4), "target": None,
                          "ok": True}))
    if not emit_target(BENCH, "non_2xx", sum(NON_2XX.values()), 0, higher_is_better=False):
        sys.exit(f"serve_load: non-2xx answers or socket errors: { {k: v for k, v in NON_2XX.items() if v} }")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--fastapi-child":
        fastapi_child(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:] == ["--rollout"]:  # issue 9: req/s with a 95/5 split and with a shadow vs direct
        import serve_rollout

        serve_rollout.main()
    else:
        main()
