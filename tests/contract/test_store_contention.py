"""The store under contention: colliding get-or-create on PostgreSQL, SQLite reads beside a long write, a busy
database surfacing as one ``StoreBusy``, and two processes creating the schema of a fresh store at once."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import fresh_postgres_database

WRITERS = 16
NAMES = 50
# Fixed ids so every writer supplies the same 50 run ids: the idempotent path must hold under races too.
RUN_IDS = [str(uuid.UUID(int=i + 1)) for i in range(NAMES)]


def _collide(store_url: str, barrier: mp.synchronize.Barrier, errors: mp.Queue) -> None:
    from mlplatform.client import Client

    client = Client(store_url=store_url)
    barrier.wait(timeout=60)
    failures = []
    for i in range(NAMES):
        for what, call in (
            ("experiment", lambda i=i: client.runs.get_or_create_experiment(f"exp-{i}")),
            ("dataset", lambda i=i: client.datasets.register(f"ds-{i}", f"{i:064x}", uri=None, schema={},
                                                            row_count=i)),
            ("run", lambda i=i: client.runs.start_run(f"exp-{i}", "train", run_id=RUN_IDS[i])),
        ):
            try:
                call()
            except Exception as exc:
                failures.append(f"{what} {i}: {type(exc).__name__}: {exc}")
    client.close()
    errors.put(failures)


@pytest.mark.postgres
def test_sixteen_processes_colliding_on_fifty_names_make_one_row_each(postgres_server: str) -> None:
    url = fresh_postgres_database(postgres_server)
    from mlplatform.client import Client

    Client(store_url=url).close()  # the schema exists before the race: this test is about rows
    ctx = mp.get_context("fork")  # imports are already paid in the parent: 16 spawns would take ~20 s here
    barrier = ctx.Barrier(WRITERS)
    errors = ctx.Queue()
    procs = [ctx.Process(target=_collide, args=(url, barrier, errors)) for _ in range(WRITERS)]
    for p in procs:
        p.start()
    failures = [f for _ in procs for f in errors.get(timeout=120)]
    for p in procs:
        p.join(timeout=30)
    assert failures == []
    assert [p.exitcode for p in procs] == [0] * WRITERS
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        for table, column in (("experiments", "name"), ("datasets", "name"), ("runs", "id")):
            counts = conn.execute(sa.text(f"SELECT {column}, count(*) FROM {table} GROUP BY {column}")).all()
            assert len(counts) == NAMES, table
            assert {c for _, c in counts} == {1}, table
    engine.dispose()


def _hold_write_lock(db_path: Path, seconds: float, held: threading.Event) -> None:
    """A long write from another connection: the write lock is taken and kept for ``seconds``."""
    import sqlite3

    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO experiments (id, name, created_at) VALUES ('x', 'long-write', '2026-01-01')")
    held.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


def test_sqlite_read_during_a_long_write_returns_within_a_second(isolated_env: Path) -> None:
    from mlplatform.client import Client

    client = Client()
    client.runs.start_run("exp", "train")
    held = threading.Event()
    writer = threading.Thread(target=_hold_write_lock, args=(isolated_env / "store.db", 1.5, held))
    writer.start()
    assert held.wait(10)
    start = time.monotonic()
    runs = client.runs.list_runs()
    elapsed = time.monotonic() - start
    writer.join()
    client.close()
    assert len(runs) == 1
    assert elapsed < 1.0, f"a read waited {elapsed:.2f} s behind a writer"


def test_a_busy_sqlite_store_surfaces_as_one_store_busy_error(isolated_env: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from mlplatform.client import Client
    from mlplatform.errors import StoreBusy, Unavailable, exit_code_for, http_status_for
    from mlplatform.settings import reset_settings

    Client().close()
    monkeypatch.setenv("MLPLATFORM_STORE_BUSY_TIMEOUT_S", "0.2")
    reset_settings()
    client = Client()
    held = threading.Event()
    writer = threading.Thread(target=_hold_write_lock, args=(isolated_env / "store.db", 1.5, held))
    writer.start()
    assert held.wait(10)
    start = time.monotonic()
    with pytest.raises(StoreBusy) as caught:
        client.runs.start_run("exp", "train")
    elapsed = time.monotonic() - start
    writer.join()
    client.close()
    assert isinstance(caught.value, Unavailable)
    assert (http_status_for(caught.value), exit_code_for(caught.value)) == (503, 2)
    assert "busy" in str(caught.value) and "MLPLATFORM_STORE_BUSY_TIMEOUT_S" in str(caught.value)
    assert elapsed < 2.5, "the retries must stay within the busy timeout's order, not multiply it"


def _open_store(store_url: str, barrier: mp.synchronize.Barrier, errors: mp.Queue) -> None:
    from mlplatform.client import Client

    barrier.wait(timeout=60)
    try:
        Client(store_url=store_url).close()
        errors.put("")
    except Exception as exc:
        errors.put(f"{type(exc).__name__}: {exc}")


def test_processes_starting_together_on_a_fresh_store_all_get_the_schema(store_url: str) -> None:
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(4)
    errors = ctx.Queue()
    procs = [ctx.Process(target=_open_store, args=(store_url, barrier, errors)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [errors.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert results == [""] * 4
