"""Schedules (SPEC S9.3): cron expressions (parsed by ``croniter``), stored in the evaluation store, run by
:func:`run_due` — once from ``mlplatform schedule run-due``, or in a loop by ``train_jobs/scheduler.py``.

Per due schedule, a tick:
1. takes the schedule's lease in the store (a conditional update); when another scheduler holds it, a run is in
   progress there, so the due slot is *skipped and recorded* (never run twice, never queued behind);
2. runs, in order, every slot that was due when the tick started: slots missed while no scheduler ran are
   *caught up* (at most ``max_catchup``); a slot that comes due while this tick runs a job is skipped and
   recorded, because it arrived during a run;
3. records each run (slot, owner, status, error); a failure does not stop the schedule: it is retried on the next
   tick (``retry_after_s``), and the 3rd failure in a row raises a RED ``schedule_failure`` alert, resolved by
   the next success;
4. releases the lease.
A slot is claimed once through a unique (schedule, slot) row, so even two schedulers racing past the lease cannot
both run it.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from croniter import croniter

from mlplatform.entities.schedules import ACTIVE, PAUSED, Schedule
from mlplatform.errors import InvalidInput

if TYPE_CHECKING:  # annotations only: the SQL store loads where a client is opened
    from mlplatform.client import Client

logger = logging.getLogger(__name__)

KINDS = ("monitor", "retrain", "batch", "command")
FAILURES_TO_ALERT = 3
RETRY_AFTER_S = 60.0
MAX_CATCHUP = 24
DEFAULT_TIMEOUT_S = 3600.0
ALERT_TYPE = "schedule_failure"

Executor = Callable[[Schedule], dict[str, Any]]


def parse_cron(expression: str) -> str:
    """A valid 5-field cron expression (whitespace normalised), else InvalidInput naming the field."""
    normalised = " ".join(expression.split())
    if len(normalised.split()) != 5 or not croniter.is_valid(normalised):
        raise InvalidInput(f"{expression!r} is not a 5-field cron expression (e.g. '0 * * * *')", field="cron")
    return normalised


def next_after(expression: str, after: datetime) -> datetime:
    """The first slot strictly after ``after`` (UTC)."""
    return croniter(expression, after.astimezone(UTC)).get_next(datetime).astimezone(UTC)


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def add_schedule(client: Client, name: str, *, cron: str, command: list[str] | str, kind: str = "command",
                 timeout_s: float = DEFAULT_TIMEOUT_S, now: datetime | None = None,
                 due_now: bool = False) -> Schedule:
    """A new active schedule; its first slot is the first cron time after ``now`` (``due_now``: ``now`` itself,
    so the next tick runs it once before the cron takes over). ``command`` is an ``mlplatform`` command line
    (e.g. ``monitor check --model churn@champion --last 5000``)."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown schedule kind {kind!r}; use one of {', '.join(KINDS)}", field="kind")
    if not name or len(name) > 255 or any(c.isspace() for c in name):
        raise InvalidInput("a schedule name is 1-255 characters without spaces", field="name")
    args = shlex.split(command) if isinstance(command, str) else list(command)
    if not args:
        raise InvalidInput("a schedule needs a command", field="command")
    if timeout_s <= 0:
        raise InvalidInput("timeout_s must be positive", field="timeout_s")
    expression = parse_cron(cron)
    start = now or datetime.now(UTC)
    return client.schedules.add(name, kind=kind, cron=expression, command=args,
                                next_run_at=start if due_now else next_after(expression, start),
                                timeout_s=timeout_s)


def set_paused(client: Client, name: str, paused: bool, *, now: datetime | None = None) -> Schedule:
    """Pause, or resume: a resumed schedule starts at its next slot after now (paused slots are not caught up)."""
    schedule = client.schedules.get(name)
    if paused:
        return client.schedules.update(name, status=PAUSED)
    start = now or datetime.now(UTC)
    return client.schedules.update(name, status=ACTIVE, next_run_at=next_after(schedule.cron, start)
                                   if schedule.next_run_at < start else schedule.next_run_at)


def cli_executor(schedule: Schedule) -> dict[str, Any]:
    """Run the schedule's ``mlplatform`` command line in a child process (its own failure cannot take the
    scheduler down); a non-zero exit is a failure with the last line of its stderr."""
    try:
        done = subprocess.run([sys.executable, "-m", "mlplatform.cli.main", *schedule.command],
                              capture_output=True, text=True, timeout=schedule.timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"timed out after {schedule.timeout_s:g} s") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"exit {done.returncode}: {last}")
    return {"exit_code": 0, "stdout_tail": done.stdout[-2000:]}


@dataclass
class TickOutcome:
    schedule: str
    slot: datetime
    status: str  # succeeded | failed | skipped
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["slot"] = self.slot.isoformat()
        return data


