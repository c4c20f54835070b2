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

from mlplatform.entities import Alert, DriftReport
from mlplatform.monitoring.estimation import performance_rows

LEVEL_COLOURS = {"GREEN": "#2e7d32", "YELLOW": "#f9a825", "ORANGE": "#ef6c00", "RED": "#c62828"}
REF_COLOUR, CUR_COLOUR = "#5c6bc0", "#ef6c00"

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:6px 0;background:#fff}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left} th{background:#f0f0f0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:16px} figure{margin:0;background:#fff;border:1px solid #ddd;padding:8px}
figcaption{font-size:13px;font-weight:600;margin-bottom:4px} .muted{color:#777;font-size:12px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
"""


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.4f}"
    if isinstance(value, list | tuple):
        return "; ".join(fmt(v) for v in value)
    return str(value)


def round4(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: round4(v) for k, v in value.items()}
    if isinstance(value, list):
        return [round4(v) for v in value]
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    return value


def _esc(value: Any) -> str:
    return html.escape(fmt(value))


def badge(level: str) -> str:
    return f'<span class="badge" style="background:{LEVEL_COLOURS.get(level, "#555")}">{html.escape(level)}</span>'


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            if c == "level" and isinstance(value, str):
                cells.append(f"<td>{badge(value)}</td>")
            else:
                cls = ' class="num"' if isinstance(value, int | float) and not isinstance(value, bool) else ""
                cells.append(f"<td{cls}>{_esc(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# -- charts --------------------------------------------------------------------------------------------------------
def histogram_svg(bins: Sequence[str], reference: Sequence[float], current: Sequence[float],
                  width: int = 420, height: int = 220) -> str:
    """Grouped bars: reference vs current proportion per reference bin."""
    n = max(len(bins), 1)
    top = max([*reference, *current, 1e-9])
    plot_w, plot_h, left, base = width - 50, height - 60, 40, height - 40
    group = plot_w / n
    bar = max(group / 2 - 2, 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#999"/>',
             f'<text x="4" y="{base - plot_h + 4}" font-size="10">{top:.4f}</text>',
             f'<text x="4" y="{base}" font-size="10">0</text>']
    for i, name in enumerate(bins):
        for j, (values, colour) in enumerate(((reference, REF_COLOUR), (current, CUR_COLOUR))):
            value = values[i] if i < len(values) else 0.0
            h = plot_h * value / top
            x = left + i * group + 1 + j * bar
            parts.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                         f'<title>{html.escape(name)} {"reference" if j == 0 else "current"} {value:.4f}</title>'
                         "</rect>")
        if n <= 12:
            label = html.escape(name if len(name) <= 12 else name[:11] + "…")
            parts.append(f'<text x="{left + (i + 0.5) * group:.1f}" y="{base + 12}" font-size="8" '
                         f'text-anchor="middle">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart_svg(items: Sequence[tuple[str, float, str]], lines: Sequence[tuple[float, str]] = (),
                  width: int = 560, row: int = 20) -> str:
    """Horizontal bars (label, value, colour) with vertical threshold lines."""
    height = row * max(len(items), 1) + 30
    top = max([v for _, v, _ in items] + [v for v, _ in lines] + [1e-9]) * 1.05
    left, plot_w = 130, width - 190
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    for i, (label, value, colour) in enumerate(items):
        y, w = 5 + i * row, plot_w * value / top
        parts.append(f'<text x="{left - 6}" y="{y + row * 0.65:.1f}" font-size="11" text-anchor="end">'
                     f"{html.escape(label)}</text>"
                     f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{row - 6}" fill="{colour}"/>'
                     f'<text x="{left + w + 4:.1f}" y="{y + row * 0.65:.1f}" font-size="10">{value:.4f}</text>')
    for value, colour in lines:
        x = left + plot_w * value / top
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 20}" stroke="{colour}" '
                     f'stroke-dasharray="4 3"/><text x="{x:.1f}" y="{height - 6}" font-size="9" '
                     f'text-anchor="middle">{value:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart_svg(series: dict[str, list[tuple[str, float]]], width: int = 560, height: int = 220) -> str:
    """One polyline per named series over the report times (points in time order)."""
    points = [v for values in series.values() for _, v in values]
    if not points:
        return '<p class="muted">no history yet</p>'
    top = max(max(points), 1e-9) * 1.1
    labels = sorted({t for values in series.values() for t, _ in values})
    left, plot_w, plot_h, base = 40, width - 60, height - 50, height - 30
    step = plot_w / max(len(labels) - 1, 1)
    colours = ["#c62828", "#1565c0", "#2e7d32", "#6a1b9a"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#999"/>',
             f'<text x="4" y="{base - plot_h + 4}" font-size="10">{top:.4f}</text>']
    for k, (name, values) in enumerate(series.items()):
        colour = colours[k % len(colours)]
        coords = [(left + labels.index(t) * step, base - plot_h * v / top) for t, v in values]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{html.escape(name)} '
                     f"{v:.4f}</title></circle>" for (x, y), (_, v) in zip(coords, values, strict=True))
        parts.append(f'<text x="{left + 10 + 120 * k}" y="{height - 6}" font-size="11" fill="{colour}">'
                     f"{html.escape(name)}</text>")
    parts.append("</svg>")
    return "".join(parts)


# -- the report ----------------------------------------------------------------------------------------------------
def build_report_data(result: dict[str, Any], history: Sequence[DriftReport],
                      alerts: Sequence[Alert]) -> dict[str, Any]:
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
    return round4({"generated_at": datetime.now(UTC).isoformat(), "check": result, "history": timeline,
                   "alerts": alert_rows})


def render_html(data: dict[str, Any]) -> str:
    check = data["check"]
    drift = check["drift"]
    features = list(drift["features"].values())
    title = f"Monitoring report: {check['model']}:{check['version']}"
    sections = [f"<h1>{html.escape(title)}</h1>",
                f"<p>Overall level {badge(check['level'])} &nbsp; window <b>{_esc(drift['source'])}</b>, "
                f"n={_esc(drift['n'])} ({_esc(drift['status'])}), {_esc(drift['window_start'])} to "
                f"{_esc(drift['window_end'])}. <span class='muted'>Generated {_esc(data['generated_at'])}.</span></p>"]
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
    sections.append("<h2>Alert timeline</h2>" + (table(data["alerts"], ["created_at", "updated_at", "type",
                                                                         "metric", "level", "status", "value",
                                                                         "message"])
                                                 if data["alerts"] else "<p>No alerts recorded.</p>"))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>{''.join(sections)}</body></html>")


def write_report(result: dict[str, Any], out_dir: Path | str, *, history: Sequence[DriftReport] = (),
                 alerts: Sequence[Alert] = ()) -> tuple[Path, Path]:
    """Write ``<model>-v<version>-<time>.html`` and ``.json``; also ``latest.html`` for the serving app."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = build_report_data(result, history, alerts)
    stem = f"{result['model']}-v{result['version']}-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
    page = render_html(data)
    html_path, json_path = out / f"{stem}.html", out / f"{stem}.json"
    html_path.write_text(page, encoding="utf-8")
    json_path.write_text(json.dumps(data, indent=1, sort_keys=True, default=str), encoding="utf-8")
    (out / f"{result['model']}-latest.html").write_text(page, encoding="utf-8")
    return html_path, json_path
