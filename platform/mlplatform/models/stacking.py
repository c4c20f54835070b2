"""Stacking ensemble (issue 4, deliverable 8) as one sklearn estimator, so the artifact is an ordinary
``framework: sklearn`` model that the Predictor, batch scoring and serving load unchanged (skops, trusted sklearn
types only).

Why sklearn's ``StackingClassifier``/``StackingRegressor``: their ``fit`` builds the meta-model's inputs with
``cross_val_predict`` over ``cv`` folds, refitting a clone of every member on each fold's training part, so the
meta-model never sees a member's prediction for a row that member was trained on. The members are refitted on the
whole training split afterwards for prediction.

Parameters (``model.params`` of family ``stacking``):
- ``members``: family names (``"hist_gbdt"``), ``{"family": ..., "params": {...}}``, or registered versions
  (``"churn:3"``, ``"churn@champion"``) that training resolves to their family and parameters (see
  :func:`mlplatform.training.stacking.resolve_members`) and names in the version's lineage;
- ``cv`` (5): folds for the out-of-fold predictions; ``final_C`` (1.0): the logistic meta-model's C (Ridge alpha
  = 1 / C for regression).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, cast

from mlplatform.entities.names import parse_model_ref
from mlplatform.errors import InvalidInput

DEFAULT_CV = 5
_KEYS = {"members", "cv", "final_C"}


def is_version_ref(member: Any) -> bool:
    return isinstance(member, str) and (":" in member or "@" in member)


def member_spec(member: Any, index: int, families: Collection[str]) -> dict[str, Any]:
    """``{"family", "params", "version"}`` of one resolved member, one of ``families``; unresolved version refs are
    refused."""
    if is_version_ref(member):
        raise InvalidInput(f"stacking member {member!r} is a registered version: resolve it with "
                           "mlplatform.training.stacking.resolve_members first", field=f"params.members.{index}")
    spec = {"family": member, "params": {}} if isinstance(member, str) else dict(member)
    family = spec.get("family")
    if not isinstance(member, str | dict) or not isinstance(family, str):
        raise InvalidInput(f"stacking member {index} must be a family name, a version ref or "
                           "{family, params}", field=f"params.members.{index}")
    if family not in families:
        available = ", ".join(sorted(families))
        raise InvalidInput(f"stacking member {index}: unknown sklearn family {family!r}; available: {available}",
                           field=f"params.members.{index}")
    if not isinstance(spec.get("params", {}), dict):
        raise InvalidInput(f"stacking member {index}: params must be a mapping", field=f"params.members.{index}")
    params = cast(dict[str, Any], spec.get("params") or {})
    return {"family": family, "params": dict(params), "version": spec.get("version")}


def _check_keys(params: dict[str, Any]) -> None:
    unknown = set(params) - _KEYS
    if unknown:
        raise InvalidInput(f"unknown stacking parameter(s) {', '.join(sorted(unknown))}; known: "
                           f"{', '.join(sorted(_KEYS))}", field=f"params.{sorted(unknown)[0]}")
    members = params.get("members")
    if not isinstance(members, list) or len(members) < 2:
        raise InvalidInput("a stacking ensemble needs a list of at least 2 members", field="params.members")
    cv = params.get("cv", DEFAULT_CV)
    if not isinstance(cv, int) or isinstance(cv, bool) or cv < 2:
        raise InvalidInput(f"stacking cv must be an integer >= 2, got {cv!r}", field="params.cv")
    final_c = params.get("final_C", 1.0)
    if isinstance(final_c, bool) or not isinstance(final_c, int | float) or final_c <= 0:
        raise InvalidInput(f"stacking final_C must be > 0, got {final_c!r}", field="params.final_C")


def validate_stacking(task: str, params: dict[str, Any], families: Collection[str],
                      resolve_params: Callable[[str, str, dict[str, Any]], Any]) -> None:
    """Config-time check (no registry at hand): version refs are checked for syntax only, families fully, by the
    model factory's ``resolve_params`` (passed in: the factory registers stacking, so it sits above this module)."""
    _check_keys(params)
    for index, member in enumerate(params["members"]):
        if is_version_ref(member):
            parse_model_ref(member)
            continue
        spec = member_spec(member, index, families)
        try:
            resolve_params(spec["family"], task, spec["params"])
        except InvalidInput as exc:
            raise InvalidInput(f"stacking member {index} ({spec['family']}): {exc.message}",
                               field=f"params.members.{index}") from None


def build_stacking(task: str, params: dict[str, Any], seed: int, families: Collection[str],
                   build_member: Callable[[str, str, dict[str, Any], int], Any]) -> Any:
    """The unfitted ensemble; ``build_member(family, task, params, seed)`` is the sklearn family table's builder,
    passed in because that table holds stacking too."""
    # heavy: scikit-learn loads only when an estimator is built or scored
    from sklearn.ensemble import StackingClassifier, StackingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import KFold, StratifiedKFold

    _check_keys(params)
    specs = [member_spec(m, i, families) for i, m in enumerate(params["members"])]
    estimators = [(f"m{i}_{s['family']}", build_member(s["family"], task, s["params"], seed))
                  for i, s in enumerate(specs)]
    n_splits, final_c = int(params.get("cv", DEFAULT_CV)), float(params.get("final_C", 1.0))
    if task == "regression":
        return StackingRegressor(estimators, final_estimator=Ridge(alpha=1.0 / final_c),
                                 cv=KFold(n_splits, shuffle=True, random_state=seed), n_jobs=1)
    return StackingClassifier(estimators, final_estimator=LogisticRegression(C=final_c, max_iter=1000,
                                                                             random_state=seed),
                              cv=StratifiedKFold(n_splits, shuffle=True, random_state=seed),
                              stack_method="auto", n_jobs=1)
