"""Feature store agreement (issue 15, deliverable 6): entity keys compared by the declared key type, and one naming
scheme for offline and online features, through the public API (get_historical_features, materialize,
get_online_features and ``mlplatform features get``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlplatform.errors import InvalidInput
from mlplatform.features.pit_join import FeatureView, get_historical_features, get_online_features, materialize

T0 = datetime(2026, 1, 1, tzinfo=UTC)
VIEW = FeatureView(name="usage", entity="user", features=["calls", "plan"])


def _source() -> pd.DataFrame:
    # integer keys: the view's declared key type
    return pd.DataFrame({"user": [1, 2, 3], "event_time": [T0, T0, T0], "calls": [10.0, 20.0, 30.0],
                         "plan": ["a", "b", "c"]})


def _labels(users: list) -> pd.DataFrame:
    return pd.DataFrame({"user": users, "event_time": [T0 + timedelta(hours=1)] * len(users)})


def test_float_entity_keys_join_integer_feature_keys() -> None:
    # a label file whose id column has a gap reads as float: 1.0 must find entity 1 (before: "1.0" != "1", all null)
    labels = _labels([1.0, 3.0, np.nan, 7.0])
    out = get_historical_features(labels, [VIEW], sources={"usage": _source()})
    assert out["calls"].iloc[:2].tolist() == [10.0, 30.0] and out["calls"].iloc[2:].isna().all()
    assert out["plan"].iloc[:2].tolist() == ["a", "c"]
    assert out["usage__event_time"].notna().tolist() == [True, True, False, False]
    # and the other way round: float feature keys, integer labels
    source = _source().astype({"user": "float64"})
    out = get_historical_features(_labels([2, 3]), [VIEW], sources={"usage": source})
    assert out["calls"].tolist() == [20.0, 30.0]


def test_non_integral_float_key_against_integer_key_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match=r"float64.*int64.*1\.5") as info:
        get_historical_features(_labels([1.5, 2.0]), [VIEW], sources={"usage": _source()})
    assert info.value.field == "user"


def test_string_keys_against_integer_keys_still_compare_as_strings() -> None:
    out = get_historical_features(_labels(["1", "2"]), [VIEW], sources={"usage": _source()})
    assert out["calls"].tolist() == [10.0, 20.0]


def test_offline_and_online_names_agree(tmp_path: Path) -> None:
    labels = _labels([1, 2])
    materialize(VIEW, feature_df=_source(), home=tmp_path, end_time=T0 + timedelta(hours=1))
    for full in (False, True):
        offline = get_historical_features(labels, [VIEW], sources={"usage": _source()}, full_feature_names=full)
        online = get_online_features(VIEW, [1, 2], home=tmp_path, full_feature_names=full)
        names = ["usage__calls", "usage__plan"] if full else ["calls", "plan"]
        assert set(names) <= set(offline.columns) and set(names) <= set(online.columns)
        pd.testing.assert_frame_equal(offline[names].reset_index(drop=True), online[names], check_dtype=False)
    # a float id names the same online entity as the integer
    assert get_online_features(VIEW, [2.0], home=tmp_path)["calls"].tolist() == [20.0]


def test_shared_feature_names_need_full_feature_names() -> None:
    other = FeatureView(name="billing", entity="user", features=["calls"])
    sources = {"usage": _source(), "billing": _source()}
    with pytest.raises(InvalidInput, match="full_feature_names"):
        get_historical_features(_labels([1]), [VIEW, other], sources=sources)
    out = get_historical_features(_labels([1]), [VIEW, other], sources=sources, full_feature_names=True)
    assert out[["usage__calls", "billing__calls"]].iloc[0].tolist() == [10.0, 10.0]


def test_cli_features_get_uses_the_same_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlplatform.cli.main import app

    monkeypatch.setenv("MLPLATFORM_HOME", str(tmp_path))
    source = tmp_path / "usage.parquet"
    _source().to_parquet(source)
    spec = tmp_path / "views.yaml"
    spec.write_text(f"- name: usage\n  entity: user\n  features: [calls, plan]\n  source: {source}\n")
    runner = CliRunner()
    assert runner.invoke(app, ["features", "apply", str(spec)]).exit_code == 0
    result = runner.invoke(app, ["features", "materialize", "usage", "--end", "2026-01-02"])
    assert result.exit_code == 0, result.output
    for flag, name in (([], "calls"), (["--full-feature-names"], "usage__calls")):
        result = runner.invoke(app, ["features", "get", "usage", "--entity-ids", "1,3", "--json", *flag])
        assert result.exit_code == 0, result.output
        assert [row[name] for row in json.loads(result.output)] == [10.0, 30.0]


def test_declared_key_type_casts_both_sides_exactly(tmp_path: Path) -> None:
    typed = VIEW.model_copy(update={"entity_type": "int"})
    assert typed.version != VIEW.version
    assert VIEW.version == FeatureView.model_validate(VIEW.model_dump(exclude={"entity_type"})).version
    # declared int: integer strings and integral floats name the integer entities
    source = _source().astype({"user": str}).assign(user=["001", "2", "3"])
    out = get_historical_features(_labels([1.0, "3", 2]), [typed], sources={"usage": source})
    assert out["calls"].tolist() == [10.0, 30.0, 20.0]
    with pytest.raises(InvalidInput, match=r"declared int.*'x1' \(str\)"):
        get_historical_features(_labels(["x1"]), [typed], sources={"usage": _source()})
    with pytest.raises(InvalidInput, match=r"declared int.*2\.5"):
        get_historical_features(_labels([2.5]), [typed], sources={"usage": _source()})
    # declared string: 1.0 is "1", as the online table keys it
    named = VIEW.model_copy(update={"entity_type": "string"})
    out = get_historical_features(_labels([1.0, np.nan]), [named], sources={"usage": _source()})
    assert out["calls"].iloc[0] == 10.0 and pd.isna(out["calls"].iloc[1])
    materialize(typed, feature_df=source, home=tmp_path, end_time=T0 + timedelta(hours=1))
    assert get_online_features(typed, [1, "1", "001", 1.0], home=tmp_path)["calls"].tolist() == [10.0] * 4
