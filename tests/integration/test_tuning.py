"""Multi-pattern search on the shared local Ray: every trial in the store exactly once, the leaderboard,
--register-best, ASHA, failures and resume (SPEC S3)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mlplatform.cli.main import app
from mlplatform.config.tune import tune_config_from_dict
from mlplatform.tuning import runner
from tests.integration import _tune_trainables as trainables

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "test_search", "experiment": "tune-test", "model_name": "churn", "seed": 7,
        "data": {"source": "synthetic_churn", "n_rows": 800},
        "patterns": {
            "logistic": {"params": {"C": {"choice": [0.1, 1.0]}}},
            "hist_gbdt": {"params": {"max_iter": 20, "max_depth": 3}},
            "mlp": {"params": {"hidden": {"choice": [[8], [16]]}, "dropout": 0.0},
                    "training": {"lr": 0.01, "batch_size": 128, "epochs": 3}},
        },
        "preprocessing": {"scaling": "standard", "max_categories": 10},
        "rebalancing": ["none"],
        "search": {"algorithm": "grid", "scheduler": "fifo"},
        "budget": {"num_samples": 6},
        "max_concurrent_trials": 2,
        "gate": {"metric": "roc_auc", "min_lift": 0.01},
    }
    config.update(overrides)
    return config


def _trials(client: Any, sweep_run_id: str) -> list[Any]:
    return client.runs.list_runs(parent_run_id=sweep_run_id, kind="tune_trial", limit=1000)


def _rows(client: Any, run_id: str) -> list[tuple[str, int]]:
    return [(m.key, m.step) for m in client.runs.get_metrics(run_id)]


def _tune_results(trial_dir: str) -> list[dict[str, Any]]:
    """What the trial reported, as Tune itself recorded it (one JSON line per result)."""
    lines = (Path(trial_dir) / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_multi_pattern_search_records_every_trial_ranks_patterns_and_registers_the_best(
        ray_session: None, client: Any, tmp_path: Path) -> None:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(_config()))
    result = CliRunner().invoke(app, ["tune", "--config", str(path), "--register-best", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    sweep = client.runs.get_run(data["sweep_run_id"])
    assert (sweep.kind, sweep.status, data["status"]) == ("tune", "completed", "completed")

    trials = _trials(client, sweep.id)
    assert Counter(t.config["pattern"] for t in trials) == {"most_frequent": 1, "logistic": 2, "hist_gbdt": 1,
                                                            "mlp": 2}
    assert {t.status for t in trials} == {"completed"}
    assert {t.tags["split_id"] for t in trials} == {sweep.tags["split_id"]}  # one shared split
    assert {t.seed for t in trials} == {7}
    for trial in trials:
        reported = _tune_results(trial.tags["trial_dir"])
        stored = client.runs.get_metrics(trial.id)
        expected = {(key, r["training_iteration"]): value for r in reported for key, value in r.items()
                    if key.startswith(("val_", "train_loss"))}
        assert {(m.key, m.step): m.value for m in stored} == pytest.approx(expected)
        assert len(stored) == len(expected)  # nothing duplicated
        steps = 3 if trial.config["pattern"] == "mlp" else 1
        assert sorted({m.step for m in stored}) == list(range(1, steps + 1))

    board = data["leaderboard"]
    assert {r["pattern"] for r in board["per_pattern"]} == {"most_frequent", "logistic", "hist_gbdt", "mlp"}
    scores = {t.id: max(m.value for m in client.runs.get_metrics(t.id, "val_roc_auc")) for t in trials}
    best_id = max((i for i in scores if client.runs.get_run(i).config["pattern"] != "most_frequent"),
                  key=lambda i: scores[i])
    assert board["overall_best"]["run_id"] == best_id and board["baseline"] == pytest.approx(0.5)
    for row in board["per_pattern"]:
        same = [scores[t.id] for t in trials if t.config["pattern"] == row["pattern"]]
        assert row["score"] == pytest.approx(max(same))

    registered = data["registered"]
    assert (registered["model_version"], registered["alias"]) == ("churn:1", "champion")
    version = client.registry.resolve("churn@champion")
    assert version.lineage["sweep_run_id"] == sweep.id and version.lineage["trial_run_id"] == best_id
    assert version.lineage["trained_on"] == "train+validation"
    assert registered["test_metrics"]["roc_auc"] > 0.5 + 0.01  # scored on the untouched test split

    shown = CliRunner().invoke(app, ["tune", "--leaderboard", sweep.id], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "hist_gbdt" in shown.stdout and "most_frequent" in shown.stdout


def test_forty_trials_with_failures_land_exactly_once(ray_session: None, client: Any) -> None:
    config = tune_config_from_dict(_config(
        patterns={"logistic": {"params": {"C": {"uniform": [0.001, 1.0]}}}}, preprocessing={},
        search={"algorithm": "random", "scheduler": "fifo"}, budget={"num_samples": 40}, max_concurrent_trials=4))
    started = time.monotonic()
    outcome = runner.run_search(config, client=client, trainable=trainables.flaky)
    elapsed = time.monotonic() - started

    trials = _trials(client, outcome.sweep_run_id)
    assert len(trials) == 40 and len({t.id for t in trials}) == 40
    expected_rows = 0
    for trial in trials:
        c = 0.5 if trial.config["pattern"] == "most_frequent" else trial.config["params"]["C"]
        rows = _rows(client, trial.id)
        assert len(rows) == len(set(rows))
        if c > 0.9:
            assert (trial.status, rows) == ("failed", [])
            assert "boom before any report" in trial.error
        elif c < 0.2:
            assert (trial.status, rows) == ("failed", [("val_roc_auc", 1)])
            assert f"boom after one report (C={c:.4f})" in trial.error
        else:
            assert trial.status == "completed" and trial.error is None
            assert [m.value for m in client.runs.get_metrics(trial.id)] == pytest.approx([c, c + 0.01])
        expected_rows += 0 if c > 0.9 else (1 if c < 0.2 else 2)
    assert client.runs.count_metrics() == expected_rows
    assert sum(outcome.counts.values()) == 40 and outcome.counts.get("failed", 0) >= 1
    assert elapsed < 150, f"40 cheap trials took {elapsed:.1f} s"  # ~20 s on an idle 2-core machine


def test_asha_stops_weak_trials_before_their_last_epoch(ray_session: None, client: Any) -> None:
    config = tune_config_from_dict(_config(
        patterns={"mlp": {"params": {}, "training": {"lr": {"uniform": [0.001, 0.1]}, "epochs": 4}}},
        preprocessing={}, search={"algorithm": "random", "scheduler": "asha", "grace_period": 1,
                                  "reduction_factor": 2},
        budget={"num_samples": 12}, max_concurrent_trials=2))
    outcome = runner.run_search(config, client=client, trainable=trainables.epochs)

    trials = [t for t in _trials(client, outcome.sweep_run_id) if t.config["pattern"] == "mlp"]
    steps = {t.id: sorted({m.step for m in client.runs.get_metrics(t.id)}) for t in trials}
    stopped = [t for t in trials if t.status == "stopped"]
    assert stopped, "ASHA stopped no trial"
    for trial in stopped:
        assert trial.tags["early_stopped"] and len(steps[trial.id]) < 4
        assert steps[trial.id] == list(range(1, len(steps[trial.id]) + 1))
    completed = [t for t in trials if t.status == "completed"]
    assert completed and all(steps[t.id] == [1, 2, 3, 4] for t in completed)
    best = outcome.leaderboard["overall_best"]
    assert best["status"] == "completed" and best["run_id"] in {t.id for t in completed}


def test_stopped_search_resumes_without_duplicates_within_budget(ray_session: None, client: Any,
                                                                 tmp_path: Path) -> None:
    config = tune_config_from_dict(_config(
        patterns={"logistic": {"params": {"C": {"loguniform": [0.01, 10.0]}}},
                  "mlp": {"params": {"hidden": [8]}, "training": {"lr": {"loguniform": [0.003, 0.03]},
                                                                   "batch_size": 128, "epochs": 4}}},
        search={"algorithm": "optuna", "scheduler": "fifo"}, budget={"num_samples": 6}))
    marker = str(tmp_path / "interrupted")
    first = runner.run_search(config, client=client, callbacks=[trainables.InterruptAfter(2, marker)])
    assert first.status == "stopped" and Path(marker).exists()
    assert client.runs.get_run(first.sweep_run_id).status == "stopped"
    before = {t.id: _rows(client, t.id) for t in _trials(client, first.sweep_run_id)}
    assert 2 <= len(before) < 6

    resumed = runner.resume_search(first.sweep_run_id, client=client)
    assert resumed.status == "completed" and resumed.sweep_run_id == first.sweep_run_id
    trials = _trials(client, first.sweep_run_id)
    assert len(trials) == 6  # the budget: no trial rerun under a new id, none added
    assert Counter(t.config["pattern"] for t in trials)["most_frequent"] == 1  # the baseline ran once
    for trial in trials:
        rows = _rows(client, trial.id)
        assert len(rows) == len(set(rows)), f"duplicated rows for {trial.config['pattern']}"
        assert set(before.get(trial.id, [])) <= set(rows)
        steps = sorted({step for _, step in rows})
        assert trial.status == "completed"
        assert steps == (list(range(1, 5)) if trial.config["pattern"] == "mlp" else [1])


def test_warm_started_search_evaluates_the_earlier_best_configs(ray_session: None, client: Any) -> None:
    patterns = {"logistic": {"params": {"C": {"choice": [0.05, 2.0]}}},
                "hist_gbdt": {"params": {"max_iter": 10, "max_depth": 3}}}
    first = runner.run_search(tune_config_from_dict(_config(patterns=patterns, budget={"num_samples": 4})),
                              client=client)
    earlier = [r["config"] for r in first.leaderboard["trials"]
               if r.get("rank") and r["pattern"] != "most_frequent"][:2]
    assert len(earlier) == 2

    patterns["logistic"]["params"]["C"] = {"loguniform": [0.01, 10.0]}
    second = runner.run_search(tune_config_from_dict(_config(
        patterns=patterns, search={"algorithm": "optuna", "scheduler": "fifo"}, budget={"num_samples": 3},
        warm_start_top_k=2)), client=client, warm_start_from=[first.sweep_run_id])

    assert client.runs.get_run(second.sweep_run_id).tags["warm_start_points"] == 2
    tried = [(t.config["pattern"], t.config["params"], t.config["preprocessing"])
             for t in _trials(client, second.sweep_run_id)]
    for config in earlier:
        assert (config["pattern"], config["params"], config["preprocessing"]) in tried


def test_pbt_records_every_mutation_and_register_best_replays_the_recorded_schedule(
        ray_session: None, client: Any) -> None:
    """PBT for real (the standard torch trial, tiny): each result's lr as Tune ran it equals the lr the store says
    was in effect at that step, and --register-best retrains with the best trial's recorded schedule."""
    config = tune_config_from_dict(_config(
        data={"source": "synthetic_churn", "n_rows": 400},
        patterns={"mlp": {"params": {"hidden": [8], "dropout": 0.0},
                          "training": {"lr": {"loguniform": [1e-5, 0.05]}, "batch_size": 64, "epochs": 8}}},
        # Synchronous PBT: asynchronous PBT exploits only when a weak trial reports while a strong one holds a
        # checkpoint, which timing decides (under CI load it once mutated nothing); in step every interval compares
        # the whole population, so the bottom half always exploits.
        preprocessing={}, search={"algorithm": "random", "scheduler": "pbt", "perturbation_interval": 2,
                                  "quantile_fraction": 0.5, "mutations": ["lr"], "synch": True},
        budget={"num_samples": 5}, max_concurrent_trials=2, early_stopping_patience=0,
        gate={"metric": "roc_auc", "min_lift": 0.0}))
    outcome = runner.run_search(config, client=client, register_best=True, force=True)

    trials = [t for t in _trials(client, outcome.sweep_run_id) if t.config["pattern"] == "mlp"]
    mutated = [t for t in trials if len(t.tags.get("config_history", [])) > 1]
    assert mutated, "PBT mutated no trial"
    from mlplatform.tuning.results import config_at, config_history

    for trial in trials:
        history = config_history(trial)
        # An exploit restarts from a cloned checkpoint and may re-run steps: the last report of a step survives.
        surviving = {r["training_iteration"]: r for r in _tune_results(trial.tags["trial_dir"])}
        for step, result in surviving.items():
            ran = result["config"]["mlp"]["training"]["lr"]
            assert config_at(history, step)["training"]["lr"] == pytest.approx(ran)
            stored = [m.value for m in client.runs.get_metrics(trial.id, "val_roc_auc") if m.step == step]
            assert stored[-1] == pytest.approx(result["val_roc_auc"])  # the newest row is the surviving branch
    for trial in mutated:
        history = trial.tags["config_history"]
        assert history[0]["config"]["training"]["lr"] == trial.config["training"]["lr"]  # where it started
        assert [e["from_step"] for e in history] == sorted({e["from_step"] for e in history})
        assert all(e["from_step"] > 1 for e in history[1:])

    best = outcome.leaderboard["overall_best"]
    best_run = client.runs.get_run(best["run_id"])
    assert best["config"] == config_at(config_history(best_run), best["best_step"])
    version = client.registry.resolve(outcome.registered["model_version"])
    assert version.lineage["config_history"] == config_history(best_run)
    assert version.lineage["epochs"] == best["best_step"]
