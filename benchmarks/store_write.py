"""Metric logging throughput through the store API (batched) against raw ``sqlite3.executemany`` of the same rows.

Both write the same rows to SQLite files with the same pragmas (WAL, synchronous=NORMAL) in the same run.
Target: batched_vs_sqlite3 >= 0.3.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import emit_target, print_table

ROWS = int(os.environ.get("BENCH_ROWS", "100000"))
BATCH = 1000


def bench_store(home: Path) -> float:
    os.environ["MLPLATFORM_HOME"] = str(home)
    from mlplatform.client import Client

    client = Client()
    run = client.runs.start_run("bench", "train")
    rows = [{"key": f"m{i % 10}", "value": float(i), "step": i} for i in range(ROWS)]
    start = time.perf_counter()
    for i in range(0, ROWS, BATCH):
        client.runs.log_metrics(run.id, rows[i:i + BATCH])
    elapsed = time.perf_counter() - start
    assert client.runs.count_metrics(run.id) == ROWS
    client.close()
    return ROWS / elapsed


def bench_sqlite3(path: Path) -> float:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE metrics (id INTEGER PRIMARY KEY, run_id TEXT, key TEXT, value REAL, step INTEGER, "
                 "split TEXT, fold INTEGER, slice TEXT, timestamp TEXT)")
    conn.execute("CREATE INDEX ix_run_key_step ON metrics (run_id, key, step)")
    conn.execute("CREATE INDEX ix_key ON metrics (key)")
    now = datetime.now(UTC).isoformat()
    rows = [("run", f"m{i % 10}", float(i), i, None, None, None, now) for i in range(ROWS)]
    start = time.perf_counter()
    for i in range(0, ROWS, BATCH):
        with conn:
            conn.executemany("INSERT INTO metrics (run_id, key, value, step, split, fold, slice, timestamp) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows[i:i + BATCH])
    elapsed = time.perf_counter() - start
    conn.close()
    return ROWS / elapsed


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        raw = bench_sqlite3(Path(tmp) / "raw.db")
        store = bench_store(Path(tmp) / "home")
    ratio = store / raw
    print_table(f"metric logging, {ROWS:,} rows in batches of {BATCH}", [
        {"writer": "raw sqlite3.executemany", "rows_per_s": raw},
        {"writer": "mlplatform store (batched)", "rows_per_s": store},
        {"writer": "ratio store/raw", "rows_per_s": ratio},
    ])
    ok = emit_target("store_write", "batched_vs_sqlite3", ratio, 0.3)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
