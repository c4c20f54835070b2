"""The store under contention.

- ``pg_concurrent_writes_ratio``: rows/s written by 8 processes at once over 1 process, on PostgreSQL. Each unit of
  work is a get-or-create of one of 10 shared experiment names (the ON CONFLICT path) plus one batched insert of
  20 metric rows, each in its own transaction. Target >= 2.0: the server, not our locks, should be the limit.
  PostgreSQL comes from ``MLPLATFORM_BENCH_PG_URL`` or a throwaway server (Debian's postgresql, as in the tests).
  ``bare_psycopg_ratio`` runs the same statements through bare psycopg beside it: the machine's own ceiling at
  that moment (no target; when it is below 2 too, free CPU is the limit, not the store).
- ``sqlite_read_p99_ms_during_writes``: p99 latency of reads (``get_run`` + ``list_runs``) while another process
  writes 500-row batches back to back into the same SQLite file. Target <= 50 ms: reads are deferred transactions
  under WAL and never queue behind the writer (``reads_that_waited_on_a_lock`` counts reads that would have: the
  reader's busy timeout is 1 ms). ``p99_ms_no_writer`` is the same reads alone, this machine's own noise.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
from _report import emit_target, print_table  # noqa: E402

UNITS = int(os.environ.get("BENCH_UNITS", "150"))  # units of work per writer process
ROWS_PER_UNIT = 20
WRITERS = 8
READS = int(os.environ.get("BENCH_READS", "300"))


def _writer(url: str, run_id: str, worker: int, barrier: mp.synchronize.Barrier) -> None:
    from mlplatform.client import Client

    client = Client(store_url=url)
    client.runs.get_or_create_experiment("warm-up")  # connect before the clock starts
    barrier.wait(timeout=120)
    for unit in range(UNITS):
        client.runs.get_or_create_experiment(f"shared-{unit % 10}")
        client.runs.log_metrics(run_id, [{"key": f"w{worker}", "value": float(i), "step": unit * ROWS_PER_UNIT + i}
                                         for i in range(ROWS_PER_UNIT)])
    client.close()


def _rows_per_second(target: object, args: tuple[object, ...], processes: int) -> float:
    """Start ``processes`` writers ``target(*args, worker, barrier)``; time them from the barrier to the last exit."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(processes + 1)
    procs = [ctx.Process(target=target, args=(*args, w, barrier)) for w in range(processes)]
    for p in procs:
        p.start()
    barrier.wait(timeout=120)
    start = time.perf_counter()
    for p in procs:
        p.join(timeout=600)
    elapsed = time.perf_counter() - start
    if any(p.exitcode != 0 for p in procs):
        raise SystemExit(f"a writer failed: exit codes {[p.exitcode for p in procs]}")
    return processes * UNITS * ROWS_PER_UNIT / elapsed


def _raw_writer(dsn: str, _worker: int, barrier: mp.synchronize.Barrier) -> None:
    import psycopg

    with psycopg.connect(dsn) as conn:
        barrier.wait(timeout=120)
        for unit in range(UNITS):
            with conn.transaction():
                conn.execute("SELECT id FROM raw_experiments WHERE name = %s", (f"shared-{unit % 10}",))
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT 1 FROM raw_experiments WHERE name = 'shared-0'")
                cur.executemany("INSERT INTO raw_metrics (value) VALUES (%s)",
                                [(float(i),) for i in range(ROWS_PER_UNIT)])


def machine_ceiling(server_url: str) -> float:
    """The same statements through bare psycopg (no ORM, no retries, no pool): what this machine allows right now.
    On a 2-core machine shared with other work the ratio is bound by free CPU, not by anything in the store."""
    import psycopg
    from tests.conftest import fresh_postgres_database

    dsn = fresh_postgres_database(server_url).replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE raw_experiments (id serial PRIMARY KEY, name text UNIQUE)")
        conn.execute("INSERT INTO raw_experiments (name) SELECT 'shared-' || g FROM generate_series(0, 9) g")
        conn.execute("CREATE TABLE raw_metrics (id serial PRIMARY KEY, value float)")
    return _rows_per_second(_raw_writer, (dsn,), WRITERS) / _rows_per_second(_raw_writer, (dsn,), 1)


