"""The monitoring report (SPEC S8.13): one self-contained HTML file (inline CSS, inline SVG charts, no scripts,
no network) plus the same content as JSON. Values are shown to 4 decimals. Nothing opens a plot window."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlplatform.charts import (
    CSS,
    CUR_COLOUR,
    LEVEL_COLOURS,
    REF_COLOUR,
    badge,
    bar_chart_svg,
    esc,
    fmt,
    histogram_svg,
    line_chart_svg,
    table,
)
from mlplatform.entities import Alert, DriftReport
from mlplatform.monitoring.estimation import performance_rows


def round4(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: round4(v) for k, v in value.items()}
    if isinstance(value, list):
        return [round4(v) for v in value]
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    return value


# -- the report ----------------------------------------------------------------------------------------------------
def build_report_data(result: dict[str, Any], history: Sequence[DriftReport],
                      alerts: Sequence[Alert], decisions: Sequence[Any] = ()) -> dict[str, Any]:
    timeline = []
    for report in sorted(history, key=lambda r: r.created_at):
        accuracy = ((report.summary.get("evaluation") or {}).get("metrics") or {}).get("accuracy")
        psis = [f.get("psi") for f in (report.summary.get("drift") or {}).get("features", {}).values()
                if f.get("psi") is not None]
        timeline.append({"time": report.created_at.isoformat(), "level": report.level, "n": report.n,
                         "max_psi": max(psis) if psis else None, "accuracy": accuracy})
    alert_rows = [{"created_at": a.created_at.isoformat(), "updated_at": a.updated_at.isoformat(), "type": a.type,
                   "metric": a.metric, "level": a.level, "status": a.status, "value": a.value,
                   "message": a.message, "runbook_url": a.runbook_url}
                  for a in sorted(alerts, key=lambda a: a.created_at)]
    # the automatic loop's decisions (store rows, newest first) as one line per step, oldest first
    steps = [{"time": step.get("at", ""), "decision": d.id[:8], "trigger": d.trigger or "-", "step": step["step"],
              "status": d.status, "job_id": d.job_id or "-", "reason": step.get("reason") or step.get("error")
              or (d.reason if step["step"] in ("decided", "checked", "held") else "") or ""}
             for d in decisions for step in d.timeline]
    return round4({"generated_at": datetime.now(UTC).isoformat(), "check": result, "history": timeline,
                   "alerts": alert_rows, "loop": sorted(steps, key=lambda r: r["time"])})


def render_html(data: dict[str, Any]) -> str:
    check = data["check"]
    drift = check["drift"]
    features = list(drift["features"].values())
    title = f"Monitoring report: {check['model']}:{check['version']}"
    sections = [f"<h1>{html.escape(title)}</h1>",
                f"<p>Overall level {badge(check['level'])} &nbsp; window <b>{esc(drift['source'])}</b>, "
                f"n={esc(drift['n'])} ({esc(drift['status'])}), {esc(drift['window_start'])} to "
                f"{esc(drift['window_end'])}. <span class='muted'>Generated {esc(data['generated_at'])}.</span></p>"]
    alerts_now = check.get("alerts") or []
    sections.append("<h2>Alerts raised by this check</h2>" + (
        table(alerts_now, ["type", "metric", "level", "value", "threshold", "message"]) if alerts_now
        else "<p>None: every checked metric is GREEN.</p>"))
    sections.append("<h2>Feature drift (PSI, KS, chi-square)</h2>" + table(
        [f | {"statistic": f.get("statistic"), "p_value": f.get("p_value")} for f in features],
        ["name", "kind", "status", "n", "missing_rate", "psi", "psi_band", "test", "statistic", "p_value", "drift",
         "level"]))
    scored = sorted((f for f in features if f.get("psi") is not None), key=lambda f: -f["psi"])
    if scored:
        sections.append("<h2>PSI per feature</h2><figure><figcaption>PSI with the 0.10 / 0.15 / 0.25 level "
                        "thresholds</figcaption>" + bar_chart_svg(
                            [(f["name"], f["psi"], LEVEL_COLOURS.get(f["level"], "#555")) for f in scored],
                            [(0.10, LEVEL_COLOURS["YELLOW"]), (0.15, LEVEL_COLOURS["ORANGE"]),
                             (0.25, LEVEL_COLOURS["RED"])]) + "</figure>")
    drifted = [f for f in scored if f["psi"] >= 0.1 or f.get("drift")] or scored[:3]
    prediction = drift.get("prediction")
    if prediction and prediction.get("current_proportions"):
        drifted = [*drifted, prediction]
    if drifted:
        legend = (f'<p class="legend"><span style="background:{REF_COLOUR}"></span>reference'
                  f'<span style="background:{CUR_COLOUR}"></span>current window</p>')
        figures = "".join(
            f"<figure><figcaption>{html.escape(f['name'])}: PSI {fmt(f.get('psi'))}, level {f['level']}"
            f"</figcaption>{histogram_svg(f['bins'], f['reference_proportions'], f['current_proportions'])}</figure>"
            for f in drifted)
        sections.append("<h2>Reference vs current distributions</h2>" + legend + f'<div class="charts">{figures}</div>')
    evaluation = check.get("evaluation") or {}
    metrics = evaluation.get("metrics")
    sections.append("<h2>Live metric</h2>" + (
        table([{"metric": k, "value": v} for k, v in metrics.items()], ["metric", "value"])
        + table([evaluation.get("decay", {})], ["metric", "baseline", "current", "n", "k", "relative_drop",
                                                 "p_value", "decayed", "status"])
        if metrics else "<p>No labels joined in this window yet (proxy: prediction distribution above).</p>"))
    performance = performance_rows(evaluation)
    if performance:
        sections.append("<h2>Realized and estimated performance</h2><p>Estimated: confidence-based (CBPE) from "
                        "calibrated probabilities, no labels needed; it follows covariate shift and cannot see "
                        "concept drift.</p>" + table(performance, ["metric", "realized", "estimated"]))
    history = data.get("history") or []
    series = {"max PSI": [(h["time"], h["max_psi"]) for h in history if h.get("max_psi") is not None],
              "accuracy": [(h["time"], h["accuracy"]) for h in history if h.get("accuracy") is not None]}
    sections.append("<h2>Statistics over time</h2><figure><figcaption>max PSI and live accuracy per check"
                    "</figcaption>" + line_chart_svg({k: v for k, v in series.items() if v}) + "</figure>"
                    + (table(history, ["time", "level", "n", "max_psi", "accuracy"]) if history else ""))
    fairness = check.get("fairness") or []
    if fairness:
        parts = []
        for report in fairness:
            groups = [{"group": g} | r for g, r in report["groups"].items()]
            parts.append(f"<p><b>{html.escape(report['attribute'])}</b>: selection-rate ratio "
                         f"{fmt(report.get('selection_rate_ratio'))} (four-fifths rule "
                         f"{'passes' if report.get('passes_four_fifths') else 'fails or undefined'}), demographic "
                         f"parity difference {fmt(report.get('demographic_parity_difference'))}, constant predictor "
                         f"{fmt(report.get('constant_predictor'))}</p>"
                         + table(groups, ["group", "count", "status", "selection_rate", "accuracy", "tpr", "fpr"]))
        sections.append("<h2>Fairness</h2>" + "".join(parts))
    retrain = check.get("retrain")
    if retrain:
        sections.append("<h2>Retraining</h2>" + table([retrain], ["recommend", "reasons", "blocked_by", "level"]))
    if data.get("loop"):
        sections.append("<h2>Loop decisions</h2><p>What the automatic loop decided, and every step it took "
                        "(retrain job, gate, rollout), oldest first.</p>" + table(
                            data["loop"], ["time", "decision", "trigger", "step", "status", "job_id", "reason"]))
    sections.append("<h2>Alert timeline</h2>" + (table(data["alerts"], ["created_at", "updated_at", "type",
                                                                         "metric", "level", "status", "value",
                                                                         "message"])
                                                 if data["alerts"] else "<p>No alerts recorded.</p>"))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>{''.join(sections)}</body></html>")


def write_report(result: dict[str, Any], out_dir: Path | str, *, history: Sequence[DriftReport] = (),
                 alerts: Sequence[Alert] = (), decisions: Sequence[Any] = ()) -> tuple[Path, Path]:
    """Write ``<model>-v<version>-<time>.html`` and ``.json``; also ``latest.html`` for the serving app."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = build_report_data(result, history, alerts, decisions)
    stem = f"{result['model']}-v{result['version']}-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
    page = render_html(data)
    html_path, json_path = out / f"{stem}.html", out / f"{stem}.json"
    html_path.write_text(page, encoding="utf-8")
    json_path.write_text(json.dumps(data, indent=1, sort_keys=True, default=str), encoding="utf-8")
    (out / f"{result['model']}-latest.html").write_text(page, encoding="utf-8")
    return html_path, json_path
