"""Schedules (SPEC S9.3) on a real store: two schedulers never run one slot twice, a trigger during a run is
skipped and recorded, failures are recorded, retried on the next tick and alert after 3 in a row, missed slots
are caught up; plus the ``mlplatform schedule`` CLI end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mlplatform.scheduler import add_schedule, run_due

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "mlplatform.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_two_schedulers_on_one_store_never_run_a_slot_twice(store_url) -> None:
    from mlplatform.client import Client

    client = Client(store_url=store_url)
    add_schedule(client, "hourly", cron="0 * * * *", command="store status", now=T0 - timedelta(hours=3))
    runs: list[str] = []
    lock = threading.Lock()

    def job(schedule) -> dict:
        with lock:
            runs.append(schedule.name)
        time.sleep(0.3)  # long enough for the other scheduler to arrive during the run
        return {}

    clock = Clock(T0 + timedelta(minutes=5))  # slots 10:00, 11:00, 12:00 are due (missed: caught up)
    results: dict[str, list] = {}

    def scheduler(owner: str) -> None:
        with Client(store_url=store_url) as own:  # each scheduler its own connection pool, like two processes
            results[owner] = run_due(own, owner=owner, execute=job, clock=clock)

    threads = [threading.Thread(target=scheduler, args=(f"s{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    recorded = client.schedules.runs("hourly")
    slots = [r.scheduled_for for r in recorded]
    assert len(slots) == len(set(slots)) == 3  # every slot recorded exactly once
    assert len(runs) == sum(r.status == "succeeded" for r in recorded)  # and nothing ran unrecorded
    assert len(runs) >= 1 and all(r.status in ("succeeded", "skipped") for r in recorded)
    assert client.schedules.get("hourly").next_run_at == T0 + timedelta(hours=1)
    assert client.schedules.get("hourly").lease_owner is None
    client.close()


def test_missed_slots_are_caught_up_and_a_trigger_during_a_run_is_skipped(client) -> None:
    add_schedule(client, "quarter", cron="*/15 * * * *", command="store status", now=T0 - timedelta(minutes=70))
    clock = Clock(T0 - timedelta(minutes=40))  # 11:20: the 11:00 and 11:15 slots were missed
    calls: list[datetime] = []

    def job(schedule) -> dict:
        calls.append(clock.now)
        if len(calls) == 2:
            clock.now += timedelta(minutes=30)  # the 11:15 run lasts until 11:50: 11:30 and 11:45 come due
        return {}

    outcomes = run_due(client, owner="solo", execute=job, clock=clock)
    statuses = [(o.slot.strftime("%H:%M"), o.status) for o in outcomes]
    assert statuses[:2] == [("11:00", "succeeded"), ("11:15", "succeeded")]  # caught up in order
    assert statuses[2:] == [("11:30", "skipped"), ("11:45", "skipped")] and len(calls) == 2
    skipped = [r for r in client.schedules.runs("quarter") if r.status == "skipped"]
    assert len(skipped) == 2 and all("while a run was in progress" in r.error for r in skipped)


def test_a_failing_job_is_recorded_retried_next_tick_and_alerts_after_three(client) -> None:
    add_schedule(client, "flaky", cron="0 0 * * *", command="store status", now=T0 - timedelta(days=1))
    clock = Clock(T0)

    def job(schedule) -> dict:
        raise RuntimeError("the store of the batch source is down")

    for attempt in range(3):
        outcomes = run_due(client, owner="solo", execute=job, clock=clock)
        assert [o.status for o in outcomes] == ["failed"], attempt  # retried on each next tick
        clock.now += timedelta(minutes=2)
        schedule = client.schedules.get("flaky")
        assert schedule.consecutive_failures == attempt + 1 and "store of the batch source" in schedule.last_error
        alerts = [a for a in client.monitoring.alerts(status="open") if a.type == "schedule_failure"]
        assert len(alerts) == (1 if attempt == 2 else 0)
    assert alerts[0].level == "RED" and alerts[0].metric == "schedule:flaky"
    assert schedule.status == "active"  # the schedule goes on
    ok = run_due(client, owner="solo", execute=lambda s: {}, clock=clock)
    assert [o.status for o in ok] == ["succeeded"]
    assert client.schedules.get("flaky").consecutive_failures == 0
    assert not [a for a in client.monitoring.alerts(status="open") if a.type == "schedule_failure"]


def test_schedule_cli_add_list_pause_resume_run_due_remove(client) -> None:
    from typer.testing import CliRunner

    from mlplatform.cli.main import app

    runner = CliRunner()

    def cli(*args: str):
        return runner.invoke(app, list(args))

    bad = cli("schedule", "add", "x", "--cron", "every hour", "--command", "store status")
    assert bad.exit_code == 2 and "cron" in bad.output and "Traceback" not in bad.output
    added = cli("schedule", "add", "mon", "--cron", "* * * * *", "--kind", "monitor", "--command", "version",
                "--json")
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["status"] == "active"
    assert cli("schedule", "pause", "mon").exit_code == 0
    listed = json.loads(cli("schedule", "list", "--json").stdout)
    assert [(s["name"], s["status"], s["cron"]) for s in listed] == [("mon", "paused", "* * * * *")]
    assert cli("schedule", "resume", "mon").exit_code == 0
    # the next slot is up to a minute away: move it into the past instead of waiting for it
    client.schedules.update("mon", next_run_at=datetime.now(UTC) - timedelta(seconds=1))
    due = _cli("schedule", "run-due", "--json")  # a real process, whose job is a real child process
    assert due.returncode == 0, due.stderr
    assert [o["status"] for o in json.loads(due.stdout)] == ["succeeded"]
    listed = json.loads(cli("schedule", "list", "--json").stdout)
    assert listed[0]["last_status"] == "succeeded" and listed[0]["next_run_at"] > listed[0]["last_run_at"]
    assert json.loads(cli("schedule", "runs", "mon", "--json").stdout)[0]["status"] == "succeeded"
    assert cli("schedule", "remove", "mon").exit_code == 0
    missing = cli("schedule", "pause", "mon")
    assert missing.exit_code == 2 and "no schedule" in missing.output
