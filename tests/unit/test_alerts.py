"""Alert levels, thresholds, config validation, dedup/cooldown/resolve and sinks (SPEC S8.8, S8.9)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlplatform.config.monitor import MonitorConfig, load_monitor_config
from mlplatform.entities import AlertLevel
from mlplatform.entities.levels import DEFAULT_THRESHOLDS, Thresholds, overall_level, parse_level
from mlplatform.errors import ConfigError
from mlplatform.monitoring.alerts import AlertCheck, AlertManager, AlertType, current_levels


# -- levels --------------------------------------------------------------------------------------------------------
def test_levels_compare_by_rank_never_by_name() -> None:
    assert AlertLevel.GREEN < AlertLevel.YELLOW < AlertLevel.ORANGE < AlertLevel.RED
    levels = [AlertLevel.ORANGE, AlertLevel.RED, AlertLevel.YELLOW, AlertLevel.GREEN]
    assert overall_level(levels) is AlertLevel.RED
    assert max(level.name for level in levels) == "YELLOW"  # what comparing names would (wrongly) pick
    assert overall_level([]) is AlertLevel.GREEN
    assert parse_level("red") is AlertLevel.RED
    with pytest.raises(ConfigError):
        parse_level("CRIMSON")


def test_threshold_table_is_inclusive_and_directional() -> None:
    t = Thresholds()
    assert [t.level("psi", v) for v in (0.0999, 0.10, 0.15, 0.2499, 0.25)] == [
        AlertLevel.GREEN, AlertLevel.YELLOW, AlertLevel.ORANGE, AlertLevel.ORANGE, AlertLevel.RED]
    assert t.level("accuracy_drop_pct", 5.0, n=100) is AlertLevel.ORANGE
    assert t.level("accuracy_drop_pct", 50.0, n=99) is AlertLevel.GREEN  # below the minimum sample
    assert t.level("prediction_ks", 0.2, n=1000) is AlertLevel.RED
    assert t.level("prediction_ks", 0.2, n=999) is AlertLevel.GREEN
    # a metric may define only some levels: error rate has no ORANGE
    assert [t.level("error_rate", v) for v in (0.005, 0.01, 0.04, 0.05)] == [
        AlertLevel.GREEN, AlertLevel.YELLOW, AlertLevel.YELLOW, AlertLevel.RED]
    assert t.level("p99_latency_ms", 100.0) is AlertLevel.RED
    # lower is worse: the selection-rate ratio reaches ORANGE strictly below 0.8
    assert t.level("selection_rate_ratio", 0.8) is AlertLevel.GREEN
    assert t.level("selection_rate_ratio", 0.79) is AlertLevel.ORANGE
    assert DEFAULT_THRESHOLDS["feature_importance_tv"].levels[AlertLevel.RED] == 0.35
    with pytest.raises(ValueError, match="no value"):
        t.level("psi", None)  # a missing metric is never read as 0


# -- config --------------------------------------------------------------------------------------------------------
def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(text)
    return path


def test_config_defaults_and_overrides(tmp_path: Path) -> None:
    assert load_monitor_config(None).renotify_minutes == 30
    config = load_monitor_config(_write(tmp_path, """