def bench_postgres(server_url: str) -> dict[str, float]:
    from tests.conftest import fresh_postgres_database

    from mlplatform.client import Client

    url = fresh_postgres_database(server_url)
    client = Client(store_url=url)
    run = client.runs.start_run("bench", "train")
    single = _rows_per_second(_writer, (url, run.id), 1)
    many = _rows_per_second(_writer, (url, run.id), WRITERS)
    expected = (1 + WRITERS) * UNITS * ROWS_PER_UNIT
    assert client.runs.count_metrics(run.id) == expected, "rows were lost"
    client.close()
    return {"one_process_rows_per_s": single, "eight_processes_rows_per_s": many, "ratio": many / single}


def _busy_writer(url: str, run_id: str, seconds: float, started: mp.synchronize.Event) -> None:
    from mlplatform.client import Client

    client = Client(store_url=url)
    started.set()
    deadline = time.monotonic() + seconds
    step = 0
    while time.monotonic() < deadline:
        client.runs.log_metrics(run_id, [{"key": "loss", "value": 1.0, "step": step + i} for i in range(500)])
        step += 500
    client.close()


def bench_sqlite_reads(home: Path) -> dict[str, float]:
    from mlplatform.client import Client
    from mlplatform.settings import Settings

    url = f"sqlite:///{home / 'store.db'}"
    client = Client(store_url=url)
    run = client.runs.start_run("bench", "train")
    quiet = _read_latencies(client, run.id)  # the same reads with no writer: this machine's own noise
    ctx = mp.get_context("fork")
    started = ctx.Event()
    writer = ctx.Process(target=_busy_writer, args=(url, run.id, 60.0, started))
    writer.start()
    started.wait(60)
    time.sleep(0.5)
    # A reader that waits at most 1 ms on a lock: any read that queued behind the writer fails with StoreBusy and
    # is counted, so lock waits are told apart from CPU scheduling noise on a loaded machine.
    reader = Client(Settings(home=home, store_busy_timeout_s=0.001), store_url=url)
    busy = _read_latencies(reader, run.id)
    writer.terminate()
    writer.join(timeout=30)
    written = client.runs.count_metrics(run.id)
    client.close()
    reader.close()
    return {"reads": READS, "p50_ms": _pct(busy[0], 0.5), "p99_ms": _pct(busy[0], 0.99),
            "p99_ms_no_writer": _pct(quiet[0], 0.99), "reads_that_waited_on_a_lock": busy[1],
            "rows_written": written}


def _read_latencies(client: object, run_id: str) -> tuple[list[float], int]:
    from mlplatform.errors import StoreBusy

    latencies, blocked = [], 0
    for _ in range(READS):
        begin = time.perf_counter()
        try:
            client.runs.get_run(run_id)  # type: ignore[attr-defined]
            client.runs.list_runs(limit=10)  # type: ignore[attr-defined]
        except StoreBusy:
            blocked += 1
        latencies.append((time.perf_counter() - begin) * 1000)
    return sorted(latencies), blocked


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


def main() -> int:
    from tests._postgres import throwaway_server

    ok = True
    with tempfile.TemporaryDirectory() as home:
        os.environ["MLPLATFORM_HOME"] = home
        sqlite = bench_sqlite_reads(Path(home))
    print_table("SQLite reads while another process writes", [sqlite])
    ok &= emit_target("store_contention", "sqlite_read_p99_ms_during_writes", sqlite["p99_ms"], 50.0,
                      higher_is_better=False)
    pg_url = os.environ.get("MLPLATFORM_BENCH_PG_URL")
    with throwaway_server() if not pg_url else _given(pg_url) as server:
        if server is None:
            print("no PostgreSQL (install Debian's postgresql or set MLPLATFORM_BENCH_PG_URL): skipped")
            return 0 if ok else 1
        pg = bench_postgres(server)
        pg["bare_psycopg_ratio"] = machine_ceiling(server)
    print_table(f"PostgreSQL writes ({UNITS} units x {ROWS_PER_UNIT} rows per process)", [pg])
    ok &= emit_target("store_contention", "pg_concurrent_writes_ratio", pg["ratio"], 2.0)
    return 0 if ok else 1


class _given:
    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    sys.exit(main())