def run_due(client: Client, *, owner: str | None = None, execute: Executor | None = None,
            clock: Callable[[], datetime] | None = None, max_catchup: int = MAX_CATCHUP,
            retry_after_s: float = RETRY_AFTER_S) -> list[TickOutcome]:
    """One scheduler tick over every due schedule (see the module docstring)."""
    owner = owner or default_owner()
    execute = execute or cli_executor
    clock = clock or (lambda: datetime.now(UTC))
    tick = clock()
    outcomes: list[TickOutcome] = []
    for name in client.schedules.due(tick):
        outcomes += _run_schedule(client, name, owner, execute, clock, tick, max_catchup, retry_after_s)
    return outcomes


def _run_schedule(client: Client, name: str, owner: str, execute: Executor, clock: Callable[[], datetime],
                  tick: datetime, max_catchup: int, retry_after_s: float) -> list[TickOutcome]:
    store = client.schedules
    schedule = store.get(name)
    if not store.acquire(name, owner, tick, tick + timedelta(seconds=schedule.timeout_s)):
        # another scheduler holds the lease: a run is in progress, and this trigger arrived during it
        slot = schedule.next_run_at
        reason = f"skipped: a run was in progress (lease held by {schedule.lease_owner})"
        if store.claim_slot(name, slot, owner, status="skipped", error=reason, finished=True) is None:
            return []  # the holder is running this very slot
        store.update(name, next_run_at=next_after(schedule.cron, slot))
        logger.info("schedule %s: slot %s %s", name, slot.isoformat(), reason)
        return [TickOutcome(name, slot, "skipped", reason)]
    outcomes: list[TickOutcome] = []
    try:
        if schedule.lease_owner not in (None, owner):  # the previous holder's lease expired: it died mid-run
            store.abandon_running(name, f"abandoned: the lease of {schedule.lease_owner} expired")
        ran = 0
        while True:
            schedule = store.get(name)
            now = clock()
            slot = schedule.next_run_at
            if schedule.status != ACTIVE or slot > now:
                break
            following = next_after(schedule.cron, slot)
            if slot > tick or ran >= max_catchup:
                reason = ("skipped: came due while a run was in progress" if slot > tick
                          else f"skipped: more than {max_catchup} missed slots")
                if store.claim_slot(name, slot, owner, status="skipped", error=reason, finished=True):
                    outcomes.append(TickOutcome(name, slot, "skipped", reason))
                store.update(name, next_run_at=following)
                continue
            run_id = store.claim_slot(name, slot, owner)
            # the next slot is set before the job runs, so a trigger during the run is seen as one
            store.update(name, next_run_at=following)
            if run_id is None:
                continue  # claimed elsewhere already
            outcomes.append(_execute(client, schedule, slot, run_id, execute, clock, retry_after_s, following))
            ran += 1
    finally:
        store.release(name, owner)
    return outcomes


def _execute(client: Client, schedule: Schedule, slot: datetime, run_id: str, execute: Executor,
             clock: Callable[[], datetime], retry_after_s: float, following: datetime) -> TickOutcome:
    store = client.schedules
    name = schedule.name
    try:
        details = execute(schedule) or {}
    except Exception as exc:  # a job's failure is recorded and the schedule goes on; never the scheduler's death
        error = f"{type(exc).__name__}: {exc}"[:2000]
        failures = schedule.consecutive_failures + 1
        store.finish_run(run_id, "failed", error=error)
        retry = min(following, clock() + timedelta(seconds=retry_after_s))
        store.update(name, last_run_at=slot, last_status="failed", last_error=error,
                     consecutive_failures=failures, next_run_at=retry)
        logger.warning("schedule %s: run for %s failed (%d in a row): %s", name, slot.isoformat(), failures, error)
        if failures >= FAILURES_TO_ALERT:
            client.monitoring.upsert_alert(
                type=ALERT_TYPE, level="RED", source="scheduler", metric=f"schedule:{name}", value=float(failures),
                threshold=float(FAILURES_TO_ALERT), runbook_url="docs/RUNBOOK.md#schedules",
                message=f"schedule {name}: {failures} consecutive failures; last: {error}")
        return TickOutcome(name, slot, "failed", error)
    store.finish_run(run_id, "succeeded", details=details)
    store.update(name, last_run_at=slot, last_status="succeeded", last_error=None, consecutive_failures=0)
    if schedule.consecutive_failures >= FAILURES_TO_ALERT:
        for alert in client.monitoring.alerts(status="open", limit=10_000):
            if alert.type == ALERT_TYPE and alert.metric == f"schedule:{name}":
                client.monitoring.resolve_alert(alert.id)
    return TickOutcome(name, slot, "succeeded")
