"""``make demo``: the whole life of a model on generated data, through the same commands a user runs.

Each stage prints the ``mlplatform`` command it runs, so the demo doubles as a tour. It is re-runnable (every run
registers new versions) and ``--down`` stops what it started (Serve apps and the local Ray head).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from rich.console import Console

from mlplatform.datasets.synthetic import make_churn
from mlplatform.settings import get_settings

console = Console(soft_wrap=True)
MODEL = "churn"
OUT = Path("demo_output")
PORT = int(os.environ.get("MLPLATFORM_DEMO_PORT", "8000"))


class DemoFailed(RuntimeError):
    pass


_STAGES: list[tuple[str, float]] = []


def step(title: str) -> None:
    _STAGES.append((title, time.monotonic()))
    console.rule(f"[bold cyan]{title}")


def stage_seconds() -> dict[str, float]:
    ends = [t for _, t in _STAGES[1:]] + [time.monotonic()]
    return {title: round(end - start, 1) for (title, start), end in zip(_STAGES, ends, strict=True)}


def _bin(name: str) -> str:
    # The venv's own executables, so that `make demo` works without activating the venv.
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def mlplatform(*args: str, as_json: bool = False, allow: tuple[int, ...] = (0,)) -> Any:
    command = [_bin("mlplatform"), *args, *(["--json"] if as_json else [])]
    console.print(f"[dim]$ {shlex.join(['mlplatform', *args])}[/dim]")
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode not in allow:
        raise DemoFailed(f"`{shlex.join(command[1:])}` exited {result.returncode}:\n{result.stderr[-2000:]}")
    if as_json:
        return json.loads(result.stdout) if result.stdout.strip() else None
    if result.stdout.strip():
        console.print(result.stdout.rstrip())
    return result.returncode


def start_ray(in_process: bool) -> str:
    """A Ray head with the dashboard; returns the dashboard URL. Every command the demo runs joins it through
    RAY_ADDRESS.

    By default a ``ray start --head`` cluster (reused when one is up) that outlives the demo, so the endpoint and the
    dashboard stay up for you; ``in_process`` starts a private one that ends with the demo (the e2e test)."""
    if in_process:
        # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
        import ray

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        # its own temp dir: a job's supervisor hands its driver the newest cluster of its temp dir, which in the
        # shared /tmp/ray may be another process's Ray (the retrain job then ran, and failed, there)
        temp_dir = tempfile.mkdtemp(prefix="ray-demo-", dir="/tmp")
        context: Any = ray.init(address="local", num_cpus=4, include_dashboard=True, dashboard_host="127.0.0.1",
                           dashboard_port=port, log_to_driver=False, _temp_dir=temp_dir)
        # and that cluster named in it, as `ray start` would: without the file the supervisor takes any Ray on the
        # machine (Ray's `_private` helper: the file's name and format are Ray's own)
        ray._private.utils.write_ray_address(context.address_info["gcs_address"], temp_dir)
        os.environ["RAY_ADDRESS"] = context.address_info["gcs_address"]
        dashboard = f"http://{context.dashboard_url}"
    else:
        # `ray status` is no probe here: with Ray 2.60's token auth it fails against a running head unless
        # RAY_AUTH_MODE is set in the caller's environment; joining the head is what every later step does anyway.
        probe = "import ray; ray.init(address='auto', log_to_driver=False, logging_level='ERROR'); ray.shutdown()"
        if subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=120).returncode != 0:
            subprocess.run([_bin("ray"), "start", "--head", "--dashboard-host", "127.0.0.1", "--num-cpus", "4",
                            "--disable-usage-stats"], check=True, capture_output=True, text=True, timeout=300)
        os.environ["RAY_ADDRESS"] = "auto"
        dashboard = "http://127.0.0.1:8265"
    console.print(f"Ray head running; dashboard {dashboard}")
    return dashboard


def make_data() -> dict[str, Path]:
    data = OUT / "data"
    data.mkdir(parents=True, exist_ok=True)
    paths = {"train": data / "churn_train.parquet", "scoring": data / "churn_scoring.parquet",
             "recent": data / "churn_recent.parquet"}
    make_churn(8000, seed=42).to_parquet(paths["train"], index=False)
    make_churn(3000, seed=43).drop(columns=["churned"]).to_parquet(paths["scoring"], index=False)
    # The newest window: the same customers' world after a price rise (drift in the features, and a new relation
    # between them and churn). With only the features shifted, the champion still ranked the new window as well as
    # a retrained model (ROC AUC within 0.005 on a 2-in-100 minority), so whether the retrained challenger passed
    # its gate against the champion was a coin toss.
    make_churn(4000, seed=44, drift=1.0, concept=1.0).to_parquet(paths["recent"], index=False)
    return paths


def send_requests(endpoint: str, frame: Any, batch: int = 25) -> int:
    rows = json.loads(frame.drop(columns=["churned"], errors="ignore").to_json(orient="records", date_format="iso"))
    answered = 0
    with httpx.Client(timeout=30) as http:
        for start in range(0, len(rows), batch):
            chunk = rows[start:start + batch]
            response = http.post(f"{endpoint}/v1/models/{MODEL}:predict",
                                 json={"instances": chunk}, headers={"X-Request-Key": chunk[0]["customer_id"]})
            response.raise_for_status()
            answered += len(response.json()["predictions"])
    return answered


def run(in_process_ray: bool = False) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    step("1. local Ray cluster")
    facts["dashboard"] = start_ray(in_process_ray)
    mlplatform("store", "upgrade")

    step("2. data: generate, version, profile")
    paths = make_data()
    version = mlplatform("data", "version", str(paths["train"]), "--name", "churn_train", as_json=True)
    console.print(f"dataset churn_train version {version['version'][:16]}... ({version['row_count']} rows)")

    step("3. multi-pattern search on Ray Tune (logistic, hist_gbdt, random_forest, mlp + baseline)")
    mlplatform("tune", "--config", "tune_configs/demo_multi_pattern.yaml")

    step("4. distributed training on Ray Train (2 workers), gated against the baselines")
    trained = mlplatform("train", "--config", "train_jobs/configs/demo_mlp.yaml", as_json=True)
    console.print(json.dumps({k: trained.get(k) for k in ("run_id", "model_version", "alias", "epochs",
                                                           "test_metrics", "baselines", "gate")},
                             indent=1, default=str))
    current = mlplatform("models", "show", f"{MODEL}@champion", as_json=True, allow=(0, 2))
    if not current or current.get("model_name") != MODEL:
        versions = mlplatform("models", "show", MODEL, "--versions", as_json=True)
        mlplatform("models", "alias", f"{MODEL}:{versions[-1]['version']}", "champion")
    mlplatform("models", "list")

    step("5. data validation against the champion, then batch scoring on Ray Data")
    mlplatform("data", "validate", str(paths["scoring"]), "--model", f"{MODEL}@champion", "--ignore",
               "customer_id,event_time", allow=(0, 3))
    batch = mlplatform("batch", "--model", f"{MODEL}@champion", "--input", str(paths["scoring"]), "--output",
                       str(OUT / "predictions"), "--keep-columns", "customer_id", "--concurrency", "2",
                       as_json=True)
    facts["batch"] = batch
    console.print(f"scored {batch.get('rows_scored', batch)} rows -> {OUT / 'predictions'}")

    step("6. online serving on Ray Serve")
    served = mlplatform("serve", "up", "--model", f"{MODEL}@champion", "--port", str(PORT), as_json=True)
    endpoint, facts["curl"], facts["console"] = served["endpoint"], served["curl"], served.get("console")
    sample = pd.read_parquet(paths["scoring"]).head(500)
    console.print(f"answered {send_requests(endpoint, sample)} predictions at {endpoint}")

    step("7. a drifted week of traffic, then monitoring")
    recent = pd.read_parquet(paths["recent"])
    console.print(f"answered {send_requests(endpoint, recent.head(1500))} drifted predictions")
    check = mlplatform("monitor", "check", "--model", f"{MODEL}@champion", "--window-file", str(paths["recent"]),
                       as_json=True, allow=(0, 3))
    facts["level"] = check.get("level") if isinstance(check, dict) else None
    console.print(f"monitoring level: {facts['level']}")
    mlplatform("monitor", "status")

    step("8. the loop decides by itself: one scheduler tick -> retrain job -> gate -> shadow rollout")
    # Nothing below types a retrain or rollout command: a `monitor` schedule runs `mlplatform loop run`, which
    # checks the champion on the newest labelled window, decides, submits the retrain as a Ray job (warm-started
    # from the champion), gates it against the champion on the same holdout and starts the shadow rollout.
    loop_yaml = OUT / "loop.yaml"
    loop_yaml.write_text(json.dumps({
        # The demo's Ray head runs on this machine, so the job runs this checkout in place (a remote cluster
        # leaves upload_working_dir on, and Ray ships the repository with the job).
        "jobs_address": facts["dashboard"], "working_dir": str(Path.cwd()), "upload_working_dir": False,
        "models": [{"model": MODEL, "train_config": "train_jobs/configs/demo_retrain.yaml",
                    "data": {"kind": "parquet", "path": str(paths["recent"].resolve()), "window_days": 365},
                    "job_timeout_s": 600}]}))
    mlplatform("schedule", "add", "loop-churn", "--cron", "0 * * * *", "--kind", "monitor", "--due-now",
               "--command", f"loop run --config {loop_yaml}", allow=(0, 2, 4))
    mlplatform("schedule", "run-due", allow=(0, 1))
    decisions = mlplatform("loop", "status", "--model", MODEL, as_json=True)
    mlplatform("loop", "status", "--model", MODEL)
    if not decisions or decisions[0]["status"] not in ("rolling_out", "promoted"):
        raise DemoFailed(f"the loop did not roll out a challenger: {decisions[0] if decisions else None}")
    facts["loop"] = {k: decisions[0][k] for k in ("trigger", "status", "reason", "job_id", "challenger")}

    step("9. the monitoring report")
    report = mlplatform("monitor", "report", "--model", f"{MODEL}@champion", "--window-file", str(paths["recent"]),
                        "--out", str(OUT / "reports"), as_json=True)
    facts["report"] = report["html"]
    facts["endpoint"] = endpoint
    return facts


def down() -> None:
    subprocess.run([_bin("mlplatform"), "serve", "down"], capture_output=True, timeout=120)
    subprocess.run([_bin("ray"), "stop", "--force"], capture_output=True, timeout=120)
    console.print("stopped the Serve apps and the local Ray head")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--down", action="store_true", help="stop what the demo started")
    parser.add_argument("--in-process-ray", action="store_true",
                        help="run on a private Ray that stops with the demo (tests) instead of `ray start --head`")
    parser.add_argument("--facts", type=Path, help="also write what the demo did as JSON to this file")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.down:
        down()
        return 0

    started = time.monotonic()
    try:
        facts = run(args.in_process_ray)
    except DemoFailed as exc:
        console.print(f"[bold red]demo failed:[/bold red] {exc}")
        return 1
    settings = get_settings()
    facts["seconds"] = round(time.monotonic() - started, 1)
    facts["stages"] = stage_seconds()
    for title, seconds in facts["stages"].items():
        console.print(f"{seconds:7.1f} s  {title}")
    if args.facts:
        args.facts.write_text(json.dumps(facts, indent=1, default=str))
    step(f"done in {facts['seconds']:.0f} s")
    console.print(f"dashboard:  {facts['dashboard']}")
    console.print(f"endpoint:   {facts['endpoint']}/v1/models  (OpenAPI at {facts['endpoint']}/docs)")
    console.print(f"try:        {facts['curl']}")
    console.print(f"console:    {facts.get('console')}")
    console.print(f"report:     {facts.get('report')}")
    console.print(f"store:      {settings.display_store_url()}")
    console.print(f"artifacts:  {settings.resolved_artifact_uri()}")
    console.print("stop:       make demo-down")
    if args.in_process_ray:
        # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
        import ray

        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
