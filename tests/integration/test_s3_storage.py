"""s3:// for real: a moto S3 server on 127.0.0.1 (tests/_s3.py) behind the registry, batch scoring, Ray Train
checkpoints and Tune experiments. Nothing may land under the local MLPLATFORM_HOME's artifact folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from mlplatform.client import Client
from mlplatform.errors import IntegrityError


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(uri)


def _objects(uri: str) -> list[str]:
    fs, path = _fs(uri)
    return sorted(i.path for i in fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
                  if i.type == pafs.FileType.File)


def _no_local_artifacts(home: Path) -> None:
    assert not (home / "artifacts").exists() or not any((home / "artifacts").rglob("*"))


def test_register_and_load_through_s3_with_sha256_and_a_tampered_object_refused(
        s3_uri: str, isolated_env: Path, model_artifact_dir: Path, churn_df: pd.DataFrame) -> None:
    client = Client(artifact_uri=s3_uri)
    version = client.registry.register("churn", model_artifact_dir, alias="champion")
    assert version.artifact_uri.startswith("s3://") and "endpoint_override=" in version.artifact_uri
    stored = _objects(version.artifact_uri)
    assert {p.rsplit("/", 1)[-1] for p in stored} >= {"model.json", "model.skops"}
    loaded = client.registry.load("churn@champion")
    expected = loaded.predict(churn_df.head(5)).predictions
    assert Client(artifact_uri=s3_uri).registry.load("churn:1").predict(churn_df.head(5)).predictions == expected

    fs, _ = _fs(version.artifact_uri)
    target = next(p for p in stored if p.endswith("model.skops"))
    with fs.open_input_stream(target) as src:
        data = src.read()
    with fs.open_output_stream(target) as out:  # someone rewrites the object in the bucket
        out.write(data[:-10] + b"0123456789")
    with pytest.raises(IntegrityError, match="fails its sha256 check"):
        client.registry.load("churn@champion")
    assert loaded.predict(churn_df.head(5)).predictions == expected  # what was loaded keeps serving
    _no_local_artifacts(isolated_env)
    client.close()


@pytest.fixture
def s3_client(s3_uri: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from mlplatform.settings import reset_settings

    monkeypatch.setenv("MLPLATFORM_ARTIFACT_URI", s3_uri)
    reset_settings()
    client = Client()
    assert client.artifacts.root_uri == s3_uri
    yield client
    client.close()


@pytest.mark.ray
def test_batch_reads_and_writes_parquet_on_s3(ray_session: str, s3_client: Client, isolated_env: Path,
                                               model_artifact_dir: Path) -> None:
    from mlplatform.artifacts.storage import join_uri
    from mlplatform.batch import BatchConfig, run_batch
    from mlplatform.datasets.synthetic import make_churn

    s3_client.registry.register("churn", model_artifact_dir, alias="champion")
    rows = make_churn(600, seed=11).drop(columns=["churned"])
    base = s3_client.artifacts.root_uri
    fs, inputs = _fs(join_uri(base, "scoring"))
    for i, part in enumerate((rows.iloc[:300], rows.iloc[300:])):
        pq.write_table(pa_table(part), f"{inputs}/part-{i}.parquet", filesystem=fs)
    result = run_batch(BatchConfig(model="churn@champion", input=join_uri(base, "scoring"),
                                   output=join_uri(base, "scored"), batch_size=200, concurrency=1,
                                   keep_columns=["customer_id"], compute="tasks"), client=s3_client)
    assert (result.rows_in, result.rows_scored, result.reconciled) == (600, 600, True)
    written = [p for p in _objects(join_uri(base, "scored")) if p.endswith(".parquet")]
    out = pd.concat([pq.read_table(p, filesystem=fs).to_pandas() for p in written if "_quarantine" not in p])
    assert sorted(out["customer_id"]) == sorted(rows["customer_id"])
    _no_local_artifacts(isolated_env)


def pa_table(df: pd.DataFrame) -> Any:
    import pyarrow as pa

    return pa.Table.from_pandas(df, preserve_index=False)


@pytest.mark.ray
@pytest.mark.slow
def test_train_checkpoints_and_tune_experiments_live_on_s3(ray_session: str, s3_client: Client, isolated_env: Path,
                                                          tmp_path: Path) -> None:
    import yaml

    from mlplatform.artifacts.storage import join_uri
    from mlplatform.config.tune import tune_config_from_dict
    from mlplatform.training import pipeline
    from mlplatform.tuning import runner

    config = {
        "experiment": "s3", "model_name": "churn", "seed": 7, "data": {"source": "synthetic_churn", "n_rows": 1000},
        "model": {"family": "mlp", "params": {"hidden": [8], "dropout": 0.0, "embedding_dim": 2}},
        "training": {"epochs": 2, "batch_size": 128, "lr": 0.02}, "scaling": {"num_workers": 1, "use_gpu": False},
        "checkpoint": {"num_to_keep": 2, "metric": "val_loss"},
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    trained = pipeline.train_from_file(tmp_path / "train.yaml", client=s3_client)
    assert trained.status == "completed"
    base = s3_client.artifacts.root_uri
    checkpoints = _objects(join_uri(base, "ray_train", trained.run_id))
    assert any("/checkpoint_" in p for p in checkpoints), checkpoints
    assert s3_client.registry.resolve(trained.model_version).artifact_uri.startswith("s3://")

    search = tune_config_from_dict({
        "name": "s3_search", "experiment": "tune-s3", "model_name": "churn_tuned", "seed": 7,
        "data": {"source": "synthetic_churn", "n_rows": 600},
        "patterns": {"logistic": {"params": {"C": 1.0}}},
        "search": {"algorithm": "grid", "scheduler": "fifo"}, "budget": {"num_samples": 2},
        "max_concurrent_trials": 2, "gate": {"metric": "roc_auc", "min_lift": 0.0},
    })
    outcome = runner.run_search(search, client=s3_client)
    assert outcome.experiment_path.startswith("s3://")
    state = _objects(outcome.experiment_path)
    assert any(p.rsplit("/", 1)[-1].startswith("experiment_state") for p in state), state
    _no_local_artifacts(isolated_env)
