"""The web console over a seeded store (issue 21): each page shows the store's values, names are escaped
everywhere, auth guards pages and actions, actions need confirmation and leave audit rows."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration._console_scenario import COMMIT, DATASET_HASH, MODEL, XSS, Scenario, seed


@pytest.fixture
def seeded(client: Any) -> Scenario:
    return seed(client)


@pytest.fixture
def web(client: Any, seeded: Scenario) -> Iterator[TestClient]:
    from mlplatform.console.app import create_app

    with TestClient(create_app(client=client)) as http:
        yield http


def text(page: str) -> str:
    """The visible text of a page (style and SVG dropped, cells spaced, entities decoded), spaces collapsed."""
    page = re.sub(r"<(style|svg)\b.*?</\1>", " ", page, flags=re.S)
    page = re.sub(r"</?(td|th|tr|p|li|h\d|br|div|figure|figcaption|table|option|nav)\b[^>]*>", " ", page)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", page)))


def all_pages(seeded: Scenario) -> list[str]:
    return ["/models", f"/models/{MODEL}", f"/models/{MODEL}/versions/1", f"/models/{MODEL}/versions/3",
            f"/models/{MODEL}/rollout", "/runs", "/runs?metric=accuracy", f"/runs/{seeded.train_run_id}",
            f"/runs/{seeded.sweep_run_id}", "/datasets", f"/datasets/{seeded.dataset_id}", "/monitoring",
            f"/monitoring/{MODEL}", f"/models/{MODEL}/actions/rollback"]


def test_pages_show_the_stores_values(web: TestClient, seeded: Scenario) -> None:
    models = text(web.get("/models").text)
    assert "churn" in models and "v2" in models and "v3" in models
    assert "accuracy=0.8500" in models and "accuracy=0.8600" in models  # champion and challenger metrics
    assert "RED" in models  # the latest drift check's level

    detail = web.get(f"/models/{MODEL}").text
    shown = text(detail)
    assert "champion=v2" in shown and "challenger=v3" in shown
    for actor, reason in (("alice", "first champion"), ("bob", "beat v1 on holdout"),
                          ("carol", "retrained on drifted window")):
        assert actor in shown and reason in shown
    assert "at stage canary" in shown and "95.0000% / challenger v3 5.0000%" in shown
    assert COMMIT[:10] in shown and "<svg" in detail

    lineage = text(web.get(f"/models/{MODEL}/versions/3").text)
    assert DATASET_HASH in lineage and COMMIT in lineage and "parent version v2" in lineage
    assert "model.hidden 64" in lineage and "accuracy 0.8600" in lineage

    rollout = text(web.get(f"/models/{MODEL}/rollout").text)
    assert "canary 95.0000 5.0000" in rollout and "shadow looked fine" in rollout
    assert "min_requests 100" in rollout and "current" in rollout

    board = text(web.get("/runs", params={"metric": "accuracy", "kind": "tune_trial"}).text)
    ranked = [float(v) for v in re.findall(r"trial-\d \w+ completed churn-exp \w+ (\d\.\d{4})", board)]
    assert ranked == sorted(seeded.trial_accuracies, reverse=True)
    assert "churn:1" in board  # trial-1 was registered as version 1
    ascending = text(web.get("/runs", params={"metric": "accuracy", "kind": "tune_trial", "order": "asc"}).text)
    assert [float(v) for v in re.findall(r"trial-\d \w+ completed churn-exp \w+ (\d\.\d{4})", ascending)] == \
        sorted(seeded.trial_accuracies)
    baseline = text(web.get("/runs", params={"parent": seeded.sweep_run_id, "metric": "accuracy"}).text)
    assert "baseline-majority" in baseline and "0.6100 baseline" in baseline
    by_data = text(web.get("/runs", params={"dataset_version": DATASET_HASH}).text)
    assert "trial-0" in by_data and "baseline-majority" not in by_data

    run = web.get(f"/runs/{seeded.train_run_id}").text
    assert run.count("<polyline") >= 3  # loss train, loss val, accuracy val
    shown = text(run)
    assert "loss: last train=0.2000 (step 5), val=0.2400 (step 5)" in shown
    assert "/ckpt/epoch-4" in shown and "/ckpt/epoch-5" in shown and "churn:2" in shown

    dataset = text(web.get(f"/datasets/{seeded.dataset_id}").text)
    assert DATASET_HASH in dataset and "8000 rows" in dataset and "mean=12.5" in dataset
    assert "ERROR the declared schema yes: 40 row(s) dropped age: 40 value(s) refused (wrong_type)" in dataset

    monitor = text(web.get(f"/monitoring/{MODEL}").text)
    assert "tenure 0.3100" in monitor and "accuracy=0.7900" in monitor
    assert "tenure: PSI 0.31" in monitor and "resolved" in monitor and "open" in monitor


def test_names_with_script_are_escaped_everywhere(web: TestClient, seeded: Scenario) -> None:
    seen = 0
    for path in all_pages(seeded):
        response = web.get(path)
        assert response.status_code == 200, path
        assert "<script" not in response.text.lower(), path
        seen += XSS in text(response.text)  # visible as text: it reached the page escaped
    assert seen >= 6  # the feature, run, dataset column and alert names appear on many pages


def test_only_web_links_become_hrefs(web: TestClient, client: Any) -> None:
    client.monitoring.upsert_alert(type="latency", level="RED", source="t", message="m", model_name=MODEL,
                                   metric="p99", runbook_url="javascript:alert(1)")
    client.monitoring.upsert_alert(type="errors", level="RED", source="t", message="m", model_name=MODEL,
                                   metric="rate", runbook_url="https://runbooks.example/errors")
    page = web.get(f"/monitoring/{MODEL}").text
    assert 'href="javascript:' not in page and "runbook: javascript:alert(1)" in page
    assert 'href="https://runbooks.example/errors"' in page


def test_bad_input_is_a_4xx_naming_the_field(web: TestClient) -> None:
    for path, field in (("/models/nope", "model"), ("/runs?offset=-1", "offset"), ("/runs?order=up", "order"),
                        ("/runs/not-a-run", "run_id"), (f"/models/{MODEL}?at=yesterday", "at"),
                        ("/models?offset=abc", "offset"), ("/reports/store.db", "filename"), ("/nothing", "path")):
        response = web.get(path)
        assert 400 <= response.status_code < 500, path
        assert field in text(response.text), path


def _audit(client: Any, action: str) -> list[Any]:
    return client.monitoring.audit_log(action)


def test_actions_need_confirmation_and_leave_audit_rows(web: TestClient, client: Any) -> None:
    before = {a: len(_audit(client, a)) for a in ("rollback", "rollout_advance", "rollout_abort")}
    page = web.post(f"/models/{MODEL}/actions/rollback", data={"reason": "no confirm"})
    assert page.status_code == 200 and "Nothing happens until you confirm" in text(page.text)
    assert client.registry.get_model(MODEL).aliases["champion"] == 2
    assert len(_audit(client, "rollback")) == before["rollback"]

    done = web.post(f"/models/{MODEL}/actions/advance", data={"confirm": "yes", "reason": "canary is healthy"})
    assert done.status_code == 200 and "at stage gradual" in text(done.text)
    rows = _audit(client, "rollout_advance")
    assert len(rows) == before["rollout_advance"] + 1
    assert rows[0].actor.startswith("console ") and rows[0].reason == "canary is healthy"

    web.post(f"/models/{MODEL}/actions/abort", data={"confirm": "yes", "reason": "stop"})
    assert _audit(client, "rollout_abort")[0].reason == "stop"
    web.post(f"/models/{MODEL}/actions/rollback", data={"confirm": "yes", "reason": "v2 regressed"},
             headers={"X-User-ID": "dana"})
    assert client.registry.get_model(MODEL).aliases["champion"] == 1
    row = _audit(client, "rollback")[0]
    # the actor is the authenticated principal or the peer, never a client-supplied header (issue 16)
    assert row.actor == "console addr:testclient" and row.reason == "v2 regressed"
    history = client.registry.alias_history(MODEL, "champion")[-1]
    assert (history.from_version, history.to_version, history.actor) == (2, 1, "console addr:testclient")

    refused = web.post(f"/models/{MODEL}/actions/advance", data={"confirm": "yes"})
    assert refused.status_code == 409 and "no active rollout" in text(refused.text)
    assert web.post(f"/models/{MODEL}/actions/promote", data={"confirm": "yes"}).status_code == 404


def test_auth_guards_pages_and_actions(client: Any, seeded: Scenario, monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    from mlplatform.console.app import ConsoleConfig, create_app

    monkeypatch.setenv("CONSOLE_TEST_TOKEN", "s3cret")
    app = create_app(ConsoleConfig(auth={"enabled": True, "token_secret": "CONSOLE_TEST_TOKEN"}), client=client)
    with TestClient(app) as http:
        for path in all_pages(seeded):
            assert http.get(path).status_code == 401, path
            assert http.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
        denied = http.post(f"/models/{MODEL}/actions/abort", data={"confirm": "yes"})
        assert denied.status_code == 401
        assert client.registry.get_model(MODEL) and _audit(client, "rollout_abort") == []
        good = {"Authorization": "Bearer s3cret"}
        assert "accuracy=0.8500" in text(http.get("/models", headers=good).text)
        done = http.post(f"/models/{MODEL}/actions/abort", data={"confirm": "yes"}, headers=good)
        assert done.status_code == 200 and len(_audit(client, "rollout_abort")) == 1
        assert _audit(client, "rollout_abort")[0].actor.startswith("console token:")
        # a browser: the login form checks the same token and keeps it in a cookie
        assert http.post("/login", data={"token": "nope"}, follow_redirects=False).status_code == 401
        logged = http.post("/login", data={"token": "s3cret"}, follow_redirects=False)
        assert logged.status_code == 303 and "httponly" in logged.headers["set-cookie"].lower()
        assert http.get("/models").status_code == 200


def test_monitor_report_outputs_are_linked(client: Any, seeded: Scenario, tmp_path: Path) -> None:
    from mlplatform.console.app import ConsoleConfig, create_app

    (tmp_path / f"{MODEL}-v2-20261206T000000Z.html").write_text("<html>the report</html>")
    with TestClient(create_app(ConsoleConfig(reports_dir=str(tmp_path)), client=client)) as http:
        page = http.get(f"/monitoring/{MODEL}").text
        assert f"/reports/{MODEL}-v2-20261206T000000Z.html" in page
        assert http.get(f"/reports/{MODEL}-v2-20261206T000000Z.html").text == "<html>the report</html>"