sinks: {chat: {type: webhook, url: "http://127.0.0.1:9/x"}, log: {type: log}}
routing: {yellow: [chat], ORANGE: [chat, log], RED: [chat, log]}
thresholds: {psi: {YELLOW: 0.2, RED: 0.5}}
"""))
    assert config.sinks_for(AlertLevel.YELLOW) == ["chat"]
    assert config.threshold_table().level("psi", 0.3) is AlertLevel.YELLOW


@pytest.mark.parametrize(("text", "field"), [
    ("routing: {PURPLE: [log]}", "routing"),
    ("routing: {RED: [pager]}", "routing"),
    ("sinks: {chat: {type: webhook}}", "sinks.chat"),
    ("sinks: {chat: {type: carrier_pigeon}}", "sinks.chat.type"),
    ("renotify_minute: 5", "renotify_minute"),
    ("thresholds: {psi: {SEVERE: 0.3}}", "thresholds"),
    ("thresholds: {vibes: {RED: 0.3}}", "thresholds"),
])
def test_config_errors_name_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_monitor_config(path)
    assert str(path) in str(info.value) and field in str(info.value)


# -- lifecycle -----------------------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class RecordingSink:
    def __init__(self) -> None:
        self.payloads: list[dict] = []

    def send(self, payload: dict) -> None:
        self.payloads.append(payload)


def _check(level: AlertLevel, value: float = 0.3, metric: str = "tenure") -> AlertCheck:
    return AlertCheck(AlertType.DATA_DRIFT, level, "churn", 1, metric, f"PSI {value}", value=value, method="psi")


@pytest.fixture
def manager(client) -> tuple[AlertManager, Clock, RecordingSink]:
    clock, sink = Clock(), RecordingSink()
    config = MonitorConfig(routing={"YELLOW": ["log"], "ORANGE": ["log"], "RED": ["log"]})
    return AlertManager(client.monitoring, config, now=clock, sinks={"log": sink}), clock, sink


def test_repeated_checks_update_one_alert_and_respect_cooldown(client, manager) -> None:
    mgr, clock, sink = manager
    for _ in range(31):  # one check a minute, t = 0 .. 30 min
        mgr.record(_check(AlertLevel.ORANGE))
        clock.now += timedelta(minutes=1)
    alerts = client.monitoring.alerts("churn")
    assert len(alerts) == 1 and alerts[0].details["checks"] == 31
    # created at t=0, re-notified at t=30 min: two notifications for 31 checks
    assert [p["event"] for p in sink.payloads] == ["created", "reminder"]
    assert alerts[0].runbook_url  # ORANGE and RED carry a runbook link
    # escalation notifies at once, even inside the cooldown
    outcome = mgr.record(_check(AlertLevel.RED, 0.4))
    assert outcome.notified == ["log"] and sink.payloads[-1]["event"] == "escalated"
    assert sink.payloads[-1]["level"] == "RED"
    # a drop back to ORANGE inside the cooldown stays quiet but updates the row
    clock.now += timedelta(minutes=5)
    assert mgr.record(_check(AlertLevel.ORANGE, 0.2)).notified == []
    assert client.monitoring.alerts("churn")[0].level == "ORANGE"
    assert current_levels(client.monitoring)[("churn", 1)] is AlertLevel.ORANGE


def test_three_green_checks_resolve_and_a_new_problem_opens_a_new_alert(client, manager) -> None:
    mgr, clock, sink = manager
    assert mgr.record(_check(AlertLevel.GREEN, 0.01)).action == "none"  # nothing open: GREEN stores nothing
    assert client.monitoring.alerts("churn") == []
    mgr.record(_check(AlertLevel.RED))
    actions = []
    for _ in range(3):
        clock.now += timedelta(hours=1)
        actions.append(mgr.record(_check(AlertLevel.GREEN, 0.01)).action)
    assert actions == ["recovering", "recovering", "resolved"]
    assert client.monitoring.alerts("churn", status="open") == []
    assert sink.payloads[-1]["event"] == "resolved"
    # an interrupted GREEN streak starts again
    mgr.record(_check(AlertLevel.YELLOW, 0.12))
    mgr.record(_check(AlertLevel.GREEN, 0.01))
    mgr.record(_check(AlertLevel.YELLOW, 0.12))
    open_alerts = client.monitoring.alerts("churn", status="open")
    assert len(open_alerts) == 1 and open_alerts[0].details["green_streak"] == 0
    assert len(client.monitoring.alerts("churn")) == 2


# -- webhook sink --------------------------------------------------------------------------------------------------
class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []
    fail_first: list[int] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.fail_first:
            self.fail_first.pop()
            self.send_response(503)
            self.end_headers()
            return
        type(self).received.append(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"received": [], "fail_first": [1]})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()
    server.server_close()


def test_webhook_sink_posts_json_and_retries(client, receiver) -> None:
    url, handler = receiver
    config = MonitorConfig(sinks={"chat": {"type": "webhook", "url": url}, "log": {"type": "log"}},
                           routing={"YELLOW": ["log"], "RED": ["chat", "log"]})
    mgr = AlertManager(client.monitoring, config)
    assert mgr.record(_check(AlertLevel.YELLOW, 0.12, metric="usage")).notified == ["log"]
    assert handler.received == []  # YELLOW is not routed to the chat webhook
    outcome = mgr.record(_check(AlertLevel.RED, 0.5, metric="plan"))
    assert outcome.notified == ["chat", "log"] and outcome.failed_sinks == []
    assert handler.fail_first == []  # the first POST got a 503 and was retried
    assert len(handler.received) == 1
    payload = handler.received[0]
    assert payload["level"] == "RED" and payload["metric"] == "plan" and payload["model_name"] == "churn"
    assert payload["event"] == "created" and payload["id"] == outcome.alert.id


def test_unreachable_webhook_does_not_lose_the_alert(client) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = MonitorConfig(sinks={"chat": {"type": "webhook", "url": f"http://127.0.0.1:{port}/x"}},
                           routing={"RED": ["chat"]})
    outcome = AlertManager(client.monitoring, config).record(_check(AlertLevel.RED))
    assert outcome.failed_sinks == ["chat"] and outcome.notified == []
    assert client.monitoring.alerts("churn")[0].level == "RED"
