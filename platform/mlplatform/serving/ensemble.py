"""Ensemble deployment (SPEC S6, issue 8 item 4): members are their own deployments (each scales on its own),
called concurrently through DeploymentHandles; their answers are combined per row.

``combine``: ``mean`` (mean of class probabilities), ``weighted`` (weighted mean), ``vote`` (majority of labels,
ties broken by the higher mean probability, then by member order). Regressors average (or vote on) predictions.
A member that fails or passes ``member_timeout_s`` is handled by ``on_member_failure``: ``fail`` answers 503
naming the member; ``degrade`` answers from the others (at least ``min_members``) with ``degraded: true``.
Invalid input is never a member failure: every member would reject it, so the 422 goes back as it is.
The answer names every member's ref, version and status.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any, cast

import numpy as np

from mlplatform.config.serve import EnsembleEntry, ServeConfig
from mlplatform.errors import ConfigError, InvalidInput, Timeout, Unavailable
from mlplatform.serving.answer import ModelAnswer, RowResult
from mlplatform.serving.http_api import unwrap

ENSEMBLE_VARIANT = "ensemble"
logger = logging.getLogger(__name__)


class EnsembleServer:
    """Serve deployment body; ``members`` are DeploymentHandles in the order of ``entry.members``."""

    def __init__(self, name: str, members: list[Any], config: dict[str, Any]) -> None:
        self.cfg = ServeConfig.parse(config)
        self.entry: EnsembleEntry = next(e for e in self.cfg.ensembles if e.name == name)
        self.name = name
        self._members = members
        self._meta: dict[tuple[int, int | None], dict[str, Any]] = {}  # (member index, version) -> classes, threshold

    async def _member_call(self, index: int, instances: list[dict[str, Any]],
                           routing_key: str | None) -> ModelAnswer:
        response = self._members[index].predict.remote(instances, routing_key=routing_key)
        try:
            answer: ModelAnswer = await asyncio.wait_for(_await(response), self.entry.member_timeout_s)
        except TimeoutError:
            response.cancel()
            raise Timeout(f"member {self.entry.members[index]} did not answer within "
                          f"{self.entry.member_timeout_s:g} s") from None
        except Exception as exc:
            raise unwrap(exc) from None
        key = (index, answer.model_version)
        if key not in self._meta:
            meta = await asyncio.wait_for(_await(self._members[index].metadata.remote()),
                                          self.entry.member_timeout_s)
            self._meta[key] = {"classes": meta.get("classes"), "threshold": meta.get("threshold")}
        return answer

    async def predict(self, instances: list[dict[str, Any]], routing_key: str | None = None) -> ModelAnswer:
        outcomes = await asyncio.gather(*[self._member_call(i, instances, routing_key)
                                          for i in range(len(self._members))], return_exceptions=True)
        for outcome in outcomes:  # the client's mistake, whatever the policy
            if isinstance(outcome, InvalidInput):
                raise outcome
        members: list[dict[str, Any]] = []
        ok: list[int] = []
        for i, (ref, outcome) in enumerate(zip(self.entry.members, outcomes, strict=True)):
            if isinstance(outcome, BaseException):
                # the client learns which member failed and how, never the member's own error text (it can hold
                # paths, hosts or data); the full text is in this replica's log
                logger.warning("ensemble %s: member %s failed: %s: %s", self.name, ref, type(outcome).__name__,
                               outcome)
                members.append({"ref": ref, "model_name": None, "model_version": None, "status": "failed",
                                "error": _failure_kind(outcome)})
            else:
                members.append({"ref": ref, "model_name": outcome.model_name,
                                "model_version": outcome.model_version, "status": "ok"})
                ok.append(i)
        failed = [m for m in members if m["status"] == "failed"]
        if failed and (self.entry.on_member_failure == "fail" or len(ok) < self.entry.min_members):
            first = failed[0]
            error = Unavailable(f"ensemble {self.name}: member {first['ref']} failed ({first['error']}); "
                                f"{len(ok)} of {len(members)} members answered", retry_after_s=1,
                                field=f"members[{members.index(first)}]")
            raise error
        answers = [cast(ModelAnswer, outcomes[i]) for i in ok]  # ok: the indices whose outcome is an answer
        weights = ([self.entry.weights[i] for i in ok] if self.entry.weights else [1.0] * len(ok))
        metas = [self._meta[(i, answer.model_version)] for i, answer in zip(ok, answers, strict=True)]
        results = [self._combine([a.results[r] for a in answers], weights, metas)
                   for r in range(len(instances))]
        return ModelAnswer(model_name=self.name, model_version=None, results=results,
                           cached=[all(a.cached[r] for a in answers) for r in range(len(instances))],
                           variant=ENSEMBLE_VARIANT, ensemble=self.entry.combine, members=members,
                           degraded=bool(failed))

    def _combine(self, rows: list[RowResult], weights: list[float], metas: list[dict[str, Any]]) -> RowResult:
        if all(r["probabilities"] is not None for r in rows):
            return combine_classifier(rows, weights, metas, self.entry.combine)
        if any(r["probabilities"] is not None for r in rows):
            raise ConfigError(f"ensemble {self.name} mixes classifiers and regressors", field="members")
        return combine_regressor([r["prediction"] for r in rows], weights, self.entry.combine)

    async def metadata(self) -> dict[str, Any]:
        metas = await asyncio.gather(*[_await(h.metadata.remote()) for h in self._members], return_exceptions=True)
        members = [{"ref": ref, "ready": isinstance(m, dict) and bool(m.get("ready")),
                    "version": m.get("version") if isinstance(m, dict) else None}
                   for ref, m in zip(self.entry.members, metas, strict=True)]
        ready_count = sum(bool(m["ready"]) for m in members)
        needed = len(members) if self.entry.on_member_failure == "fail" else self.entry.min_members
        first = next((m for m in metas if isinstance(m, dict) and m.get("ready")), {})
        return {"name": self.name, "kind": "ensemble", "ready": ready_count >= needed, "version": None,
                "combine": self.entry.combine, "on_member_failure": self.entry.on_member_failure,
                "members": members, "input_schema": first.get("input_schema"), "task": first.get("task"),
                "classes": first.get("classes"), "requested_ref": None, "last_error": None}

    def check_health(self) -> None:
        pass  # members have their own health checks; readiness is reported by metadata()


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, Timeout):
        return "timeout"
    if isinstance(exc, Unavailable):
        return "unavailable"
    return "error"


def combine_classifier(rows: list[RowResult], weights: list[float], metas: list[dict[str, Any]],
                       how: str) -> RowResult:
    classes = metas[0]["classes"]
    if any(m["classes"] != classes for m in metas):
        raise ConfigError("ensemble members disagree on the classes", field="members")
    w = np.asarray(weights, dtype="float64")
    mean = (np.asarray([r["probabilities"] for r in rows], dtype="float64") * w[:, None]).sum(0) / w.sum()
    probabilities = [float(p) for p in mean]
    if how == "vote":
        counts = Counter(_hashable(r["prediction"]) for r in rows)
        top = max(counts.values())
        tied = [label for label, n in counts.items() if n == top]
        order = {_hashable(c): i for i, c in enumerate(classes or [])}
        winner = max(tied, key=lambda label: (probabilities[order[label]] if label in order else -1.0,
                                              -[_hashable(r["prediction"]) for r in rows].index(label)))
        label = next(r["prediction"] for r in rows if _hashable(r["prediction"]) == winner)
        return {"prediction": label, "probabilities": probabilities, "confidence": top / len(rows)}
    thresholds = {m["threshold"] for m in metas}
    threshold = thresholds.pop() if len(thresholds) == 1 else None
    # the members' own decision rule when they share it (binary threshold), else the most probable class
    index = (int(mean[1] >= threshold) if threshold is not None and len(probabilities) == 2
             else int(np.argmax(mean)))
    return {"prediction": classes[index], "probabilities": probabilities, "confidence": max(probabilities)}


def combine_regressor(predictions: list[Any], weights: list[float], how: str) -> RowResult:
    if how == "vote":
        counts = Counter(_hashable(p) for p in predictions)
        top = max(counts.values())
        winner = next(p for p in predictions if counts[_hashable(p)] == top)
        return {"prediction": winner, "probabilities": None, "confidence": top / len(predictions)}
    w = np.asarray(weights, dtype="float64")
    value = float((np.asarray(predictions, dtype="float64") * w).sum() / w.sum())
    return {"prediction": value, "probabilities": None, "confidence": None}


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


async def _await(response: Any) -> Any:
    return await response
