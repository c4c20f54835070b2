"""``mlplatform monitor check|status|report`` end to end on a registered model, a real SQLite store and real
subprocesses; plus a check over the prediction log with delayed labels (decay)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from mlplatform.datasets.synthetic import make_churn
from tests._png import png_pixels

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "mlplatform.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


@pytest.fixture
def registered(client, model_artifact_dir) -> str:
    client.registry.register("churn", model_artifact_dir, alias="champion")
    return "churn@champion"


def test_check_status_and_report_on_a_drifted_window(client, registered, tmp_path) -> None:
    drifted = tmp_path / "drifted.parquet"
    make_churn(2000, seed=11, drift=1.0).to_parquet(drifted)
    result = _cli("monitor", "check", "--model", registered, "--window-file", str(drifted), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["level"] == "RED" and data["n"] == 2000
    features = data["drift"]["features"]
    assert features["tenure_months"]["level"] == "RED" and features["tenure_months"]["drift"]
    assert features["region"]["level"] == "GREEN"  # an undrifted feature stays quiet
    assert data["drift"]["prediction"]["level_metric"] == "prediction_ks"
    assert data["retrain"]["recommend"] and len(data["retrain"]["drifted_features"]) >= 3
    # stored: one open alert per drifted feature, the retrain recommendation, and a drift report
    open_alerts = client.monitoring.alerts("churn", status="open")
    assert {("data_drift", "tenure_months"), ("prediction_drift", "prediction"), ("retrain", "retrain")} <= {
        (a.type, a.metric) for a in open_alerts}
    assert client.monitoring.drift_reports("churn")[0].level == "RED"
    assert client.monitoring.audit_log(action="retrain_recommended")

    status = _cli("monitor", "status", "--json")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)
    assert [(r["model"], r["version"], r["level"]) for r in rows] == [("churn", 1, "RED")]

    out = tmp_path / "reports"
    report = _cli("monitor", "report", "--model", registered, "--window-file", str(drifted), "--out", str(out))
    assert report.returncode == 0, report.stderr
    html_path = Path(report.stdout.strip().splitlines()[-1])
    assert html_path.is_file() and html_path.parent == out
    page = html_path.read_text()
    _assert_self_contained(page)
    assert page.count("<svg") >= 3 and "tenure_months" in page and "Alert timeline" in page
    assert re.search(r"PSI \d+\.\d{4}", page)  # values to 4 decimals
    summary = json.loads(html_path.with_suffix(".json").read_text())
    assert summary["check"]["level"] == "RED" and summary["alerts"]
    # the report stores nothing: still exactly one drift report from the check above
    assert len(client.monitoring.drift_reports("churn")) == 1


def _assert_self_contained(page: str) -> None:
    class Parser(HTMLParser):
        external: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            for name, value in attrs:
                if name in {"src", "href"} and value and not value.startswith("#"):
                    self.external.append(f"{tag} {name}={value}")
            if tag in {"script", "link", "img", "iframe"}:
                self.external.append(tag)

    parser = Parser()
    parser.feed(page)
    assert parser.external == [] and "url(" not in page and "@import" not in page


def test_stationary_window_raises_no_drift_alert(client, registered, tmp_path) -> None:
    from mlplatform.monitoring.check import run_check

    window = tmp_path / "same.parquet"
    make_churn(2000, seed=12).to_parquet(window)
    result = run_check(client, registered, window_file=window)
    drift_levels = {c.metric: c.level.name for c in result.checks if c.type in ("data_drift", "prediction_drift")}
    assert drift_levels and set(drift_levels.values()) == {"GREEN"}
    assert not any(a.type == "data_drift" for a in client.monitoring.alerts("churn"))
    assert not result.retrain.recommend


def test_check_over_the_prediction_log_declares_decay(client, registered) -> None:
    from mlplatform.entities import PredictionRecord
    from mlplatform.monitoring.check import run_check

    version = client.registry.resolve(registered)
    predictor = client.registry.load(version)
    frame = make_churn(1200, seed=13)
    features = frame[predictor.feature_names]
    prediction = predictor.predict(features)
    records = [PredictionRecord(
        request_id=f"req-{i}", model_name="churn", version=version.version,
        features={k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()},
        prediction=prediction.predictions[i], confidence=float(prediction.confidence[i]), latency_ms=2.0,
        timestamp=row_time) for i, (row, row_time) in enumerate(zip(
            features.to_dict("records"), frame["event_time"], strict=True))]
    client.monitoring.log_predictions(records)
    rng = np.random.default_rng(0)
    for i, pred in enumerate(prediction.predictions[:600]):
        # the world changed: 35 % of the answers are now wrong on purpose
        client.monitoring.add_label(1 - pred if rng.random() < 0.35 else pred, request_id=f"req-{i}")
    result = run_check(client, registered, last_n=1200)
    assert result.drift.n == 1200 and result.drift.prediction is not None
    assert result.drift.level.name == "GREEN"  # same population as training: no data drift
    decay = result.evaluation["decay"]
    assert decay["n"] == 600 and decay["decayed"] and decay["p_value"] < 0.05
    decay_alert = next(a for a in client.monitoring.alerts("churn") if a.type == "decay")
    assert decay_alert.level == "RED" and result.retrain.recommend
    assert "decay declared" in result.retrain.reasons


def test_check_errors_are_one_line_with_exit_codes(registered, tmp_path) -> None:
    missing = _cli("monitor", "check", "--model", "nope@champion", "--last", "10")
    assert missing.returncode == 2 and missing.stderr.startswith("error:") and "Traceback" not in missing.stderr
    bad = tmp_path / "monitor.yaml"
    bad.write_text("routing: {RED: [pager]}\n")
    config = _cli("monitor", "check", "--model", registered, "--last", "10", "--config", str(bad))
    assert config.returncode == 2 and str(bad) in config.stderr and "routing" in config.stderr


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(client, registered, tmp_path) -> None:
    from mlplatform.monitoring.check import run_check
    from mlplatform.monitoring.report import write_report

    window = tmp_path / "w.parquet"
    make_churn(1500, seed=14, drift=1.0).to_parquet(window)
    result = run_check(client, registered, window_file=window, record=False)
    html_path, _ = write_report(result.to_dict(), tmp_path / "out")
    profile = tmp_path / "chrome-profile"
    dom = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          f"--user-data-dir={profile}", html_path.as_uri()], capture_output=True, text=True,
                         timeout=60, check=False)
    shutil.rmtree(profile, ignore_errors=True)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<svg" in dom.stdout and "tenure_months" in dom.stdout and "Monitoring report" in dom.stdout
    # and it really paints: a screenshot with more than a background and text, with coloured chart marks
    shot = tmp_path / "report.png"
    painted = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                              "--disable-background-networking", f"--screenshot={shot}", "--window-size=1200,2000",
                              f"--user-data-dir={profile}", html_path.as_uri()], capture_output=True, text=True,
                             timeout=60, check=False)
    shutil.rmtree(profile, ignore_errors=True)
    assert painted.returncode == 0 and shot.is_file(), painted.stderr[-2000:]
    pixels = png_pixels(shot.read_bytes())
    assert pixels.shape[:2] == (2000, 1200)
    flat = pixels.reshape(-1, pixels.shape[2])[:, :3]
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    assert len(colours) > 10, f"the screenshot has {len(colours)} colours: blank"
    assert 1 - counts.max() / counts.sum() > 0.01  # > 1 % of the page is not background
    spread = flat.max(axis=1).astype(int) - flat.min(axis=1).astype(int)
    assert (spread > 60).sum() > 500  # saturated (non-grey) pixels: the charts' bars and lines


def test_monitor_job_runs_once_over_every_champion(client, registered, tmp_path) -> None:
    from train_jobs import monitor as job

    config = tmp_path / "monitor.yaml"
    config.write_text("last_n: 500\n")
    # an empty prediction log: the pass completes, records insufficient data, and raises no drift alert
    assert job.main(["--once", "--config", str(config), "--store-url", client.display_url]) == 0
    report = client.monitoring.drift_reports("churn")[0]
    assert report.n == 0 and report.summary["status"] == "insufficient_data"
    assert client.monitoring.alerts("churn") == []  # neither drift nor "missing feature" on an empty window
