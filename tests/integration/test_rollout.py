"""Safe rollout through real HTTP to Ray Serve on 127.0.0.1 (issue 9, SPEC S7).

Two distinguishable versions: v1 logistic (champion) and v2 hist_gbdt (challenger). Each test deploys its own app
on a fresh SQLite store; replicas poll the registry every 0.5-1 s here (10 s by default).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from mlplatform.datasets.synthetic import FEATURES, TARGET
from mlplatform.rollouts import control
from mlplatform.rollouts.routing import CHALLENGER, assign
from tests.integration.test_serving import instances, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]
VARIANT_VERSION = {"champion": 1, "challenger": 2}


@pytest.fixture(scope="module")
def gbdt_artifact_dir(tmp_path_factory: pytest.TempPathFactory, churn_df: pd.DataFrame) -> Path:
    from mlplatform.learning.sklearn_fit import fit_sklearn_artifact

    out = tmp_path_factory.mktemp("artifact") / "hist_gbdt"
    fit_sklearn_artifact(churn_df.iloc[:2000], target=TARGET, features=FEATURES, family="hist_gbdt", out_dir=out,
                         params={"max_iter": 20})
    return out


@pytest.fixture
def store(tmp_path: Path, model_artifact_dir: Path, gbdt_artifact_dir: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, dict[str, str]]]:
    """v1 champion (logistic), v2 challenger (hist_gbdt); the CLI of this process points at the same store."""
    from mlplatform.cli import _output
    from mlplatform.client import Client
    from mlplatform.settings import Settings, reset_settings

    root = tmp_path / "rollout-home"
    where = {"store_url": f"sqlite:///{root / 'store.db'}", "artifact_uri": str(root / "artifacts"),
             "home": str(root)}
    monkeypatch.setenv("MLPLATFORM_HOME", str(root))
    reset_settings()
    _output.client.cache_clear()
    client = Client(Settings(home=root), store_url=where["store_url"], artifact_uri=where["artifact_uri"])
    client.registry.register("churn", model_artifact_dir, alias="champion")
    client.registry.register("churn", gbdt_artifact_dir, alias="challenger")
    yield client, where
    client.close()


@pytest.fixture
def deploy_app(serve_instance: str) -> Iterator[Callable[..., str]]:
    from ray import serve

    from mlplatform.serving.app import build_app

    names: list[str] = []

    def run(where: dict[str, str], app: dict[str, Any] | None = None, **rollout: Any) -> str:
        """``rollout`` goes into the app's rollout section, ``app`` over the other app args."""
        name = f"rollout-{uuid.uuid4().hex[:6]}"
        args = {"models": [{"name": "churn", "num_replicas": 1}], **where, "model_num_cpus": 0.25,
                "ingress_num_cpus": 0.1, "prediction_log": {"flush_interval_s": 0.2},
                "rollout": {"poll_interval_s": 0.5, "guard_interval_s": 0.5, **rollout}, **(app or {})}
        serve.run(build_app(args), name=name, route_prefix=f"/{name}")
        names.append(name)
        return f"{serve_instance}/{name}"

    yield run
    for name in names:
        serve.delete(name)


