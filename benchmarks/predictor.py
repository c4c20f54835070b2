"""The Predictor's overhead over the bare model (issue 19): validation, transform and result assembly per call.

For the demo's model shapes (churn features: 5 numeric, 3 categorical; a logistic regression and the torch MLP
[64, 32] with 4-wide embeddings), the same model is timed two ways on the same rows and batch sizes:

* the platform: ``Predictor.predict`` on JSON rows (a list of dicts, what a request carries), and on Arrow record
  batches for the 100,000-row run (what batch scoring reads);
* the bare model: ``predict_proba`` (sklearn) or the module's forward under ``torch.inference_mode`` (torch) on a
  matrix (and code tensor) prepared once beforehand.

torch runs on one thread (a replica with one CPU gets one: :func:`mlplatform.predictor.inference_threads`). Each
figure is the best of several rounds, rounds of the two sides interleaved, so that a busy machine slows both.
Ends with one JSON line per target. Run: ``.venv/bin/python benchmarks/predictor.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, os.path.dirname(__file__))

from _report import emit_target, print_table

TARGET_1_ROW = 10.0  # issue 19: Predictor.predict on 1 JSON row <= 10x the bare model call
TARGET_32_ROWS = 3.0
TARGET_100K = 0.5  # Predictor rows/s over the bare model's, 100,000 rows in batches of 1,024
BATCH = 1024
FAMILIES = ("logistic", "mlp")


def build_predictor(family: str, n_rows: int = 2000, seed: int = 0) -> tuple[Any, Any]:
    """A Predictor of the demo's shape, fitted in-process on generated churn rows, and those rows."""
    from mlplatform.artifacts.model_format import ModelManifest
    from mlplatform.datasets.synthetic import FEATURES, TARGET, make_churn
    from mlplatform.features.schema import schema_to_json
    from mlplatform.features.transform import TabularTransform
    from mlplatform.predictor import Predictor

    frame = make_churn(n_rows, seed=seed)
    transform = TabularTransform.fit(frame, FEATURES)
    common = {"task": "classification", "family": family, "target": TARGET, "classes": [0, 1], "threshold": 0.5,
              "input_schema": schema_to_json(transform.schema)}
    if family == "mlp":
        import torch

        from mlplatform.models.mlp import MLPConfig, TabularMLP

        torch.manual_seed(seed)  # the timing does not depend on the weights: an untrained network does
        model = TabularMLP(transform.n_outputs, 2, MLPConfig(hidden=[64, 32], dropout=0.1, embedding_dim=4),
                           transform.cardinalities, [c.name for c in transform.categorical]).eval()
        manifest = ModelManifest(framework="torch", model_file="model.pt", architecture=model.architecture(), **common)
    else:
        from mlplatform.models.sklearn_models import build_sklearn

        model = build_sklearn(family, "classification", {}, seed)
        model.fit(transform.transform(frame), frame[TARGET].to_numpy())
        manifest = ModelManifest(framework="sklearn", model_file="model.skops", **common)
    return Predictor(manifest, transform, model), frame[FEATURES]


def bare_call(predictor: Any, rows: Any) -> Callable[[], Any]:
    """The model alone on ``rows`` transformed once beforehand: what the Predictor's answer costs at least."""
    matrix, codes = predictor.transform.encode(predictor.check(rows).raise_for_issues())
    model = predictor.model
    if predictor.manifest.framework == "sklearn":
        dense = np.asarray(matrix, dtype=np.float64)
        return lambda: model.predict_proba(dense)
    import torch

    dense_t, codes_t = torch.from_numpy(matrix), torch.from_numpy(codes) if codes is not None else None

    def call() -> Any:
        with torch.inference_mode():
            return model(dense_t, codes_t)
    return call


def json_rows(frame: Any) -> list[dict[str, Any]]:
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def best_pair(a: Callable[[], Any], b: Callable[[], Any], calls: int, rounds: int) -> tuple[float, float]:
    """Seconds per call of ``a`` and ``b``: the best of ``rounds`` rounds of ``calls`` calls, interleaved."""
    a(), b()
    best_a = best_b = float("inf")
    for _ in range(rounds):
        for fn, which in ((a, "a"), (b, "b")):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            seconds = (time.perf_counter() - start) / calls
            if which == "a":
                best_a = min(best_a, seconds)
            else:
                best_b = min(best_b, seconds)
    return best_a, best_b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and 20,000 rows (a smoke run)")
    args = parser.parse_args()
    import torch

    from mlplatform.datasets.synthetic import FEATURES, make_churn

    torch.set_num_threads(1)
    rounds = 3 if args.quick else 7
    n_big = 20_000 if args.quick else 100_000
    big = make_churn(n_big, seed=1)[FEATURES]
    arrow = pa.Table.from_pandas(big, preserve_index=False)
    batches = [arrow.slice(i, BATCH) for i in range(0, n_big, BATCH)]
    json_batches = [json_rows(big.iloc[i:i + BATCH]) for i in range(0, BATCH * 4, BATCH)]
    table, targets = [], []
    for family in FAMILIES:
        predictor, frame = build_predictor(family)
        one, many = json_rows(frame.head(1)), json_rows(frame.head(32))
        p1, b1 = best_pair(lambda p=predictor, r=one: p.predict(r), bare_call(predictor, one), 200, rounds)
        p32, b32 = best_pair(lambda p=predictor, r=many: p.predict(r), bare_call(predictor, many), 100, rounds)
        bare_batches = [bare_call(predictor, part) for part in batches]

        def platform_all(p: Any = predictor) -> None:
            for part in batches:
                p.predict(part)

        def bare_all(calls: list[Callable[[], Any]] = bare_batches) -> None:
            for call in calls:
                call()

        p_big, b_big = best_pair(platform_all, bare_all, 1, max(2, rounds // 2))
        p_json, _ = best_pair(lambda p=predictor: [p.predict(x) for x in json_batches], lambda: None, 1,
                              max(2, rounds // 2))
        table.append({"family": family, "predict_1_row_us": p1 * 1e6, "bare_1_row_us": b1 * 1e6,
                      "predict_32_rows_us": p32 * 1e6, "bare_32_rows_us": b32 * 1e6,
                      "arrow_rows_per_s": n_big / p_big, "bare_rows_per_s": n_big / b_big,
                      "json_rows_per_s": BATCH * len(json_batches) / p_json})
        targets += [(f"overhead_ratio_1_row_{family}", p1 / b1, TARGET_1_ROW, False),
                    (f"overhead_ratio_32_rows_{family}", p32 / b32, TARGET_32_ROWS, False),
                    (f"rows_per_s_ratio_100k_{family}", b_big / p_big, TARGET_100K, True)]
    print_table(f"Predictor vs the bare model ({n_big:,} rows in batches of {BATCH:,}; torch threads 1; "
                f"load average {os.getloadavg()[0]:.1f})", table)
    ok = True
    for metric, value, target, higher in targets:
        ok &= emit_target("predictor", metric, value, target, higher_is_better=higher)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
