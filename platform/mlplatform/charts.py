"""Server-drawn HTML pieces shared by the monitoring report and the web console: level colours, the base CSS,
value formatting, tables and inline SVG charts. No scripts and no network: every chart is plain SVG markup."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

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


def esc(value: Any) -> str:
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
                cells.append(f"<td{cls}>{esc(value)}</td>")
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


def line_chart_svg(series: dict[str, list[tuple[Any, float]]], width: int = 560, height: int = 220,
                   x_name: str | None = None) -> str:
    """One polyline per named series over sortable x labels (report times, epochs), points in x order. With
    ``x_name`` the first and last x values are written under the axis (``epoch 1`` ... ``epoch 30``)."""
    points = [v for values in series.values() for _, v in values]
    if not points:
        return '<p class="muted">no history yet</p>'
    top = max(max(points), 1e-9) * 1.1
    labels = sorted({t for values in series.values() for t, _ in values})
    left, plot_w, plot_h, base = 40, width - 60, height - 50, height - 30
    step = plot_w / max(len(labels) - 1, 1)
    position = {t: i for i, t in enumerate(labels)}
    colours = ["#c62828", "#1565c0", "#2e7d32", "#6a1b9a"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#999"/>',
             f'<text x="4" y="{base - plot_h + 4}" font-size="10">{top:.4f}</text>']
    if x_name is not None:
        parts.append(f'<text x="{left}" y="{base + 12}" font-size="9">{html.escape(f"{x_name} {labels[0]}")}</text>'
                     f'<text x="{left + plot_w}" y="{base + 12}" font-size="9" text-anchor="end">'
                     f"{html.escape(f'{x_name} {labels[-1]}')}</text>")
    for k, (name, values) in enumerate(series.items()):
        colour = colours[k % len(colours)]
        coords = [(left + position[t] * step, base - plot_h * v / top) for t, v in values]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{html.escape(name)} '
                     f"{v:.4f}</title></circle>" for (x, y), (_, v) in zip(coords, values, strict=True))
        parts.append(f'<text x="{left + 10 + 120 * k}" y="{height - 6}" font-size="11" fill="{colour}">'
                     f"{html.escape(name)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def timeline_svg(segments: Sequence[tuple[str, float, float, str]], start_label: str, end_label: str,
                 width: int = 720, height: int = 56) -> str:
    """Horizontal tenures on one time axis: (label, start, end, title) with start/end as fractions 0..1.

    Used for alias history: one glance shows which version held the alias at any date."""
    colours = ["#1565c0", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#ad1457"]
    left, plot_w = 10, width - 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<line x1="{left}" y1="30" x2="{left + plot_w}" y2="30" stroke="#999"/>']
    for i, (label, start, end, title) in enumerate(segments):
        x, w = left + plot_w * start, max(plot_w * (end - start), 2)
        colour = colours[i % len(colours)]
        parts.append(f'<rect x="{x:.1f}" y="12" width="{w:.1f}" height="18" fill="{colour}">'
                     f"<title>{html.escape(title)}</title></rect>")
        if w > 18:
            parts.append(f'<text x="{x + 3:.1f}" y="25" font-size="11" fill="#fff">{html.escape(label)}</text>')
    parts.append(f'<text x="{left}" y="46" font-size="10">{html.escape(start_label)}</text>'
                 f'<text x="{left + plot_w}" y="46" font-size="10" text-anchor="end">{html.escape(end_label)}</text>'
                 "</svg>")
    return "".join(parts)
