"""The monitoring loop scored against ground truth: the shipped scenarios (mlplatform.datasets.scenarios) run
day by day through the same functions a scheduled monitor job calls.

Each simulated day: the day's predictions are logged to the store as serving logs them (with class
probabilities), the labels that arrive that day are added (label delay 1 day, 10 % never arrive), then
``run_check`` checks the log window of the last two days (the newest day's rows carry no labels yet, the day
before's do) and records alerts, the drift report and its retraining decision, with the clock at the end of the
day. A random forest trained on stationary rows is the champion of every scenario (a fresh model name each, so
alerts and retraining guards do not leak between scenarios).

Metrics (JSON lines {"benchmark","metric","value","target","ok"}):
- false_alarm_rate: stationary days with any alert at ORANGE or above (<= 0.05);
- detection_delay_windows: worst over the injected events of days from the event (for concept drift: from the day
  its labels arrive) to the first alert at ORANGE or above (<= 1); an event never detected counts as its length;
- unneeded_retrains: retraining recommended on a stationary day (0);
- missed_retrains: concept-drift events whose decay was declared without a retraining recommendation (0);
- cbpe_mae: mean |estimated - realized| accuracy on the covariate-shift days (mean shift, category mix) (<= 0.03).

    .venv/bin/python benchmarks/loop_scenarios.py      # BENCH_STATIONARY=30 BENCH_ROWS=2000 by default
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
from _report import emit_target, print_table

STATIONARY = int(os.environ.get("BENCH_STATIONARY", "30"))
ROWS = int(os.environ.get("BENCH_ROWS", "2000"))
SEED = int(os.environ.get("BENCH_SEED", "0"))
COVARIATE = {"mean_shift", "category_mix"}


def _champion(client, work: Path) -> Path:
    from mlplatform.datasets.scenarios import FEATURES, TARGET, make_training_frame
    from mlplatform.learning.sklearn_fit import fit_sklearn_artifact

    out = work / "rf"
    fit_sklearn_artifact(make_training_frame(6000, seed=SEED), target=TARGET, features=FEATURES,
                         family="random_forest", out_dir=out, params={"n_estimators": 100},
                         eval_data=make_training_frame(3000, seed=SEED + 1))
    return out


def _log_day(client, predictor, name: str, window) -> list[str]:
    from mlplatform.datasets.scenarios import FEATURES
    from mlplatform.entities import PredictionRecord

    frame = window.frame
    features = [f for f in FEATURES if f in frame.columns]  # a schema break logs what arrived
    scored = frame.reindex(columns=FEATURES)
    result = predictor.predict(scored)
    rows = frame[features].astype(object).where(frame[features].notna(), None).to_dict("records")
    ids = [f"{name}-{window.index}-{i}" for i in range(len(frame))]
    client.monitoring.log_predictions([PredictionRecord(
        request_id=ids[i], model_name=name, version=1, features=rows[i], prediction=result.predictions[i],
        confidence=float(result.confidence[i]), latency_ms=1.0, timestamp=frame["event_time"].iloc[i],
        entity_id=frame["entity_id"].iloc[i], probabilities=[float(p) for p in result.probabilities[i]])
        for i in range(len(frame))])
    return ids


def run_scenario(client, artifact: Path, event: str | None, config) -> list[dict]:
    from mlplatform.datasets.scenarios import TARGET, make_scenario
    from mlplatform.monitoring.check import run_check

    scenario = make_scenario(event, config)
    name = f"loop-{scenario.name.replace('_', '-')}"
    client.registry.register(name, artifact, alias="champion")
    predictor = client.registry.load(client.registry.resolve(f"{name}@champion"))
    ids: dict[int, list[str]] = {}
    truth: dict[int, pd.DataFrame] = {}
    days = []
    for window in scenario.windows:
        ids[window.index] = _log_day(client, predictor, name, window)
        truth[window.index] = window.frame.assign(
            correct=np.asarray(predictor.predict(window.frame.reindex(columns=predictor.feature_names))
                               .predictions) == window.frame[TARGET].to_numpy())
        for arrived in scenario.labels_arriving(window.index):
            client.monitoring.add_labels([
                {"label": int(label), "request_id": request_id}
                for request_id, label, keep in zip(ids[arrived.index], arrived.frame[TARGET], arrived.labelled,
                                                   strict=True) if keep])
        start = window.start - timedelta(days=1)
        end = window.start + timedelta(days=1)
        result = run_check(client, f"{name}@champion", start=start, end=end, now=lambda end=end: end)
        covered = pd.concat([truth[i] for i in (window.index - 1, window.index) if i in truth])
        estimated = result.evaluation.get("estimated") or {}
        decay = result.evaluation.get("decay") or {}
        days.append({
            "scenario": scenario.name, "day": window.index, "event": window.event or "-",
            "level": result.level.name, "alerts": ",".join(sorted({c.type for c in result.checks
                                                                   if c.level.name in ("ORANGE", "RED")})),
            "retrain": result.retrain.recommend if result.retrain else False,
            "decayed": bool(decay.get("decayed")), "estimated_acc": estimated.get("accuracy"),
            "realized_acc": float(covered["correct"].mean()), "labels": (result.evaluation.get("metrics")
                                                                         or {}).get("n", 0),
            "event_start": config.stationary_windows if event else None,
            "labels_from": config.stationary_windows + config.label_delay if event else None,
        })
    return days


def main() -> None:
    from mlplatform.client import Client
    from mlplatform.datasets.scenarios import EVENTS, ScenarioConfig
    from mlplatform.entities import AlertLevel

    work = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    os.environ["MLPLATFORM_HOME"] = str(work / "home")
    logging.getLogger("mlplatform.monitoring").setLevel(logging.ERROR)  # one line per alert is noise here
    client = Client()
    started = time.perf_counter()
    artifact = _champion(client, work)
    days = run_scenario(client, artifact, None, ScenarioConfig(seed=SEED, window_rows=ROWS,
                                                               stationary_windows=STATIONARY))
    for event in EVENTS:
        days += run_scenario(client, artifact, event, ScenarioConfig(seed=SEED, window_rows=ROWS,
                                                                     stationary_windows=2, event_windows=3))
    client.close()
    print_table("loop scenarios, day by day", [{k: v for k, v in d.items() if k not in ("event_start",
                                                                                         "labels_from")}
                                                for d in days])
    orange = {AlertLevel.ORANGE.name, AlertLevel.RED.name}
    stationary = [d for d in days if d["event"] == "-"]
    false_alarms = sum(d["level"] in orange for d in stationary) / len(stationary)
    delays, missed = [], 0
    for event in EVENTS:
        part = [d for d in days if d["scenario"] == event and d["event"] != "-"]
        origin = part[0]["labels_from"] if event == "concept_drift" else part[0]["event_start"]
        hits = [d["day"] - origin for d in part if d["level"] in orange and d["day"] >= origin]
        delays.append(min(hits) if hits else len(part))
        print(f"{event}: first ORANGE+ {hits[0] if hits else 'never'} day(s) after the event")
        if event == "concept_drift" and any(d["decayed"] for d in part) and not any(d["retrain"] for d in part):
            missed += 1
    unneeded = sum(d["retrain"] for d in stationary)
    covariate = [d for d in days if d["event"] in COVARIATE and d["estimated_acc"] is not None]
    mae = float(np.mean([abs(d["estimated_acc"] - d["realized_acc"]) for d in covariate]))
    print(f"\n{len(days)} days in {time.perf_counter() - started:.1f} s")
    emit_target("loop_scenarios", "false_alarm_rate", false_alarms, 0.05, higher_is_better=False)
    emit_target("loop_scenarios", "detection_delay_windows", float(max(delays)), 1, higher_is_better=False)
    emit_target("loop_scenarios", "unneeded_retrains", float(unneeded), 0, higher_is_better=False)
    emit_target("loop_scenarios", "missed_retrains", float(missed), 0, higher_is_better=False)
    emit_target("loop_scenarios", "cbpe_mae", mae, 0.03, higher_is_better=False)


if __name__ == "__main__":
    main()
