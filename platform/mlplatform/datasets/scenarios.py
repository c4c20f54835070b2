"""Monitoring scenarios with ground truth: a stream of daily windows with known events, deterministic by seed.

Each scenario is a stationary stretch followed by at most one injected event that lasts ``event_windows`` windows:

- ``mean_shift``: the important numeric feature ``income`` moves by 1.5 sd (P(y|x) unchanged);
- ``category_mix``: the mix of the 300-category ``merchant`` and of ``region`` changes;
- ``prior_shift``: the positive rate changes while P(x|y) stays (label prior shift);
- ``concept_drift``: P(y|x) changes (the sign of ``income``'s effect flips): only labels can show it;
- ``missing_spike``: 30 % of ``income`` is missing;
- ``schema_break``: the ``usage`` column is gone.

The data has a 300-category feature with many rare categories, a protected attribute ``group`` (kept out of the
features, used in evaluation), an imbalance knob (``positive_rate``) and label delay: the labels of window ``w``
arrive with window ``w + label_delay``, and a share ``label_missing`` never arrives. ``ground_truth`` is one row
per event: where it starts and ends, what it touches, whether it needs an alert and whether it needs a retrain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

EventKind = Literal["mean_shift", "category_mix", "prior_shift", "concept_drift", "missing_spike", "schema_break"]
EVENTS: tuple[EventKind, ...] = ("mean_shift", "category_mix", "prior_shift", "concept_drift", "missing_spike",
                                 "schema_break")
NUMERIC = ["income", "tenure", "usage"]
CATEGORICAL = ["merchant", "region"]
FEATURES = NUMERIC + CATEGORICAL
TARGET = "label"
PROTECTED = "group"
N_MERCHANTS = 300
REGIONS = ["north", "south", "east", "west", "central"]
REGION_P = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
START = datetime(2026, 1, 1, tzinfo=UTC)
# what each event touches, and whether the model it meets needs retraining (only a changed P(y|x) does)
EVENT_FEATURE = {"mean_shift": "income", "category_mix": "merchant", "prior_shift": "prediction",
                 "concept_drift": "label", "missing_spike": "income", "schema_break": "usage"}
NEEDS_RETRAIN = {"concept_drift"}


class ScenarioConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = Field(0, description="Every window is drawn from (seed, window index): same seed, same stream.")
    window_rows: int = Field(2000, ge=1, description="Rows per daily window.")
    stationary_windows: int = Field(30, ge=0, description="Windows before the event.")
    event_windows: int = Field(3, ge=1, description="How long the event lasts.")
    positive_rate: float = Field(0.3, gt=0, lt=1, description="Imbalance knob: the base positive rate.")
    label_delay: int = Field(1, ge=0, description="Labels of window w arrive with window w + label_delay.")
    label_missing: float = Field(0.1, ge=0, lt=1, description="Share of labels that never arrive.")


@dataclass
class ScenarioWindow:
    index: int
    start: datetime
    frame: pd.DataFrame  # features, ``group``, ``entity_id``, ``event_time`` and the true ``label``
    labelled: np.ndarray  # rows whose label ever arrives
    labels_arrive_at: int  # the window index with which this window's labels arrive
    event: str | None = None


@dataclass
class Scenario:
    name: str
    config: ScenarioConfig
    windows: list[ScenarioWindow]
    ground_truth: pd.DataFrame = field(default_factory=pd.DataFrame)

    def labels_arriving(self, index: int) -> list[ScenarioWindow]:
        """The windows whose labels arrive with window ``index``."""
        return [w for w in self.windows if w.labels_arrive_at == index]


def _merchant_p() -> np.ndarray:
    weights = 1.0 / np.arange(1, N_MERCHANTS + 1) ** 1.1  # Zipf-like: a few common, a long tail of rare ones
    return weights / weights.sum()


@lru_cache(maxsize=32)
def _intercept(positive_rate: float) -> float:
    """The intercept that gives ``positive_rate`` on stationary rows (bisection on a fixed sample), so that the
    imbalance knob means what it says."""
    frame = _draw_features(np.random.default_rng(12345), 50_000)
    rest = _logit(frame, 0.0)
    lo, hi = -15.0, 15.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if np.mean(1 / (1 + np.exp(-(rest + mid)))) < positive_rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _logit(frame: pd.DataFrame, intercept: float, concept: bool = False) -> np.ndarray:
    income_effect = -0.06 if concept else 0.06
    merchant = frame["merchant"].str[1:].astype(int).to_numpy()
    logit = (intercept + income_effect * (frame["income"].to_numpy() - 50)
             - 0.05 * (frame["tenure"].to_numpy() - 20) + 0.8 * (np.log(frame["usage"].to_numpy()) - 2)
             + np.where(merchant < 20, 0.6, -0.1) + np.where(frame["region"].to_numpy() == "north", 0.4, 0.0))
    return logit


def _draw_features(rng: np.random.Generator, n: int, *, merchant_p: np.ndarray | None = None,
                   region_p: np.ndarray | None = None, income_shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({
        "income": rng.normal(50 + income_shift, 15, n).round(2),
        "tenure": rng.gamma(2.0, 10.0, n).round(1),
        "usage": rng.lognormal(2.0, 0.5, n).round(3),
        "merchant": [f"m{i:03d}" for i in rng.choice(N_MERCHANTS, n, p=_merchant_p() if merchant_p is None
                                                       else merchant_p)],
        "region": rng.choice(REGIONS, n, p=REGION_P if region_p is None else region_p),
        PROTECTED: rng.choice(["a", "b"], n, p=[0.7, 0.3]),
    })


def _draw(rng: np.random.Generator, n: int, positive_rate: float, *, merchant_p: np.ndarray | None = None,
          region_p: np.ndarray | None = None, income_shift: float = 0.0, concept: bool = False) -> pd.DataFrame:
    frame = _draw_features(rng, n, merchant_p=merchant_p, region_p=region_p, income_shift=income_shift)
    p = 1 / (1 + np.exp(-_logit(frame, _intercept(positive_rate), concept)))
    frame[TARGET] = (rng.random(n) < p).astype("int64")
    return frame


def _prior_shifted(rng: np.random.Generator, n: int, positive_rate: float, new_rate: float) -> pd.DataFrame:
    """Rows drawn from the stationary P(x|y), resampled so that the positive rate is ``new_rate``."""
    pool = _draw(rng, 4 * n, positive_rate)
    n_pos = round(n * new_rate)
    positives = pool[pool[TARGET] == 1]
    negatives = pool[pool[TARGET] == 0]
    take = pd.concat([positives.sample(n_pos, replace=len(positives) < n_pos, random_state=rng.integers(2**31)),
                      negatives.sample(n - n_pos, replace=len(negatives) < n - n_pos,
                                       random_state=rng.integers(2**31))])
    return take.sample(frac=1.0, random_state=rng.integers(2**31)).reset_index(drop=True)


def make_training_frame(n_rows: int = 5000, *, seed: int = 0, positive_rate: float = 0.3) -> pd.DataFrame:
    """Stationary rows (the distribution every scenario starts from), for training the monitored model."""
    rng = np.random.default_rng([seed, 10**6])
    frame = _draw(rng, n_rows, positive_rate)
    frame["entity_id"] = [f"t{seed}-{i}" for i in range(n_rows)]
    frame["event_time"] = [START - timedelta(days=30) + timedelta(seconds=int(s))
                           for s in np.sort(rng.integers(0, 30 * 86400, n_rows))]
    return frame


def _window(config: ScenarioConfig, index: int, event: EventKind | None) -> ScenarioWindow:
    rng = np.random.default_rng([config.seed, index])
    n, rate = config.window_rows, config.positive_rate
    if event == "mean_shift":
        frame = _draw(rng, n, rate, income_shift=1.5 * 15)
    elif event == "category_mix":
        merchant_p = _merchant_p()
        merchant_p = np.r_[merchant_p[:30][::-1], merchant_p[30:]]  # the common merchants trade places
        frame = _draw(rng, n, rate, merchant_p=merchant_p, region_p=REGION_P[::-1])
    elif event == "prior_shift":
        frame = _prior_shifted(rng, n, rate, min(0.9, 2 * rate))
    elif event == "concept_drift":
        frame = _draw(rng, n, rate, concept=True)
    else:
        frame = _draw(rng, n, rate)
    if event == "missing_spike":
        frame.loc[rng.random(n) < 0.3, "income"] = np.nan
    if event == "schema_break":
        frame = frame.drop(columns=["usage"])
    start = START + timedelta(days=index)
    frame["entity_id"] = [f"e{config.seed}-{index}-{i}" for i in range(n)]
    frame["event_time"] = [start + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 86400, n))]
    labelled = rng.random(n) >= config.label_missing
    return ScenarioWindow(index, start, frame, labelled, index + config.label_delay, event)


def make_scenario(event: EventKind | None = None, config: ScenarioConfig | None = None) -> Scenario:
    """``config.stationary_windows`` stationary windows, then ``event`` (None: stationary throughout) for
    ``config.event_windows`` windows."""
    config = config or ScenarioConfig()
    if event is not None and event not in EVENTS:
        raise ValueError(f"unknown event {event!r}; known: {', '.join(EVENTS)}")
    total = config.stationary_windows + (config.event_windows if event else 0)
    windows = [_window(config, i, event if event and i >= config.stationary_windows else None)
               for i in range(total)]
    rows: list[dict[str, Any]] = [{"scenario": event or "stationary", "event": "stationary", "first_window": 0,
             "last_window": config.stationary_windows - 1, "feature": None, "alert_expected": False,
             "retrain_needed": False, "labels_from_window": None}]
    if event:
        first = config.stationary_windows
        rows.append({"scenario": event, "event": event, "first_window": first,
                     "last_window": first + config.event_windows - 1, "feature": EVENT_FEATURE[event],
                     "alert_expected": True, "retrain_needed": event in NEEDS_RETRAIN,
                     "labels_from_window": first + config.label_delay})
    return Scenario(event or "stationary", config, windows, pd.DataFrame(rows))
