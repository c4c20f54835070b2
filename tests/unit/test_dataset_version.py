"""Dataset versions: canonical content hash, profile, store records, verified loading (SPEC S4.8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlplatform.datasets.synthetic import make_churn
from mlplatform.errors import IntegrityError, NotFound
from mlplatform.features.datasets import content_hash, load_dataset, profile_frame, read_table, version_dataset


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_churn(2000, seed=9)


def test_hash_is_stable_across_layouts_column_orders_and_formats(frame: pd.DataFrame, tmp_path: Path) -> None:
    digest = content_hash(frame)
    assert len(digest) == 64
    frame.to_parquet(tmp_path / "plain.parquet")
    reordered = frame[list(reversed(frame.columns))]
    pq.write_table(pa.Table.from_pandas(reordered, preserve_index=False), tmp_path / "groups.parquet",
                   row_group_size=97, compression="gzip")
    (tmp_path / "parts").mkdir()
    for i, start in enumerate(range(0, len(frame), 700)):
        frame.iloc[start:start + 700].to_parquet(tmp_path / "parts" / f"part-{i}.parquet")
    frame.to_csv(tmp_path / "plain.csv", index=False)
    for name in ("plain.parquet", "groups.parquet", "parts", "plain.csv"):
        assert content_hash(read_table(tmp_path / name)) == digest, name
    assert content_hash(reordered) == digest
    # Row order is part of the content (SPEC S4.8): the same rows shuffled are another version.
    assert content_hash(frame.sample(frac=1, random_state=3).reset_index(drop=True)) != digest


def test_any_change_changes_the_hash(frame: pd.DataFrame) -> None:
    digest = content_hash(frame)
    value = frame.copy()
    value.loc[5, "usage_gb"] = value.loc[5, "usage_gb"] + 0.01
    category = frame.copy()
    category.loc[5, "plan"] = "gold"
    missing = frame.copy()
    missing.loc[5, "plan"] = None
    dtype = frame.astype({"churned": "float64"})
    renamed = frame.rename(columns={"age": "age_years"})
    fewer = frame.iloc[:-1]
    duplicated = pd.concat([frame, frame.iloc[[0]]])
    variants = [value, category, missing, dtype, renamed, fewer, duplicated]
    hashes = {content_hash(v) for v in variants}
    assert digest not in hashes and len(hashes) == len(variants)
    # missing markers hash alike; -0.0 is 0.0
    a = pd.DataFrame({"x": [np.nan, -0.0], "s": [None, "a"]})
    b = pd.DataFrame({"x": [np.nan, 0.0], "s": [np.nan, "a"]})
    assert content_hash(a) == content_hash(b)


def test_profile_statistics(frame: pd.DataFrame) -> None:
    prof = profile_frame(frame)
    usage = prof["columns"]["usage_gb"]
    present = frame["usage_gb"].dropna()
    assert prof["row_count"] == len(frame) and usage["count"] == len(present)
    assert usage["missing_rate"] == pytest.approx(frame["usage_gb"].isna().mean())
    assert usage["mean"] == pytest.approx(present.mean(), rel=1e-12)
    assert usage["sd"] == pytest.approx(present.std(ddof=0), rel=1e-12)
    assert usage["quantiles"]["0.5"] == pytest.approx(present.median())
    assert (usage["min"], usage["max"]) == (present.min(), present.max())
    plan = prof["columns"]["plan"]
    assert plan["dtype"] == "string" and plan["n_unique"] == 3
    assert sum(plan["frequencies"].values()) == pytest.approx(1.0)


def test_register_lookup_and_verified_load(frame: pd.DataFrame, tmp_path: Path, client: object) -> None:
    path = tmp_path / "train.parquet"
    frame.to_parquet(path)
    version = version_dataset(path, "churn-train", client=client)
    assert version.version == content_hash(frame) and version.row_count == len(frame)
    assert version.uri == str(path.resolve())
    assert [c["name"] for c in version.schema["columns"]] == sorted(frame.columns)
    assert version.schema["shape"] == [len(frame), len(frame.columns)]
    assert version.profile["columns"]["age"]["count"] == len(frame)
    again = version_dataset(path, "churn-train", client=client)  # idempotent
    assert again.id == version.id
    stored = client.datasets.get("churn-train", version.version)  # type: ignore[attr-defined]
    assert stored.profile == version.profile
    pd.testing.assert_frame_equal(load_dataset("churn-train", version.version, client=client), read_table(path))
    with pytest.raises(NotFound):
        load_dataset("churn", version.version, client=client)  # no prefix lookup on names
    tampered = frame.copy()
    tampered.loc[0, "age"] = 99.0
    tampered.to_parquet(path)
    with pytest.raises(IntegrityError, match="changed"):
        load_dataset("churn-train", version.version, client=client)


def test_unknown_path_and_format(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        read_table(tmp_path / "nope.parquet")
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(Exception, match="format"):
        read_table(tmp_path / "x.txt")