def routing(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/v1/models/churn", timeout=30).json().get("routing") or {}


async def fire(url: str, bodies: list[tuple[dict[str, str], dict[str, Any]]],
               concurrency: int = 16) -> list[httpx.Response]:
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as http:
        async def one(headers: dict[str, str], body: dict[str, Any]) -> httpx.Response:
            async with gate:
                return await http.post(f"{url}/v1/models/churn:predict", json=body, headers=headers)

        return await asyncio.gather(*[one(h, b) for h, b in bodies])


def test_canary_split_is_sticky_and_every_answer_names_its_version(
        store: tuple[Any, dict[str, str]], deploy_app: Callable[..., str], churn_df: pd.DataFrame,
        gbdt_artifact_dir: Path) -> None:
    from typer.testing import CliRunner

    from mlplatform.cli.main import app
    from mlplatform.predictor import Predictor

    client, where = store
    control.start(client, "churn", stage="canary", salt="fixed-salt", actor="test",
                  policy={"min_requests": 1_000_000, "auto_advance": False})
    url = deploy_app(where)
    wait_for(lambda: routing(url).get("challenger") == 2, timeout_s=30)
    rows = instances(churn_df.iloc[2000:2050])
    keys = [f"user-{i}" for i in range(600)]
    responses = asyncio.run(fire(url, [({"X-User-ID": k}, {"instances": [rows[i % len(rows)]]})
                                       for i, k in enumerate(keys)]))
    assert [r.status_code for r in responses] == [200] * len(keys)
    bodies = [r.json() for r in responses]
    assert all(VARIANT_VERSION[b["variant"]] == b["model_version"] for b in bodies)
    # each key lands exactly where SHA-256(salt + key) puts it, and the split is the configured one
    assert [b["variant"] for b in bodies] == [assign(f"h:{k}", "fixed-salt", 5.0) for k in keys]
    share = sum(b["variant"] == CHALLENGER for b in bodies) / len(bodies)
    assert abs(share - 0.05) <= 0.02, share
    # sticky: the same key sees the same version every time, whatever the row
    picked = [k for k, b in zip(keys, bodies, strict=True) if b["variant"] == CHALLENGER][:5] + keys[:5]
    with httpx.Client(timeout=30) as http:
        for key in picked:
            seen = {http.post(f"{url}/v1/models/churn:predict", headers={"X-User-ID": key},
                              json={"instances": [rows[j]]}).json()["model_version"] for j in range(3)}
            assert len(seen) == 1, (key, seen)
    challenger_body, challenger_index = next((b, i) for i, b in enumerate(bodies) if b["variant"] == CHALLENGER)
    expected = Predictor.from_dir(gbdt_artifact_dir).predict(
        churn_df.iloc[2000 + challenger_index % len(rows):2001 + challenger_index % len(rows)][FEATURES])
    assert challenger_body["predictions"] == list(expected.predictions)
    logged = wait_for(lambda: client.monitoring.predictions("churn", request_id=challenger_body["request_id"]))
    assert [(r.variant, r.version) for r in logged] == [("challenger", 2)]
    # the CLI shows stage, split and the replicas' per-version window
    runner = CliRunner()

    def shown() -> dict[str, Any] | None:
        result = runner.invoke(app, ["rollout", "status", "--model", "churn", "--json"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        counts = {v: data["versions"].get(v, {}).get("requests", 0) for v in ("1", "2")}
        # replicas report their window periodically: wait until every request of the split is in it
        return data if counts["2"] >= 10 and counts["1"] + counts["2"] >= len(keys) else None

    status = wait_for(shown, timeout_s=20)
    assert status["stage"] == "canary" and status["split"] == {"champion": 95.0, "challenger": 5.0}
    assert status["versions"]["1"]["requests"] + status["versions"]["2"]["requests"] >= len(keys)
    assert status["versions"]["2"]["p99_ms"] > 0 and status["versions"]["2"]["error_rate"] == 0.0


def test_shadow_answers_are_logged_and_never_change_the_response(
        store: tuple[Any, dict[str, str]], deploy_app: Callable[..., str], churn_df: pd.DataFrame,
        model_artifact_dir: Path, gbdt_artifact_dir: Path) -> None:
    from mlplatform.predictor import Predictor

    client, where = store
    client.registry.set_alias("churn", "shadow", 2, actor="test")
    # half of the shadow's answers fail: the responses must not notice
    url = deploy_app(where, fault_injection={2: 0.5})
    wait_for(lambda: routing(url).get("mirrors") == [2], timeout_s=30)
    frame = churn_df.iloc[2100:2120]
    rows = instances(frame)
    champion_only = Predictor.from_dir(model_artifact_dir).predict(frame[FEATURES])
    shadow_expected = Predictor.from_dir(gbdt_artifact_dir).predict(frame[FEATURES])
    request_ids = []
    with httpx.Client(timeout=30) as http:
        for i, row in enumerate(rows):
            response = http.post(f"{url}/v1/models/churn:predict", json={"instances": [row]})
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["model_version"], body["variant"]) == (1, "champion")
            assert body["predictions"] == [champion_only.predictions[i]]
            assert body["probabilities"][0] == pytest.approx(list(champion_only.probabilities[i]), abs=1e-12)
            assert not any("shadow" in key for key in body)
            request_ids.append(body["request_id"])

    def shadow_rows() -> list[Any] | None:
        found = [r for r in client.monitoring.predictions("churn") if r.variant == "shadow"]
        return found if len(found) >= 10 else None

    logged = wait_for(shadow_rows, timeout_s=20)
    assert len(logged) == 10 and all(r.version == 2 for r in logged)
    for row in logged:  # same request id as the answer it shadows, the shadow's own prediction
        i = request_ids.index(row.request_id)
        assert row.prediction == shadow_expected.predictions[i]
    health = httpx.get(f"{url}/healthz", timeout=30).json()
    assert health["shadow"]["churn"]["failed"] == 10 and health["shadow"]["churn"]["completed"] == 10


class Load:
    """A few clients posting continuously; records every status and the versions that answered."""

    def __init__(self, url: str, rows: list[dict[str, Any]], clients: int = 3) -> None:
        self.url, self.rows = url, rows
        self.statuses: list[int] = []
        self.answers: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, worker: int) -> None:
        with httpx.Client(timeout=30) as http:
            i = worker
            while not self._stop.is_set():
                r = http.post(f"{self.url}/v1/models/churn:predict", headers={"X-User-ID": f"u{i}"},
                              json={"instances": [self.rows[i % len(self.rows)]]})
                self.statuses.append(r.status_code)
                if r.status_code == 200:
                    self.answers.append((time.monotonic(), r.json()["model_version"]))
                i += 7

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def first_answer_from(self, version: int, after: float) -> float | None:
        return next((t for t, v in list(self.answers) if t >= after and v == version), None)


def test_promote_and_rollback_under_load_without_failed_requests(
        store: tuple[Any, dict[str, str]], deploy_app: Callable[..., str], churn_df: pd.DataFrame) -> None:
    client, where = store
    url = deploy_app(where, poll_interval_s=1.0)
    wait_for(lambda: routing(url).get("champion") == 1, timeout_s=30)
    with Load(url, instances(churn_df.iloc[:40])) as load:
        wait_for(lambda: len(load.statuses) >= 20)
        promoted_at = time.monotonic()
        client.registry.promote("churn", actor="test", reason="rollout test")
        switched = wait_for(lambda: load.first_answer_from(2, promoted_at), timeout_s=15)
        wait_for(lambda: load.answers[-1][1] == 2 and len(load.answers) >= 40)
        rolled_at = time.monotonic()
        client.registry.rollback("churn", actor="test", reason="rollout test")
        back = wait_for(lambda: load.first_answer_from(1, rolled_at), timeout_s=15)
        wait_for(lambda: sum(t > back + 0.5 for t, _ in list(load.answers)) >= 20)
    assert set(load.statuses) == {200}, [s for s in load.statuses if s != 200][:5]
    # within the poll interval plus the new version's load and warm-up (SPEC: 10 s at the default interval)
    assert switched - promoted_at < 10 and back - rolled_at < 10, (switched - promoted_at, back - rolled_at)
    # after the swap only the new version answers (no flip-flopping between replicas' tables)
    assert {v for t, v in load.answers if t > back + 0.5} == {1}


def test_failing_challenger_is_rolled_back_automatically_with_an_alert(
        store: tuple[Any, dict[str, str]], deploy_app: Callable[..., str], churn_df: pd.DataFrame) -> None:
    client, where = store
    control.start(client, "churn", stages=[{"name": "canary", "weight": 50.0}, {"name": "full", "weight": 100.0}],
                  actor="test", policy={"min_requests": 40, "stage_min_s": 3600})
    # every 20th challenger model call fails; the cache is off because faults fire inside the model call (where a
    # real model's would), which a cached answer never reaches
    url = deploy_app(where, app={"cache": {"enabled": False}}, fault_injection={2: 0.05})
    wait_for(lambda: routing(url).get("challenger") == 2, timeout_s=30)
    rows = instances(churn_df.iloc[:50])
    statuses: list[int] = []
    deadline = time.monotonic() + 60
    while control.rollout_store(client).get("churn").status == "active":  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the guard did not roll the challenger back"
        batch = [({"X-User-ID": f"u-{len(statuses) + i}"}, {"instances": [rows[i % len(rows)]]}) for i in range(40)]
        statuses += [r.status_code for r in asyncio.run(fire(url, batch, concurrency=8))]
    assert statuses.count(500) >= 2  # the injected faults were real failed requests
    state = control.rollout_store(client).get("churn")
    assert state is not None and state.status == "rolled_back" and state.rollbacks == 1
    record = state.details["last_rollback"]
    assert (record["from_version"], record["to_version"], record["actor"]) == (1, 2, "rollout-guard")
    assert "error rate" in record["reason"]
    alerts = [a for a in client.monitoring.alerts("churn") if a.type == "rollout"]
    assert len(alerts) == 1 and alerts[0].level == "red" and alerts[0].metric == "error_rate"
    assert alerts[0].value > 0.01 and alerts[0].version == 2 and "error rate" in alerts[0].message
    # champion untouched, no other version activated, the challenger gets no more traffic
    assert client.registry.get_model("churn").aliases == {"champion": 1, "challenger": 2}
    wait_for(lambda: routing(url).get("challenger") is None, timeout_s=10)
    after = asyncio.run(fire(url, [({"X-User-ID": f"u-{i}"}, {"instances": [rows[i % len(rows)]]})
                                   for i in range(60)]))
    assert {(r.status_code, r.json()["model_version"]) for r in after} == {(200, 1)}


def test_tampered_challenger_is_refused_and_champion_keeps_serving(
        store: tuple[Any, dict[str, str]], deploy_app: Callable[..., str], churn_df: pd.DataFrame,
        gbdt_artifact_dir: Path) -> None:
    from ray import serve

    client, where = store
    tampered = client.registry.register("churn", gbdt_artifact_dir, alias="challenger")
    weights = next(name for name in tampered.files if name.startswith("model."))
    with open(Path(tampered.artifact_uri) / weights, "ab") as handle:
        handle.write(b"tampered")
    control.start(client, "churn", stage="canary", stages=[{"name": "canary", "weight": 50.0}], actor="test",
                  policy={"min_requests": 1_000_000})
    url = deploy_app(where)
    app_name = url.rsplit("/", 1)[1]
    handle = serve.get_deployment_handle("Model_churn", app_name=app_name)
    stats = wait_for(lambda: (s := handle.stats.remote().result()) and s["refused"] and s, timeout_s=30)
    assert "sha256" in stats["refused"][tampered.version] and stats["routing"]["challenger"] is None
    rows = instances(churn_df.iloc[:20])
    responses = asyncio.run(fire(url, [({"X-User-ID": f"t-{i}"}, {"instances": [rows[i]]}) for i in range(20)]))
    assert {(r.status_code, r.json()["model_version"], r.json()["variant"]) for r in responses} == {
        (200, 1, "champion")}


def test_cli_start_advance_abort_and_full_promotes(store: tuple[Any, dict[str, str]]) -> None:
    from typer.testing import CliRunner

    from mlplatform.cli.main import app

    client, _ = store
    runner = CliRunner()

    def cli(*args: str) -> dict[str, Any]:
        result = runner.invoke(app, ["rollout", *args, "--model", "churn", "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    started = cli("start", "--manual")
    assert (started["stage"], started["split"], started["mirror_challenger"]) == (
        "shadow", {"champion": 100.0, "challenger": 0.0}, True)
    again = runner.invoke(app, ["rollout", "start", "--model", "churn"])
    assert again.exit_code != 0 and "active rollout" in again.output
    assert cli("advance")["split"] == {"champion": 95.0, "challenger": 5.0}
    assert cli("advance")["split"] == {"champion": 70.0, "challenger": 30.0}
    assert cli("abort")["status"] == "aborted"
    assert client.registry.get_model("churn").aliases == {"champion": 1, "challenger": 2}
    cli("start", "--stage", "gradual", "--manual")
    full = cli("advance")
    assert (full["stage"], full["status"]) == ("full", "completed")
    assert client.registry.get_model("churn").aliases == {"champion": 2}  # old champion kept for rollback
    bad = runner.invoke(app, ["rollout", "start", "--model", "churn", "--stages", "canary:-5"])
    assert bad.exit_code != 0 and "[0, 100]" in bad.output
    missing = runner.invoke(app, ["rollout", "start", "--model", "churn"])
    assert missing.exit_code != 0 and "no challenger" in missing.output
    history = [e["action"] for e in cli("status")["history"]]
    assert history == ["start", "promote"]
