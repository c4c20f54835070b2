"""Serving throughput and latency against like-for-like baselines (issue 19), in one run:

- baseline "FastAPI, same work": one uvicorn process serving the same registered artifact through ``Predictor`` with
  the same micro-batching as the platform's ``@serve.batch`` (max batch 32, the same wait: a small asyncio batcher);
- baseline "no-op FastAPI": reads the body, answers a constant (pure HTTP overhead, for the record only);
- baseline "bare Serve, same batching": one Serve deployment with the same ``@serve.batch`` calling the same Predictor;
- this platform's endpoint, first in the default mode (Serve's proxy on 127.0.0.1, the model in its own deployment),
  then in the high-throughput mode (Ray restarted with RAY_SERVE_THROUGHPUT_OPTIMIZED=1: the ingress replica answers
  on its own direct-ingress port and serves the model inside it, as ``serve up --high-throughput`` deploys).

Same work means the same model call on the same rows, batched the same way. The platform apps compared with the
baselines run with the prediction log off (the baselines log nothing; the cache misses, every body is distinct); the
demo's full setup (canary 95/5 + a shadow version + the prediction log) is measured beside the plain champion.

Bare Serve and the platform run side by side in each mode and are measured in ROUNDS alternating rounds (bare, V1,
V2 at c=32): platform_vs_bare_serve_same_batching and v2_vs_v1 are the medians of their rounds' ratios, and the other
figures at c=32 use each side's median round, so that one slow stretch of this noisy 2-core machine cannot decide a
ratio.

Load comes from ``wrk`` (Debian package ``wrk``: a C client, so the client's own CPU stays small on 2 cores) with a
Lua script that makes every request body distinct, BENCH_SECONDS per point after a 1 s warm-up. Without wrk the
benchmark refuses to run (`make bench` installs it); only 2xx answers are counted, and any other answer fails the run.

Targets (issue 19): ht_platform_vs_fastapi_same_work >= 0.8 and ht_p99_ms_c32 <= 30 (high-throughput mode, c=32);
platform_vs_bare_serve_same_batching >= 0.8 (default proxy, c=32); demo_setup_vs_plain_champion >= 0.7 (c=32, both
modes, the default mode is the target); p99_ms_c1 <= 25 (default proxy); v2_vs_v1 >= 0.9 (req/s of V2 infer over V1
predict on the same rows, c=32, high-throughput mode, where the proxy does not cap both); non_2xx = 0. Issue 8's
batched_vs_unbatched (>= 2.0, a slow forest) and cache_hit_p99_ms_c1 (< 10) stay, in the default mode.

Reported without a target, to show where the ceilings are: ``bare_serve_vs_fastapi_same_work_direct_ingress`` (what
any Serve app reaches against the FastAPI baseline on this machine: the bound of ht_platform_vs_fastapi_same_work),
``platform_colocated_vs_bare_serve_same_batching`` (the platform behind the default proxy with the model inside
the ingress replica: what the default layout's DeploymentHandle hop costs), ``bare_two_deployments_vs_bare_serve``
(Serve's own composition pattern, an ingress deployment calling a model deployment through a handle, with nothing
of the platform: what the hop costs any Serve app) and ``platform_vs_bare_two_deployments_same_batching`` (the
default layout against that like-for-like two-deployment baseline).

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
SECONDS = float(os.environ.get("BENCH_SECONDS", "6"))
MAX_REQUESTS = int(os.environ.get("BENCH_MAX_REQUESTS", "3000"))
ROUNDS = 3  # alternating rounds behind the ratios of two apps on one Serve (median_ratio)
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


def load(name: str, url: str, bodies: list[bytes], concurrency: int, protocol: str = "v1") -> dict[str, Any]:
    return wrk_load(name, url, bodies, concurrency, protocol)


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


def v2_body(instance: dict[str, Any]) -> dict[str, Any]:
    """The Open Inference Protocol v2 body of one row: one tensor per feature (BYTES for categoricals, FP64 for
    numbers), the columnar form ``tritonclient`` and KServe's client send."""
    from mlplatform.datasets.synthetic import CATEGORICAL_FEATURES

    return {"inputs": [{"name": key, "datatype": "BYTES" if key in CATEGORICAL_FEATURES else "FP64", "shape": [1],
                        "data": [value]} for key, value in instance.items()]}


