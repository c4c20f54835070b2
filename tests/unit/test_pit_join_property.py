"""Property-based (hypothesis): the point-in-time join equals a brute-force oracle on random data, never uses a
feature row from after the label time or beyond the TTL, and the online table agrees with the offline join."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mlplatform.features.pit_join import FeatureView, get_online_features, materialize, point_in_time_join

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# Few entities and coarse times (minutes out of 0..30) so that exact ties, label time == event time and
# event time == label time - TTL (the inclusive TTL boundary) all come up often.
ENTITY = st.sampled_from(["a", "b", "c"])
MINUTE = st.integers(0, 30)
FEATURE_ROW = st.tuples(ENTITY, MINUTE, st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
LABEL_ROW = st.tuples(st.sampled_from(["a", "b", "c", "never"]), MINUTE)
TTL = st.one_of(st.none(), st.integers(0, 40).map(lambda m: timedelta(minutes=m) or timedelta(seconds=1)))


def _frames(feature_rows: list[tuple[str, int, float]],
            label_rows: list[tuple[str, int]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    features = pd.DataFrame({"user": [r[0] for r in feature_rows],
                             "event_time": [T0 + timedelta(minutes=r[1]) for r in feature_rows],
                             "score": [r[2] for r in feature_rows]},
                            columns=["user", "event_time", "score"])
    features = features.astype({"user": object, "score": "float64"})
    labels = pd.DataFrame({"user": [r[0] for r in label_rows],
                           "event_time": [T0 + timedelta(minutes=r[1]) for r in label_rows]})
    return features, labels


def _oracle(features: pd.DataFrame, user: str, t: datetime, ttl: timedelta | None) -> tuple[float, datetime] | None:
    """Scan every feature row: the latest eligible one, the later source row among equal times."""
    best = None
    for user_i, time_i, score_i in features.itertuples(index=False):
        eligible = user_i == user and time_i <= t and (ttl is None or time_i >= t - ttl)
        if eligible and (best is None or time_i >= best[1]):
            best = (score_i, time_i)
    return best


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feature_rows=st.lists(FEATURE_ROW, max_size=25), label_rows=st.lists(LABEL_ROW, min_size=1, max_size=15),
       ttl=TTL)
@example(feature_rows=[], label_rows=[("a", 0)], ttl=None)  # found by hypothesis: no feature rows at all
def test_join_equals_oracle_and_never_leaks(feature_rows: list[tuple[str, int, float]],
                                            label_rows: list[tuple[str, int]], ttl: timedelta | None) -> None:
    features, labels = _frames(feature_rows, label_rows)
    joined = point_in_time_join(labels, features, entity="user", features=["score"], ttl=ttl)
    assert len(joined) == len(labels)
    pd.testing.assert_frame_equal(joined[labels.columns], labels)  # one row out per row in, in input order
    for (user, t), score, used_at in zip(labels.itertuples(index=False), joined["score"],
                                         joined["feature_event_time"], strict=True):
        expected = _oracle(features, user, t, ttl)
        if expected is None:
            assert pd.isna(score) and pd.isna(used_at)
            continue
        assert score == expected[0] and used_at == expected[1]
        assert used_at <= t, "a feature from after the label time"
        assert ttl is None or used_at >= t - ttl, "a feature from beyond the TTL"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feature_rows=st.lists(FEATURE_ROW, max_size=20), as_of_minute=MINUTE, ttl=TTL)
def test_online_table_agrees_with_the_offline_join(feature_rows: list[tuple[str, int, float]], as_of_minute: int,
                                                   ttl: timedelta | None) -> None:
    features, _ = _frames(feature_rows, [])
    as_of = T0 + timedelta(minutes=as_of_minute)
    view = FeatureView(name="usage", entity="user", features=["score"], ttl=ttl)
    ids = ["a", "b", "c", "never"]
    with tempfile.TemporaryDirectory() as home:
        materialize(view, end_time=as_of, feature_df=features, home=Path(home), overwrite=True)
        online = get_online_features(view, ids, home=Path(home), as_of=as_of)
    offline = point_in_time_join(pd.DataFrame({"user": ids, "t": [as_of] * len(ids)}), features, entity="user",
                                 features=["score"], label_time="t", ttl=ttl)
    assert online["user"].tolist() == ids
    for got, want, got_at, want_at in zip(online["score"], offline["score"], online["event_time"],
                                          offline["feature_event_time"], strict=True):
        assert (pd.isna(got) and pd.isna(want)) or got == want
        assert (pd.isna(got_at) and pd.isna(want_at)) or got_at == want_at
