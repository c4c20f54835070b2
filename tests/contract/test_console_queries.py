"""The console's page queries give the same answers on SQLite and PostgreSQL (NULLS LAST ordering, the recursive
CTE over the metric-key index, prefix and exact dataset filters, alias history by date)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mlplatform.client import Client
from mlplatform.store.sql.console import SqlConsoleQueries
from mlplatform.store.sql.session import SessionScope
from tests.integration._console_scenario import DATASET_HASH, MODEL, seed


def test_console_queries_on_both_stores(store_url: str) -> None:
    client = Client(store_url=store_url)
    try:
        scenario = seed(client)
        queries = SqlConsoleQueries(SessionScope(client.engine, client.display_url))
        assert queries.metric_keys() == ["accuracy", "loss"]

        best = queries.runs_page(metric="accuracy", kind="tune_trial")
        assert [r["value"] for r in best.items] == sorted(scenario.trial_accuracies, reverse=True)
        everything = queries.runs_page(metric="accuracy", descending=False, limit=3)
        assert [r["value"] for r in everything.items] == [0.61, 0.71, 0.77] and everything.has_next
        last = queries.runs_page(metric="accuracy", descending=False, offset=3, limit=3)
        assert [r["value"] for r in last.items] == [0.83, pytest.approx(0.85), None]  # no accuracy: last
        assert not last.has_next
        for version in (DATASET_HASH, DATASET_HASH[:12]):
            linked = queries.runs_page(dataset_version=version)
            assert {r["run"].name for r in linked.items} >= {"trial-0", "trial-1", "trial-2"}
            assert len(linked.items) == 4
        assert queries.runs_page(parent_run_id=scenario.sweep_run_id).items[0]["run"].parent_run_id

        # a kept ranking follows the store: a new metric value, a new run, a new dataset link re-rank it
        client.runs.log_metrics(scenario.trial_ids[0], {"accuracy": 0.99}, step=4)
        best = queries.runs_page(metric="accuracy", kind="tune_trial")
        assert [r["value"] for r in best.items] == [0.99, 0.83, 0.77]
        late = client.runs.start_run("churn-exp", "tune_trial", name="trial-late")
        client.runs.log_metrics(late.id, {"accuracy": 0.995})
        assert queries.runs_page(metric="accuracy", kind="tune_trial").items[0]["run"].name == "trial-late"
        names = lambda: [r["run"].name for r in queries.runs_page(metric="accuracy",  # noqa: E731
                                                                  dataset_version=DATASET_HASH).items]
        assert "trial-late" not in names()
        client.runs.link_dataset(late.id, scenario.dataset_id)
        assert names()[0] == "trial-late"

        models = queries.models_page()
        row = next(m for m in models.items if m["name"] == MODEL)
        assert (row["champion"]["version"], row["challenger"]["version"], row["level"]) == (2, 3, "RED")
        assert queries.alias_holder_at(MODEL, "champion", datetime.now(UTC))["version"] == 2
        assert queries.alias_holder_at(MODEL, "champion", datetime.now(UTC) - timedelta(days=1)) is None
        assert [v["version"] for v in queries.versions_page(MODEL, limit=2).items] == [3, 2]
        assert [h["to_version"] for h in queries.alias_history_page(MODEL, alias="champion").items] == [2, 1]
    finally:
        client.close()