def wrk_load(name: str, url: str, bodies: list[bytes], concurrency: int, protocol: str = "v1") -> dict[str, Any]:
    """One point with wrk: a 1 s warm-up at the same concurrency, then BENCH_SECONDS measured. Each body keeps its
    row but ``tenure_months`` moves by a per-request step, so no two requests share a cache key; a single body
    (the cache-hit point) is sent unchanged. ``protocol`` "v2" sends the same rows as V2 infer bodies."""
    rows = [json.loads(b) for b in bodies[:400]]
    templates, bases = [], []
    for row in rows:
        instance = row["instances"][0]
        bases.append(float(instance.get("tenure_months") or 0.0))
        instance["tenure_months"] = "__T__"
        body = v2_body(instance) if protocol == "v2" else row
        templates.append("[[" + json.dumps(body).replace('"__T__"', "__T__") + "]]")
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


def median_ratio(results: dict[str, dict[str, Any]], key: str, over: str) -> float:
    """The median over the rounds ``#k`` of ``key``'s req/s over ``over``'s in the same round."""
    values = sorted(results[f"{key} #{k}"]["req_s"] / results[f"{over} #{k}"]["req_s"] for k in range(ROUNDS))
    return values[len(values) // 2]


def pick_median_round(results: dict[str, dict[str, Any]], key: str) -> None:
    """``results[key]``: the round of median req/s among ``key``'s rounds (its p99 is reported with it)."""
    rounds = sorted((results[f"{key} #{k}"] for k in range(ROUNDS)), key=lambda r: r["req_s"])
    results[key] = rounds[len(rounds) // 2]


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


def _rows_answer(prediction: Any, start: int, n: int) -> list[dict[str, Any]]:
    """Per-row results as the platform answers them: label, class probabilities, confidence."""
    out = []
    for i in range(start, start + n):
        proba = None if prediction.probabilities is None else [float(p) for p in prediction.probabilities[i]]
        label = prediction.predictions[i]
        out.append({"prediction": label.item() if hasattr(label, "item") else label, "probabilities": proba,
                    "confidence": None if proba is None else max(proba)})
    return out


def predict_batch(predictor: Any, batch: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """The same work per batch in every baseline: one ``Predictor.predict`` on the batch's rows (the platform's row
    validator and model call), each request getting its own rows' results back."""
    prediction = predictor.predict([row for rows in batch for row in rows])
    answers, start = [], 0
    for rows in batch:
        answers.append(_rows_answer(prediction, start, len(rows)))
        start += len(rows)
    return answers


class MicroBatcher:
    """``@serve.batch`` for a plain asyncio app: up to ``max_batch`` requests, or whatever arrived within ``wait_s``
    of the first, go to ``fn`` in one call; the call runs on the event loop, as the platform's model replica runs
    it (requests that arrive meanwhile wait and form the next batch)."""

    def __init__(self, fn: Any, max_batch: int, wait_s: float) -> None:
        import asyncio

        self.fn, self.max_batch, self.wait_s = fn, max_batch, wait_s
        self.queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def submit(self, item: Any) -> Any:
        import asyncio

        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((item, future))
        return await future

    async def _run(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.wait_s
            while len(batch) < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except TimeoutError:
                    break
            try:
                results = self.fn([item for item, _ in batch])
            except Exception as exc:  # every caller of a failed batch gets the error
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)


# -- the FastAPI baselines (run in a child process so they do not share the client's GIL) --------------------------
def fastapi_child(kind: str, artifact_dir: str, port: int) -> None:
    """``kind`` "batched": the same model and micro-batching as the platform; "noop": HTTP overhead only."""
    import uvicorn
    from fastapi.responses import JSONResponse

    from mlplatform.config.serve import BatchingConfig
    from mlplatform.predictor import Predictor

    api = FastAPI()
    if kind == "noop":
        @api.post("/predict")
        async def noop(request: Request) -> JSONResponse:
            await request.body()
            return JSONResponse({"predictions": []})
    else:
        predictor = Predictor.from_dir(Path(artifact_dir))
        batching = BatchingConfig()  # the platform's defaults: max batch 32, 2 ms wait
        batcher = MicroBatcher(lambda batch: predict_batch(predictor, batch), batching.max_batch_size,
                               batching.batch_wait_timeout_s)

        @api.post("/predict")
        async def predict(request: Request) -> JSONResponse:
            body = await request.json()
            return JSONResponse({"predictions": await batcher.submit(body["instances"])})

    uvicorn.run(api, host="127.0.0.1", port=port, log_level="warning")


def wait_http(url: str, timeout_s: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def _bare_model() -> Any:
    """A bare Serve deployment with the platform's ``@serve.batch`` settings around the same Predictor call: called
    over HTTP (``__call__``) or through a DeploymentHandle (``batched``)."""
    from ray import serve

    from mlplatform.config.serve import BatchingConfig

    batching = BatchingConfig()

    @serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.5})
    class BareModel:
        def __init__(self, path: str) -> None:
            from mlplatform.predictor import Predictor

            self.predictor = Predictor.from_dir(Path(path))

        @serve.batch(max_batch_size=batching.max_batch_size, batch_wait_timeout_s=batching.batch_wait_timeout_s)
        async def batched(self, batch: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
            return predict_batch(self.predictor, batch)

        async def __call__(self, request: Any) -> dict[str, Any]:
            body = await request.json()
            return {"predictions": await self.batched(body["instances"])}

    return BareModel


def bare_serve_app(artifact_dir: str) -> Any:
    """The bare model deployment alone, answering HTTP itself."""
    return _bare_model().bind(artifact_dir)


def bare_two_deployments_app(artifact_dir: str) -> Any:
    """Serve's own composition pattern with nothing of the platform: an ingress deployment reading the body and
    calling the bare model deployment through a DeploymentHandle (the same ``@serve.batch`` around the same
    Predictor call). The like-for-like baseline of the default layout's handle hop."""
    from ray import serve

    @serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.5})
    class BareIngress:
        def __init__(self, model: Any) -> None:
            self.model = model

        async def __call__(self, request: Any) -> dict[str, Any]:
            body = await request.json()
            return {"predictions": await self.model.batched.remote(body["instances"])}

    return BareIngress.bind(_bare_model().bind(artifact_dir))


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
    # address="local": always a fresh Ray of our own; without it ray.init joins whatever cluster another process on
    # this machine last started (/tmp/ray/ray_current_cluster), and serve.shutdown would then stop theirs
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)])}})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return f"http://127.0.0.1:{port}"


