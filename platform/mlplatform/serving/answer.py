"""What a model (or ensemble) deployment answers the ingress: the serving contract between replicas.

:class:`ModelAnswer` crosses a DeploymentHandle (Ray pickles it between replicas; a plain frozen dataclass of
plain data pickles by reference to this module) or, with ``colocate_models``, is handed over in process. The
ingress renders it into V1 (:meth:`ModelAnswer.v1_fields`) or V2 (:func:`mlplatform.serving.v2.infer_response`),
logs one prediction row per result and mirrors the request to ``mirror_versions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict


class RowResult(TypedDict):
    """One row's result, as plain data (it is cached, pickled and rendered as JSON as it is)."""

    prediction: Any  # the label (its type kept: int, str, bool) or a regressor's number
    probabilities: list[float] | None  # class probabilities in the model's class order; None for a regressor
    confidence: float | None  # the largest probability (a vote's share for an ensemble); None for a regressor


@dataclass(frozen=True, slots=True)
class ModelAnswer:
    """One predict call's answer: whose numbers, for which rows, and how they were reached."""

    model_name: str
    """The served model (or ensemble) name."""
    model_version: int | None
    """The registry version that was asked to answer; None for an ensemble, which has no version of its own."""
    results: list[RowResult]
    """One result per requested row, in request order."""
    cached: list[bool]
    """Per row: True when the result came from the prediction cache (an ensemble row: from every member's)."""
    variant: str
    """How the version was picked: champion, challenger, shadow, pinned or ensemble."""
    fallback_version: int | None = None
    """The fallback version whose numbers these are when ``model_version`` failed (breaker open, model error)."""
    fallback_model: str | None = None
    """The fallback's model name, set together with ``fallback_version``."""
    mirror_versions: tuple[int, ...] = ()
    """Versions the ingress copies the request to (shadows); only on a routed primary answer."""
    ensemble: str | None = None
    """An ensemble's combine rule (mean, weighted, vote); None for a single model."""
    members: list[dict[str, Any]] | None = None
    """An ensemble's members: ref, model name, version, status (and the failure kind of a failed one)."""
    degraded: bool = False
    """An ensemble that answered without some failed members (``on_member_failure: degrade``)."""

    @property
    def fallback(self) -> bool:
        return self.fallback_version is not None

    @property
    def answered_version(self) -> int | None:
        """The version whose numbers these are: the fallback's when it answered."""
        return self.fallback_version if self.fallback else self.model_version

    @property
    def logged_variant(self) -> str:
        """The variant as the prediction log records it: a fallback answer is the fallback's, a degraded one says so."""
        variant = "fallback" if self.fallback else self.variant
        return f"{variant}-degraded" if self.degraded else variant

    def v1_fields(self, entity_ids: list[str | int] | None = None) -> dict[str, Any]:
        """The answer's fields of the V1 body, in the V1 body's established order; optional fields only when they
        apply (an ensemble's, a fallback's, the entity ids of an online-features request)."""
        fields: dict[str, Any] = {"model_name": self.model_name, "model_version": self.model_version}
        if self.ensemble is not None:
            fields |= {"ensemble": self.ensemble, "members": self.members, "degraded": self.degraded}
        fields["cached"] = self.cached
        if self.fallback:
            fields |= {"fallback": True, "fallback_version": self.fallback_version,
                       "fallback_model": self.fallback_model}
        fields["variant"] = self.variant
        if entity_ids is not None:
            fields["entity_ids"] = entity_ids
        return fields
