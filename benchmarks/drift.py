"""Drift of a window of 1,000,000 rows x 32 features against a reference profile of the same size: this
project's path (compute_drift over the stored profile + the JSON summary + the drift report written to a SQLite
store) against a direct numpy/scipy computation of the same statistics in the same run.

Both sides do the same work per feature: the reference's decile bins (taken once, untimed, as training does),
bin counts and PSI with epsilon 1e-4, KS two-sample against the reference's 10,000-value sample for numeric
features, chi-square over the reference categories for categorical ones. Target: ratio_vs_direct (throughput
over the direct computation's) >= 0.5.

    .venv/bin/python benchmarks/drift.py          # BENCH_ROWS=200000 for a quicker look
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special, stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
from _report import emit_target, print_table

ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
NUMERIC, CATEGORICAL = 28, 4
EPS = 1e-4


def make_frame(n: int, seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {f"x{i:02d}": rng.normal(shift * (i % 3), 1.0 + 0.1 * (i % 5), n) for i in range(NUMERIC)}
    for j in range(CATEGORICAL):
        p = np.array([0.5 - 0.2 * shift, 0.3, 0.2 + 0.2 * shift])
        data[f"c{j}"] = rng.choice(np.array(["a", "b", "c"], dtype=object), n, p=p / p.sum())
    return pd.DataFrame(data)


def project_path(reference, window: pd.DataFrame, home: Path) -> tuple[float, dict]:
    os.environ["MLPLATFORM_HOME"] = str(home)
    from mlplatform.client import Client
    from mlplatform.monitoring.check import _json_safe
    from mlplatform.monitoring.drift import compute_drift

    client = Client()
    start = time.perf_counter()
    result = compute_drift(reference, window, source="benchmark")
    summary = _json_safe(result.to_dict())
    client.monitoring.save_drift_report("bench", 1, n=result.n, level=result.level.name, summary=summary)
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed, {k: v["psi"] for k, v in summary["features"].items()}


def direct_path(reference, window: pd.DataFrame) -> tuple[float, dict]:
    start = time.perf_counter()
    out = {}
    for name, profile in reference.features.items():
        if profile["kind"] == "numeric":
            values = window[name].to_numpy(dtype=np.float64)
            values = values[np.isfinite(values)]
            counts = np.bincount(np.searchsorted(profile["edges"], values), minlength=len(profile["edges"]) + 1)
            ref = np.asarray(profile["proportions"])
            stats.ks_2samp(np.asarray(profile["sample"]), values)
        else:
            cats = list(profile["categories"])
            vc = window[name].value_counts()
            counts = np.array([vc.get(c, 0) for c in cats] + [vc.drop(cats, errors="ignore").sum()], dtype=float)
            ref_counts = np.array([profile["categories"][c] for c in cats] + [0], dtype=float)
            ref = ref_counts / ref_counts.sum()
            table = np.vstack([ref_counts, counts])
            stats.chi2_contingency(table[:, table.sum(axis=0) > 0], correction=False)
        cur = counts / counts.sum()
        ref, cur = np.where(ref <= 0, EPS, ref), np.where(cur <= 0, EPS, cur)
        out[name] = float(np.sum(special.rel_entr(cur, ref) + special.rel_entr(ref, cur)))
    return time.perf_counter() - start, out


def main() -> int:
    from mlplatform.features.reference import DriftReference, build_drift_reference

    reference_frame = make_frame(ROWS, seed=1, shift=0.0)
    reference = DriftReference.from_dict(build_drift_reference(reference_frame, list(reference_frame.columns)))
    del reference_frame
    window = make_frame(ROWS, seed=2, shift=0.3)
    direct_s, direct_psi = direct_path(reference, window)  # warm both paths' imports and caches first
    with tempfile.TemporaryDirectory() as tmp:
        project_s, project_psi = project_path(reference, window, Path(tmp) / "warm")
        direct_s, direct_psi = min((direct_path(reference, window) for _ in range(2)), key=lambda r: r[0])
        project_s, project_psi = min((project_path(reference, window, Path(tmp) / f"h{i}") for i in range(2)),
                                     key=lambda r: r[0])
    worst = max(abs(project_psi[k] - direct_psi[k]) for k in direct_psi)
    assert worst < 1e-9, f"the two paths disagree on PSI by {worst}"
    cells = ROWS * (NUMERIC + CATEGORICAL)
    print_table(f"drift: {ROWS:,} rows x {NUMERIC + CATEGORICAL} features vs a {ROWS:,}-row reference", [
        {"path": "direct numpy/scipy", "seconds": direct_s, "rows_per_s": ROWS / direct_s,
         "cells_per_s": cells / direct_s},
        {"path": "mlplatform (+summary, store)", "seconds": project_s, "rows_per_s": ROWS / project_s,
         "cells_per_s": cells / project_s}])
    print(f"max |PSI difference| {worst:.2e}")
    ok = emit_target("drift", "ratio_vs_direct", direct_s / project_s, 0.5)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
