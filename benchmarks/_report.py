"""Shared benchmark output: a readable table, then one JSON line per target."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def print_table(title: str, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print(f"\n{title}")
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(_fmt(row.get(c)).ljust(widths[c]) for c in columns))


def _fmt(value: Any) -> str:
    return f"{value:,.3f}" if isinstance(value, float) else str(value)


def emit_target(benchmark: str, metric: str, value: float, target: float, higher_is_better: bool = True) -> bool:
    ok = value >= target if higher_is_better else value <= target
    print(json.dumps({"benchmark": benchmark, "metric": metric, "value": round(value, 4), "target": target,
                      "ok": ok}))
    return ok
