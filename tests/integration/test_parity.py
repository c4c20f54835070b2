"""The parity suite (issue 15): one table of tricky rows through the four paths a row can take.

1. training: the rows as a Parquet file read the way training reads data, checked by the training data check
   (:func:`validate_frame`) and scored through the training-time transform;
2. ``Predictor.predict`` on the rows as JSON-style objects;
3. a batch job on Ray Data (``run_batch``) over the same Parquet file;
4. HTTP ``:predict`` on Ray Serve, one request per row.

Every accepted row must get byte-identical predictions and probabilities on all four paths; every refused row the
same set of (field, reason) on all four (a 422 over HTTP, a quarantine reason or a refused job in batch, a validation
error in training). A new tricky row is one line in ``ROWS``.

Parquet columns are typed, so rows whose values cannot share a column type (a bool where the others hold numbers, a
list, an absent field) go into their own file: :func:`_groups` packs the rows into as few typed files as it can.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlplatform.errors import GateFailed, InvalidInput
from mlplatform.features.datasets import read_table
from mlplatform.features.rows import (
    MISSING_FIELD,
    NOT_FINITE,
    WRONG_TYPE,
)
from mlplatform.features.schema import schema_from_json
from mlplatform.features.transform import TransformConfig
from mlplatform.features.validation import ValidationConfig, validate_frame
from mlplatform.predictor import Predictor

pytestmark = [pytest.mark.ray, pytest.mark.slow]

FEATURES = ["amount", "count", "active", "region"]
ABSENT = object()  # the field is not in the row at all
BASE = {"amount": 12.5, "count": 3, "active": True, "region": "north"}
MISSING_TOKENS = ["N/A"]  # declared by this model: "N/A" is missing on every path, "NA" is an ordinary category

# (what the row is, changes to BASE, expected refusals as {(field, reason)}; empty: accepted)
ROWS: list[tuple[str, dict[str, Any], set[tuple[str, str]]]] = [
    ("base", {}, set()),
    ("category NA", {"region": "NA"}, set()),
    ("category empty", {"region": ""}, set()),
    ("category None text", {"region": "None"}, set()),
    ("category null text", {"region": "null"}, set()),
    ("category null", {"region": None}, set()),
    ("category declared token", {"region": "N/A"}, set()),
    ("category unseen", {"region": "atlantis"}, set()),
    ("category unicode", {"region": "Zürich 東京 🚀"}, set()),
    ("category 10k chars", {"region": "x" * 10_000}, set()),
    ("category int", {"region": 7}, set()),
    ("category integral float", {"region": 7.0}, set()),
    ("category fractional", {"region": 7.5}, {("region", WRONG_TYPE)}),
    ("category bool", {"region": True}, {("region", WRONG_TYPE)}),
    ("category list", {"region": ["north"]}, {("region", WRONG_TYPE)}),
    ("float null", {"amount": None}, set()),
    ("float NaN", {"amount": math.nan}, set()),
    ("float inf", {"amount": math.inf}, {("amount", NOT_FINITE)}),
    ("float -inf", {"amount": -math.inf}, {("amount", NOT_FINITE)}),
    ("float -0.0", {"amount": -0.0}, set()),
    ("float 1e308", {"amount": 1e308}, set()),
    ("float -1e308", {"amount": -1e308}, set()),
    ("float tiny", {"amount": 1e-300}, set()),
    ("float int", {"amount": 7}, set()),
    ("float numeric text", {"amount": "12.5"}, set()),
    ("float text", {"amount": "abc"}, {("amount", WRONG_TYPE)}),
    ("float NA text", {"amount": "NA"}, {("amount", WRONG_TYPE)}),
    ("float empty text", {"amount": ""}, {("amount", WRONG_TYPE)}),
    ("float None text", {"amount": "None"}, {("amount", WRONG_TYPE)}),
    ("float declared token", {"amount": "N/A"}, set()),
    ("float bool", {"amount": True}, {("amount", WRONG_TYPE)}),
    ("float object", {"amount": {"v": 1}}, {("amount", WRONG_TYPE)}),
    ("int fractional", {"count": 1.5}, {("count", WRONG_TYPE)}),
    ("int integral float", {"count": 2.0}, set()),
    ("int numeric text", {"count": "2"}, set()),
    ("int fractional text", {"count": "1.5"}, {("count", WRONG_TYPE)}),
    ("int bool", {"count": False}, {("count", WRONG_TYPE)}),
    ("int null", {"count": None}, set()),
    ("int large", {"count": 10**15}, set()),
    ("bool 0/1", {"active": 0}, set()),
    ("bool 2", {"active": 2}, {("active", WRONG_TYPE)}),
    ("bool text", {"active": "yes"}, {("active", WRONG_TYPE)}),
    ("bool null", {"active": None}, set()),
    ("all null", {f: None for f in FEATURES}, set()),
    ("missing amount", {"amount": ABSENT}, {("amount", MISSING_FIELD)}),
    ("missing region", {"region": ABSENT}, {("region", MISSING_FIELD)}),
    ("wrong case", {"region": ABSENT, "Region": "north"}, {("region", MISSING_FIELD)}),
    ("extra field", {"bonus": 1}, set()),
    ("two bad values", {"amount": "abc", "count": 1.5}, {("amount", WRONG_TYPE), ("count", WRONG_TYPE)}),
]


def _row(changes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (BASE | changes).items() if v is not ABSENT}


# -- the model ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlplatform.learning.sklearn_fit import fit_sklearn_artifact

    rng = np.random.default_rng(5)
    n = 600
    region = rng.choice(["north", "south", "NA", "", "N/A"], n)
    amount = rng.normal(50, 20, n)
    count = rng.integers(0, 10, n)
    active = rng.random(n) < 0.5
    logit = 0.04 * (amount - 50) + 0.3 * (count - 5) + active - (region == "NA")
    frame = pd.DataFrame({"amount": amount.astype(object), "count": count, "active": active, "region": region,
                          "label": (logit + rng.normal(0, 1, n) > 0).astype(int)})
    frame.loc[frame.index[:30], "amount"] = "N/A"  # the declared token, in training data too
    out = tmp_path_factory.mktemp("parity") / "model"
    fit_sklearn_artifact(frame, target="label", features=FEATURES, family="logistic", out_dir=out,
                         transform_config=TransformConfig(missing_tokens=MISSING_TOKENS))
    return out


# -- the four paths ----------------------------------------------------------------------------------------------
Outcome = tuple[str, Any]  # ("accepted", (label, p1 bytes)) or ("refused", frozenset of (field, reason))


def _accepted(label: Any, p1: float) -> Outcome:
    return "accepted", (label, np.float64(p1).tobytes())


def _refused(pairs: Any) -> Outcome:
    return "refused", frozenset(pairs)


def _predictor_path(predictor: Predictor, rows: list[dict[str, Any]]) -> list[Outcome]:
    out = []
    for row in rows:
        checked = predictor.check([row])
        if checked.issues:
            out.append(_refused((i.field, i.reason) for i in checked.issues))
            continue
        result = predictor.predict([row])
        out.append(_accepted(result.predictions[0], result.probabilities[0, 1]))
    return out


def _groups(rows: list[dict[str, Any]]) -> list[list[int]]:
    """Rows packed into typed tables: a column's kind (number, bool, text, nested, absent) must agree within a
    table; nulls go anywhere."""
    def kind(value: Any) -> str:
        if value is ABSENT:
            return "absent"
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "null"
        if isinstance(value, bool):
            return "bool"
        if isinstance(value, int | float):
            return "number"
        if isinstance(value, str):
            return "text"
        return f"nested:{type(value).__name__}"

    def fits(group: dict[str, str], kinds: dict[str, str]) -> bool:
        for column, kind in kinds.items():
            have = group.get(column, "absent")
            if column in FEATURES and (have == "absent") != (kind == "absent"):
                return False  # an absent feature is an absent column: the whole file lacks it
            if "null" not in (have, kind) and "absent" not in (have, kind) and have != kind:
                return False
        return True

    groups: list[tuple[dict[str, str], list[int]]] = []
    for index, row in enumerate(rows):
        kinds = {c: kind(row.get(c, ABSENT)) for c in sorted(set(row) | set(FEATURES))}
        group = next((g for g in groups if fits(g[0], kinds)), None)
        if group is None:
            groups.append((dict(kinds), [index]))
            continue
        for column, kind_ in kinds.items():
            if group[0].get(column, "absent") in ("null", "absent") and kind_ != "absent":
                group[0][column] = kind_
        group[1].append(index)
    return [members for _, members in groups]


def _table(rows: list[dict[str, Any]], indices: list[int]) -> pa.Table:
    columns = sorted({k for i in indices for k in rows[i]})
    data = {c: [rows[i].get(c) for i in indices] for c in columns}
    # "rid" identifies the row in batch output and quarantine files
    return pa.table({"rid": indices, **{c: pa.array(v, from_pandas=True) for c, v in data.items()}})


def _issue_pairs(text: str) -> set[tuple[str, str]]:
    return set(re.findall(r"(?:^|; )(\w+): (\w+) \(", text))


def _write_groups(rows: list[dict[str, Any]], folder: Path) -> list[tuple[list[int], Path]]:
    files = []
    for n, indices in enumerate(_groups(rows)):
        path = folder / f"group-{n}" / "part-0.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(_table(rows, indices), path)
        files.append((indices, path))
    return files


def _training_path(predictor: Predictor, groups: list[tuple[list[int], Path]], n: int) -> list[Outcome]:
    out: list[Outcome | None] = [None] * n
    schema = schema_from_json(predictor.input_schema)
    config = ValidationConfig(missing_tokens=MISSING_TOKENS, ignore_columns=["rid"])
    for _, path in groups:
        frame = read_table(path)  # training reads its data file like this
        report = validate_frame(frame, schema, config=config)
        refused: dict[int, set[tuple[str, str]]] = {}
        # the row verdicts of the report; its dataset-level judgements (shares, missing rates) are not about a row
        for check in report.errors:
            if check.check == "required_column":
                for position in range(len(frame)):
                    refused.setdefault(position, set()).add((check.column, check.details["reason"]))
            elif "rows" in check.details:
                for position in check.details["rows"]:
                    refused.setdefault(position, set()).add((check.column, check.details["reason"]))
        accepted = [p for p in range(len(frame)) if p not in refused]
        if accepted:
            part = frame.iloc[accepted]
            matrix = predictor.transform.transform(part)  # the training-time transform
            result = predictor.predict(part)
            assert matrix.shape[0] == len(accepted)
            for j, position in enumerate(accepted):
                out[int(frame["rid"].iloc[position])] = _accepted(result.predictions[j], result.probabilities[j, 1])
        for position, pairs in refused.items():
            out[int(frame["rid"].iloc[position])] = _refused(pairs)
    return out  # type: ignore[return-value]


def _batch_path(client: Any, groups: list[tuple[list[int], Path]], n: int, tmp: Path) -> list[Outcome]:
    from mlplatform.batch import BatchConfig, run_batch

    out: list[Outcome | None] = [None] * n
    for g, (indices, path) in enumerate(groups):
        target = tmp / f"out-{g}"
        try:
            result = run_batch(BatchConfig(model="parity@champion", input=str(path.parent), output=str(target),
                                           keep_columns=["rid"], max_quarantine_fraction=1.0), client=client)
            scored = pq.read_table(result.output_path).to_pandas()
            quarantine = pq.read_table(result.quarantine_path).to_pandas()
        except InvalidInput as refused:  # the whole input refused before any compute, naming field and reason
            for i in indices:
                out[i] = _refused({(refused.field, refused.details["reason"])})
            continue
        except GateFailed:  # nothing could be scored: every row is in the kept quarantine file
            scored = pd.DataFrame({"rid": []})
            quarantine = pq.read_table(next(target.rglob("_rejected-*/_quarantine.parquet"))).to_pandas()
        for rid, label, p1 in zip(scored["rid"], scored.get("prediction", []), scored.get("probability", []),
                                  strict=True):
            out[int(rid)] = _accepted(label, p1)
        for rid, reason in zip(quarantine["rid"], quarantine["reason"], strict=True):
            out[int(rid)] = _refused(_issue_pairs(reason))
    return out  # type: ignore[return-value]


def _json_body(row: dict[str, Any]) -> bytes:
    """What a JSON client sends: NaN has no JSON form (null), infinity only as an overflowing literal."""
    def encode(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, float) and math.isinf(value):
            return f"__inf{'+' if value > 0 else '-'}__"
        return value

    text = json.dumps({"instances": [{k: encode(v) for k, v in row.items()}]})
    return text.replace('"__inf+__"', "1e999").replace('"__inf-__"', "-1e999").encode()


def _http_path(url: str, rows: list[dict[str, Any]]) -> list[Outcome]:
    out = []
    with httpx.Client(timeout=30) as http:
        for row in rows:
            response = http.post(f"{url}/v1/models/parity:predict", content=_json_body(row),
                                 headers={"Content-Type": "application/json"})
            if response.status_code == 422:
                fields = response.json()["error"]["fields"]
                out.append(_refused((re.sub(r"^instances\[\d+\]\.", "", f["field"]), f["code"]) for f in fields))
                continue
            assert response.status_code == 200, response.text
            body = response.json()
            out.append(_accepted(body["predictions"][0], body["probabilities"][0][1]))
    return out


@pytest.fixture(scope="module")
def served(serve_instance: str, tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[dict]:
    from ray import serve

    from mlplatform.client import Client
    from mlplatform.serving.app import build_app
    from mlplatform.settings import Settings

    root = tmp_path_factory.mktemp("parity-home")
    where = {"store_url": f"sqlite:///{root / 'store.db'}", "artifact_uri": str(root / "artifacts"),
             "home": str(root)}
    client = Client(Settings(home=root), store_url=where["store_url"], artifact_uri=where["artifact_uri"])
    client.registry.register("parity", model_dir, alias="champion")
    serve.run(build_app({"models": [{"name": "parity", "ref": "parity@champion", "num_replicas": 1}], **where,
                         "model_num_cpus": 0.25, "ingress_num_cpus": 0.1}), name="parity", route_prefix="/parity")
    yield {"url": serve_instance + "/parity", "client": client}
    serve.delete("parity")
    client.close()


def test_tricky_rows_mean_the_same_on_every_path(served: dict, model_dir: Path, tmp_path: Path) -> None:
    assert len(ROWS) >= 40
    rows = [_row(changes) for _, changes, _ in ROWS]
    predictor = Predictor.from_dir(model_dir)
    groups = _write_groups(rows, tmp_path / "in")
    paths = {
        "predictor": _predictor_path(predictor, rows),
        "training": _training_path(predictor, groups, len(rows)),
        "batch": _batch_path(served["client"], groups, len(rows), tmp_path),
        "http": _http_path(served["url"], rows),
    }
    for i, (name, _, expected) in enumerate(ROWS):
        outcomes = {path: results[i] for path, results in paths.items()}
        assert outcomes["predictor"][0] == ("refused" if expected else "accepted"), (name, outcomes["predictor"])
        if expected:
            assert outcomes["predictor"][1] == expected, (name, outcomes["predictor"])
        assert len(set(outcomes.values())) == 1, (name, outcomes)
