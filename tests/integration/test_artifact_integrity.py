"""A tampered artifact is refused on load with a clear message, and nothing replaces what was loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlplatform.errors import IntegrityError, InvalidInput


def _stored_file(client, version, name: str) -> Path:
    return Path(version.artifact_uri) / name


def test_tampered_weights_are_refused_and_previous_model_keeps_working(client, model_artifact_dir, churn_df) -> None:
    version = client.registry.register("churn", model_artifact_dir, alias="champion")
    loaded = client.registry.load("churn@champion")
    expected = loaded.predict(churn_df.head(5)).predictions
    target = _stored_file(client, version, "model.skops")
    target.write_bytes(target.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(IntegrityError, match="fails its sha256 check"):
        client.registry.load("churn@champion")
    assert loaded.predict(churn_df.head(5)).predictions == expected


def test_missing_artifact_file_is_refused(client, model_artifact_dir) -> None:
    version = client.registry.register("churn", model_artifact_dir)
    _stored_file(client, version, "transform.json").unlink()
    with pytest.raises(IntegrityError, match="missing"):
        client.registry.load("churn:1")


def test_register_refuses_a_directory_that_is_not_a_model(client, tmp_path) -> None:
    (tmp_path / "junk.txt").write_text("hello")
    with pytest.raises(InvalidInput, match=r"model\.json"):
        client.registry.register("churn", tmp_path)
    assert client.registry.list_models() == []


def test_pickled_payload_in_place_of_weights_is_never_executed(client, model_artifact_dir, tmp_path) -> None:
    """A skops file that asks for a non-sklearn type is refused even when its hash was recorded."""
    import shutil

    import skops.io as sio

    bad = tmp_path / "bad"
    shutil.copytree(model_artifact_dir, bad)
    sio.dump({"payload": Path("/etc/passwd")}, bad / "model.skops")  # pathlib is outside the trusted set
    with pytest.raises(IntegrityError, match="refusing to load"):
        client.registry.register("evil", bad)
    assert client.registry.list_models() == []
