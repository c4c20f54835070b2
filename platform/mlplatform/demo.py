"""``make demo``: the life of a model on generated data, printing where to look.

Each stage is a function so that the demo grows with the platform; it is re-runnable (every run registers new
versions rather than failing on existing ones) and ``--down`` stops what it started.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

console = Console()
logger = logging.getLogger("mlplatform.demo")
MODEL = "churn"


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def _ray_cli() -> str:
    # The venv's own `ray`, so that `make demo` works without activating the venv.
    candidate = Path(sys.executable).parent / "ray"
    return str(candidate) if candidate.exists() else "ray"


def start_ray(home: Path) -> str:
    """A local Ray head with the dashboard on 127.0.0.1:8265 (reused when it is already up)."""
    status = subprocess.run([_ray_cli(), "status"], capture_output=True, text=True, timeout=60)
    if status.returncode != 0:
        subprocess.run([_ray_cli(), "start", "--head", "--dashboard-host", "127.0.0.1", "--num-cpus", "4",
                        "--disable-usage-stats"], check=True, capture_output=True, text=True, timeout=180)
    (home / "demo").mkdir(parents=True, exist_ok=True)
    (home / "demo" / "ray_started").write_text(str(time.time()))
    return "http://127.0.0.1:8265"


def stop_ray() -> None:
    subprocess.run([_ray_cli(), "stop", "--force"], capture_output=True, timeout=120)


def make_data(home: Path) -> dict[str, Path]:
    from mlplatform.datasets.synthetic import make_churn

    data_dir = home / "demo" / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = {"train": data_dir / "churn_train.parquet", "scoring": data_dir / "churn_scoring.parquet",
             "drifted": data_dir / "churn_drifted.parquet"}
    make_churn(6000, seed=42).to_parquet(paths["train"], index=False)
    make_churn(4000, seed=43).drop(columns=["churned"]).to_parquet(paths["scoring"], index=False)
    make_churn(3000, seed=44, drift=1.0).to_parquet(paths["drifted"], index=False)
    console.print(f"data written to {data_dir}")
    return paths


def train_and_register(client: Any, paths: dict[str, Path], home: Path) -> dict[str, Any]:
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from mlplatform.datasets.synthetic import FEATURES, TARGET
    from mlplatform.training.sklearn_fit import fit_sklearn_artifact

    df = pd.read_parquet(paths["train"])
    train, test = train_test_split(df, test_size=0.2, random_state=42, stratify=df[TARGET])
    results = {}
    for family in ("most_frequent", "logistic", "hist_gbdt"):
        run = client.runs.start_run("demo", "train", config={"family": family}, seed=42, name=family)
        out = home / "demo" / "artifacts" / f"{family}-{run.id[:8]}"
        manifest = fit_sklearn_artifact(train, target=TARGET, features=FEATURES, family=family, out_dir=out,
                                        eval_data=test)
        client.runs.log_metrics(run.id, manifest.metrics, split="test")
        client.runs.end_run(run.id)
        results[family] = (manifest, out, run.id)
        console.print(f"{family:14s} accuracy={manifest.metrics['accuracy']:.4f} roc_auc="
                      f"{manifest.metrics['roc_auc']:.4f}")
    best = max(("logistic", "hist_gbdt"), key=lambda f: results[f][0].metrics["roc_auc"])
    manifest, out, run_id = results[best]
    baseline = results["most_frequent"][0].metrics["accuracy"]
    if manifest.metrics["accuracy"] < baseline + 0.01:
        raise SystemExit(f"{best} does not beat the majority baseline; refusing to register")
    version = client.registry.register(MODEL, out, source_run_id=run_id, alias="champion")
    client.registry.add_evaluation(MODEL, version.version, manifest.metrics, dataset_version=None, n=len(test))
    console.print(f"registered {version.ref} ({best}) as champion; lift over baseline "
                  f"{manifest.metrics['accuracy'] - baseline:+.4f}")
    return {"version": version}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--down", action="store_true", help="stop what the demo started")
    parser.add_argument("--no-ray", action="store_true", help="skip starting a Ray head")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from mlplatform.client import Client
    from mlplatform.settings import get_settings

    settings = get_settings()
    if args.down:
        stop_ray()
        console.print("stopped the local Ray head (and the Serve apps on it)")
        return 0
    started = time.monotonic()
    dashboard = None
    if not args.no_ray:
        step("1. local Ray")
        dashboard = start_ray(settings.home)
        console.print(f"Ray dashboard: {dashboard}")
    step("2. data")
    paths = make_data(settings.home)
    client = Client()
    step("3. baselines and models")
    train_and_register(client, paths, settings.home)
    step("done")
    console.print(f"finished in {time.monotonic() - started:.0f} s")
    console.print(f"store:      {client.display_url}")
    console.print(f"artifacts:  {settings.resolved_artifact_uri()}")
    if dashboard:
        console.print(f"dashboard:  {dashboard}")
    console.print("try:        .venv/bin/mlplatform models list")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
