"""Ray Tune overhead: 40 trials x 4 iterations sleeping 0.25 s, 2 at a time (a theoretical minimum of 20 s), run
with this project's Tune settings (actor reuse) with and without the evaluation-store callback, in one run.

Targets: overhead_vs_minimum (with the callback) <= 0.20 and callback_cost (over the same run without it) <= 0.05.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import emit_target, print_table

TRIALS, ITERATIONS, SLEEP_S, CONCURRENCY = 40, 4, 0.25, 2
MINIMUM_S = TRIALS * ITERATIONS * SLEEP_S / CONCURRENCY


def sleepy(config: dict) -> None:
    from ray import tune

    for step in range(ITERATIONS):
        time.sleep(SLEEP_S)
        tune.report({"score": config["x"] * (step + 1), "trial_finished": float(step == ITERATIONS - 1)})


def run(storage: Path, name: str, callbacks: list) -> float:
    from ray import tune

    tuner = tune.Tuner(
        tune.with_resources(sleepy, {"cpu": 1}),
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(num_samples=TRIALS, max_concurrent_trials=CONCURRENCY, reuse_actors=True,
                                    metric="score", mode="max"),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), callbacks=callbacks, verbose=0),
    )
    started = time.perf_counter()
    results = tuner.fit()
    elapsed = time.perf_counter() - started
    assert len(results) == TRIALS and not results.errors
    return elapsed


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLPLATFORM_HOME"] = str(Path(tmp) / "home")
        import ray

        from mlplatform.client import Client
        from mlplatform.tuning.callback import StoreCallback

        ray.init(num_cpus=CONCURRENCY, include_dashboard=False, log_to_driver=False, address="local")
        client = Client()
        run(Path(tmp) / "tune", "warmup", [])  # worker processes and imports, paid once by both measured runs
        without = run(Path(tmp) / "tune", "without-callback", [])
        sweep = client.runs.start_run("bench-tune", "tune", config={"trials": TRIALS})
        callback = StoreCallback(sweep_run_id=sweep.id, experiment="bench-tune",
                                 store_url=client.settings.resolved_store_url(),
                                 artifact_uri=client.settings.resolved_artifact_uri())
        with_callback = run(Path(tmp) / "tune", "with-callback", [callback])
        trials = client.runs.list_runs(kind="tune_trial", parent_run_id=sweep.id, limit=1000)
        rows = sum(client.runs.count_metrics(t.id) for t in trials)
        ray.shutdown()
    overhead = (with_callback - MINIMUM_S) / MINIMUM_S
    cost = (with_callback - without) / without
    print_table(f"{TRIALS} trials x {ITERATIONS} x {SLEEP_S}s at concurrency {CONCURRENCY} (minimum {MINIMUM_S:.0f} s)",
                [{"run": "actor reuse, no store callback", "seconds": without},
                 {"run": "actor reuse, store callback", "seconds": with_callback},
                 {"run": "theoretical minimum", "seconds": MINIMUM_S}])
    print(f"store: {len(trials)} trial runs, {rows} metric rows (expected {TRIALS} and >= {TRIALS * ITERATIONS})")
    ok = emit_target("tune_overhead", "overhead_vs_minimum", overhead, 0.20, higher_is_better=False)
    ok = emit_target("tune_overhead", "callback_cost", cost, 0.05, higher_is_better=False) and ok
    return 0 if ok and len(trials) == TRIALS else 1


if __name__ == "__main__":
    raise SystemExit(main())
