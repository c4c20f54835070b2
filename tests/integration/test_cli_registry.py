"""The registry through the real ``mlplatform`` console script in a subprocess, with ``--json`` checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MLPLATFORM = [sys.executable, "-m", "mlplatform.cli.main"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MLPLATFORM, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def cli_json(*args: str) -> object:
    result = cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_register_alias_promote_rollback_archive_through_cli(model_artifact_dir: Path) -> None:
    assert cli_json("store", "init")["to_revision"]
    v1 = cli_json("models", "register", "churn", str(model_artifact_dir), "--alias", "champion")
    v2 = cli_json("models", "register", "churn", str(model_artifact_dir))
    assert (v1["version"], v1["status"], v2["version"], v2["status"]) == (1, "champion", 2, "registered")
    assert cli_json("models", "alias", "churn:2", "challenger")["status"] == "challenger"
    listed = cli_json("models", "list")
    assert listed[0]["aliases"] == {"champion": 1, "challenger": 2}
    promoted = cli_json("models", "promote", "churn", "--reason", "better on holdout")
    assert (promoted["version"], promoted["status"]) == (2, "champion")
    assert cli_json("models", "show", "churn:1")["status"] == "standby"
    rolled = cli_json("models", "rollback", "churn", "--reason", "alert")
    assert rolled["version"] == 1
    assert cli_json("models", "show", "churn")["version"] == 1
    assert cli_json("models", "archive", "churn:2")["status"] == "archived"
    history = cli_json("models", "history", "churn", "--alias", "champion")
    assert [(h["from_version"], h["to_version"], h["reason"]) for h in history][-1] == (2, 1, "alert")
    table = cli("models", "list")
    assert table.returncode == 0 and "churn" in table.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("models", "show", "unknown-model"), "not registered"),
        (("models", "show", "bad ref!"), "must be name"),
        (("models", "show", "churn@NotAnAlias"), "alias"),
        (("models", "promote", "unknown-model"), "not registered"),
        (("runs", "show", "00000000-0000-0000-0000-000000000000"), "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], needle: str) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_unreachable_store_and_malformed_setting_exit_2_without_leaking_password() -> None:
    result = cli("models", "list", env={"MLPLATFORM_STORE_URL": "postgresql://admin:hunter2@127.0.0.1:1/db"})
    assert result.returncode == 2 and "unreachable" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout and "Traceback" not in result.stderr
    bad = cli("models", "list", env={"MLPLATFORM_LOG_LEVEL": "LOUD"})
    assert bad.returncode == 2 and "MLPLATFORM_LOG_LEVEL" in bad.stderr


def test_version_and_store_upgrade_twice() -> None:
    assert cli("version").stdout.startswith("mlplatform ")
    first = cli_json("store", "upgrade")
    second = cli_json("store", "upgrade")
    assert first["changed"] is True and second["changed"] is False


def test_runs_list_and_show_json(client) -> None:
    run = client.runs.start_run("cli-exp", "train", config={"lr": 0.1})
    client.runs.log_metrics(run.id, {"accuracy": 0.9}, step=3)
    client.runs.end_run(run.id)
    listed = cli_json("runs", "list", "--experiment", "cli-exp")
    assert [r["id"] for r in listed] == [run.id]
    shown = cli_json("runs", "show", run.id)
    assert shown["metrics"] == {"accuracy": 0.9} and shown["status"] == "completed"
    best = cli_json("runs", "best", "accuracy")
    assert best["run_id"] == run.id


def test_lineage_is_captured_and_diffed(model_artifact_dir: Path) -> None:
    cli_json("models", "register", "lin", str(model_artifact_dir))
    cli_json("models", "register", "lin", str(model_artifact_dir))
    shown = cli_json("models", "lineage", "show", "lin:1")
    lineage = shown["lineage"]
    assert lineage["environment"]["packages"]["ray"] == "2.60.0"
    assert "python" in lineage["environment"] and "git" in lineage and lineage["seed"] == 42
    diff = cli_json("models", "lineage", "diff", "lin:1", "lin:2")
    assert isinstance(diff, list)  # same artifact and environment: only identity fields may differ
    assert all(row["section"] != "environment" for row in diff)
