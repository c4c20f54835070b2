"""A seeded churn-like tabular dataset: numeric and categorical features, a binary label, entities and event times.

``drift`` shifts the feature distributions (and the base churn rate) so that monitoring has something to find.
``concept`` changes how the features drive churn (price matters more, support calls and the basic plan less), so
that the old model's ranking decays and a model retrained on the new window clearly beats it: on the demo's
window the champion's ROC AUC falls to about 0.6 while a retrained model reaches about 0.88.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

NUMERIC_FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_gb", "age"]
CATEGORICAL_FEATURES = ["plan", "region", "payment_method"]
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES
TARGET = "churned"


def make_churn(n_rows: int = 5000, seed: int = 42, drift: float = 0.0,
               start: datetime = datetime(2026, 1, 1, tzinfo=UTC), missing_rate: float = 0.02,
               concept: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 12.0, n_rows) * (1 - 0.5 * drift)
    charges = rng.normal(70 + 25 * drift, 20, n_rows).clip(10, None)
    calls = rng.poisson(1.5 + 2.0 * drift, n_rows).astype("float64")
    usage = rng.lognormal(3.0 + 0.3 * drift, 0.6, n_rows)
    age = rng.normal(45, 12, n_rows).clip(18, 90).round()
    plan = rng.choice(["basic", "standard", "premium"], n_rows, p=[0.5 - 0.2 * drift, 0.35, 0.15 + 0.2 * drift])
    region = rng.choice(["north", "south", "east", "west"], n_rows)
    payment = rng.choice(["card", "bank", "cash"], n_rows, p=[0.5, 0.3, 0.2])
    logit = (0.2 - 0.09 * tenure + (0.05 + 0.05 * concept) * (charges - 70) + (0.9 - 1.2 * concept) * calls
             - 0.01 * usage + np.where(plan == "basic", 1.2 - 2.0 * concept, 0.0)
             - np.where(payment == "bank", 0.8, 0.0) + 1.5 * drift - 1.5 * concept)
    label = rng.random(n_rows) < 1 / (1 + np.exp(-logit))
    df = pd.DataFrame({
        "customer_id": [f"c{seed:03d}-{i:06d}" for i in range(n_rows)],
        "event_time": [start + timedelta(minutes=int(m)) for m in np.sort(rng.integers(0, 60 * 24 * 60, n_rows))],
        "tenure_months": tenure.round(1), "monthly_charges": charges.round(2), "support_calls": calls,
        "usage_gb": usage.round(2), "age": age, "plan": plan, "region": region, "payment_method": payment,
        TARGET: label.astype("int64"),
    })
    if missing_rate > 0:
        for column in ("monthly_charges", "usage_gb"):
            df.loc[rng.random(n_rows) < missing_rate, column] = np.nan
    return df