def stop_ray() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def wait_routing(url: str, check: Any, timeout_s: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check(httpx.get(url, timeout=5).json().get("routing") or {}):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url}: the app did not pick up the rollout state")


def main() -> None:
    from ray import serve

    from mlplatform.client import Client
    from mlplatform.datasets.synthetic import FEATURES, TARGET, make_churn
    from mlplatform.learning.sklearn_fit import fit_sklearn_artifact
    from mlplatform.predictor import Predictor
    from mlplatform.rollouts import control
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
    # The demo's setup on the same model: v1 champion, v2 in a 95/5 canary, v3 a shadow getting a copy of every
    # request (three copies of one artifact, so the figures measure the machinery, not a slower challenger).
    client.registry.register("demo", fast_dir, alias="champion")
    client.registry.register("demo", fast_dir, alias="challenger")
    client.registry.register("demo", fast_dir, alias="shadow")
    control.start(client, "demo", stage="canary", policy={"min_requests": 10**9, "auto_advance": False})
    # the baselines load the registered artifact (a verified local copy), as the platform's replicas do
    fast_artifact = str(client.registry.fetch(client.registry.resolve("fast@champion")))
    bodies, frames = request_bodies(MAX_REQUESTS)
    rows: list[dict[str, Any]] = []
    results: dict[str, dict[str, Any]] = {}
    ratios: dict[str, float] = {}  # "a / b": the median over ROUNDS alternating rounds of a's req/s over b's

    def measure(key: str, name: str, url: str, concurrency: int, sample: list[bytes] | None = None,
                protocol: str = "v1") -> None:
        rows.append(results.setdefault(key, load(name, url, bodies if sample is None else sample, concurrency,
                                                 protocol)))

    rows.append(in_process("in-process Predictor, 1 row/call", Predictor.from_dir(fast_dir), frames))
    slow_in_process = in_process("in-process forest, 1 row/call", Predictor.from_dir(slow_dir), frames[:50])
    rows.append(slow_in_process)

    for kind, label in (("batched", "FastAPI same work (batch 32, 2 ms)"), ("noop", "FastAPI no-op")):
        port = free_port()
        child = subprocess.Popen([sys.executable, __file__, "--fastapi-child", kind, fast_artifact, str(port)])
        try:
            wait_http(f"http://127.0.0.1:{port}/docs")
            for c in (1, 32):
                measure(f"fastapi {kind} c{c}", label, f"http://127.0.0.1:{port}/predict", c)
        finally:
            child.terminate()
            child.wait(10)

    def platform_args(name: str, batching: bool, colocated: bool, log: bool = False) -> dict[str, Any]:
        return {"models": [{"name": name, "num_replicas": 1}], **where, "model_num_cpus": 0.5,
                "ingress_num_cpus": 0.5, "batching": {"enabled": batching}, "colocate_models": colocated,
                "prediction_log": {"enabled": log}, "rollout": {"poll_interval_s": 0.5}}

    def deploy(args: dict[str, Any], app: str, base: str, mode: str) -> str:
        serve.run(build_app(args), name=app, route_prefix=f"/{app}")
        return f"{base}/{app}" if mode == "default" else direct_ingress_url(app)

    for mode in ("default", "ht"):
        base = start_ray(throughput_optimized=mode == "ht")
        label = "" if mode == "default" else " [direct ingress]"
        # the layouts each mode deploys: the default keeps the model in its own deployment (one handle hop);
        # `serve up --high-throughput` serves it inside the ingress replica (colocate_models)
        colocated = mode == "ht"
        layout = "colocated" if colocated else "separate"
        try:
            # bare Serve and the platform side by side, measured in alternating rounds (bare, V1, V2): a slow
            # stretch of this noisy machine then falls on both sides of a round, and each ratio is the median of
            # its rounds' ratios
            serve.run(bare_serve_app(fast_artifact), name="bare", route_prefix="/bare")
            bare_url = f"{base}/bare" if mode == "default" else direct_ingress_url("bare")
            prefix = deploy(platform_args("fast", True, colocated), "platform", base, mode)
            platform_name = f"platform {layout}, log off{label}"
            measure(f"{mode} bare c1", f"bare Serve, same batching{label}", bare_url, 1)
            measure(f"{mode} platform c1", platform_name, f"{prefix}/v1/models/fast:predict", 1)
            for k in range(ROUNDS):
                measure(f"{mode} bare c32 #{k}", f"bare Serve, same batching{label} (round {k + 1})", bare_url, 32)
                measure(f"{mode} platform c32 #{k}", f"{platform_name} (round {k + 1})",
                        f"{prefix}/v1/models/fast:predict", 32)
                measure(f"{mode} platform v2 c32 #{k}", f"platform {layout}, log off, V2 infer{label} (round {k + 1})",
                        f"{prefix}/v2/models/fast/infer", 32, protocol="v2")
            for key, over in ((f"{mode} platform c32", f"{mode} bare c32"),
                              (f"{mode} platform v2 c32", f"{mode} platform c32")):
                ratios[f"{key} / {over}"] = median_ratio(results, key, over)
            pick_median_round(results, f"{mode} platform c32")
            pick_median_round(results, f"{mode} bare c32")
            pick_median_round(results, f"{mode} platform v2 c32")
            measure(f"{mode} cache hit", f"platform {layout} cache hit{label}", f"{prefix}/v1/models/fast:predict",
                    1, bodies[:1])
            serve.delete("platform")
            serve.delete("bare")
            if mode == "default":  # reported: Serve's own handle hop, without the platform
                serve.run(bare_two_deployments_app(fast_artifact), name="bare2", route_prefix="/bare2")
                measure("default bare two deployments c32", "bare Serve, ingress + model deployment",
                        f"{base}/bare2", 32)
                serve.delete("bare2")

            if mode == "default":  # reported: the same app with the model inside the ingress (no handle hop)
                prefix = deploy(platform_args("fast", True, True), "platform-colocated", base, mode)
                measure("default platform colocated c32", "platform colocated, log off",
                        f"{prefix}/v1/models/fast:predict", 32)
                serve.delete("platform-colocated")

            prefix = deploy(platform_args("demo", True, colocated, log=True), "demo", base, mode)
            wait_routing(f"{prefix}/v1/models/demo",
                         lambda r: r.get("challenger") == 2 and r.get("mirrors") == [3])
            measure(f"{mode} demo c32", f"platform {layout}, canary 95/5 + shadow + log{label}",
                    f"{prefix}/v1/models/demo:predict", 32)
            serve.delete("demo")

            if mode == "default":  # issue 8's batching benefit on a slow model, behind the proxy
                for batching in (True, False):
                    app = f"slow-{'b' if batching else 'u'}"
                    prefix = deploy(platform_args("slow", batching, colocated), app, base, mode)
                    kind = "batched" if batching else "unbatched"
                    measure(f"{mode} forest {kind}", f"platform {layout} forest {kind}",
                            f"{prefix}/v1/models/slow:predict", 32)
                    serve.delete(app)
        finally:
            stop_ray()
    client.close()

    print_table("serving: single-row requests (c = concurrent clients)", rows)
    print(f"forest single-row in-process p50 {slow_in_process['p50_ms']:.1f} ms (needs >= 5 ms)")
    print("modes: default = Serve's proxy on 127.0.0.1, the model in its own deployment (one DeploymentHandle hop); "
          "direct ingress = RAY_SERVE_THROUGHPUT_OPTIMIZED=1, each ingress replica answers on its own port "
          "(30000-31000), and `serve up --high-throughput` serves the model inside it (colocated: no hop at all). "
          "'log off': the platform apps compared with the baselines do not write the prediction log (the "
          "baselines log nothing); the demo setup writes it.")
    req_s = {key: value["req_s"] for key, value in results.items()}
    emit_target(BENCH, "ht_platform_vs_fastapi_same_work", req_s["ht platform c32"] / req_s["fastapi batched c32"],
                0.8)
    emit_target(BENCH, "ht_p99_ms_c32", results["ht platform c32"]["p99_ms"], 30, higher_is_better=False)
    emit_target(BENCH, "platform_vs_bare_serve_same_batching", ratios["default platform c32 / default bare c32"],
                0.8)
    emit_target(BENCH, "demo_setup_vs_plain_champion", req_s["default demo c32"] / req_s["default platform c32"],
                0.7)
    emit_target(BENCH, "p99_ms_c1", results["default platform c1"]["p99_ms"], 25, higher_is_better=False)
    emit_target(BENCH, "v2_vs_v1", ratios["ht platform v2 c32 / ht platform c32"], 0.9)
    emit_target(BENCH, "batched_vs_unbatched", req_s["default forest batched"] / req_s["default forest unbatched"],
                2.0)
    emit_target(BENCH, "cache_hit_p99_ms_c1", results["default cache hit"]["p99_ms"], 10, higher_is_better=False)
    # Reported beside the targets: the same figures in the other mode, and the pure HTTP overhead.
    for metric, value in (
        ("ht_demo_setup_vs_plain_champion", req_s["ht demo c32"] / req_s["ht platform c32"]),
        ("default_v2_vs_v1", ratios["default platform v2 c32 / default platform c32"]),
        ("ht_platform_vs_bare_serve_same_batching", ratios["ht platform c32 / ht bare c32"]),
        ("bare_serve_vs_fastapi_same_work_direct_ingress", req_s["ht bare c32"] / req_s["fastapi batched c32"]),
        ("platform_colocated_vs_bare_serve_same_batching", req_s["default platform colocated c32"]
         / req_s["default bare c32"]),
        ("bare_two_deployments_vs_bare_serve", req_s["default bare two deployments c32"]
         / req_s["default bare c32"]),
        ("platform_vs_bare_two_deployments_same_batching", req_s["default platform c32"]
         / req_s["default bare two deployments c32"]),
        ("ht_p99_ms_c1", results["ht platform c1"]["p99_ms"]),
        ("ht_bare_serve_p99_ms_c32", results["ht bare c32"]["p99_ms"]),
        ("ht_cache_hit_p99_ms_c1", results["ht cache hit"]["p99_ms"]),
        ("bare_serve_p99_ms_c1", results["default bare c1"]["p99_ms"]),
        ("fastapi_same_work_vs_noop", req_s["fastapi batched c32"] / req_s["fastapi noop c32"]),
    ):
        print(json.dumps({"benchmark": BENCH, "metric": metric, "value": round(value, 4), "target": None,
                          "ok": True}))
    if not emit_target(BENCH, "non_2xx", sum(NON_2XX.values()), 0, higher_is_better=False):
        sys.exit(f"serve_load: non-2xx answers or socket errors: { {k: v for k, v in NON_2XX.items() if v} }")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--fastapi-child":
        fastapi_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1:] == ["--rollout"]:  # issue 9: req/s with a 95/5 split and with a shadow vs direct
        import serve_rollout

        serve_rollout.main()
    else:
        main()
