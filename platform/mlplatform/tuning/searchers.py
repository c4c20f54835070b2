"""A ``Searcher`` wrapper that hands out fixed configs (the baseline trial) before its inner searcher.

Optuna cannot be told to evaluate a value outside a parameter's distribution (``enqueue_trial`` with a pattern
that is not one of the choices raises), and putting the baseline among the choices would make TPE sample it again
and again during start-up. So the baseline goes around Optuna: this wrapper suggests it first and keeps its
result away from the inner searcher. Its own state is saved with the experiment (like Tune's
ConcurrencyLimiter), so ``Tuner.restore`` neither repeats nor forgets the baseline.
"""

from __future__ import annotations

import copy
from typing import Any

from ray.tune.search import Searcher


class FixedFirst(Searcher):
    def __init__(self, searcher: Searcher, fixed: list[dict[str, Any]]) -> None:
        self.searcher = searcher
        self._fixed = [copy.deepcopy(c) for c in fixed]
        self._own: set[str] = set()
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    # Ray's Searcher says str; it is None until set_search_properties
    @property
    def metric(self) -> str | None:  # type: ignore[override]
        return self.searcher.metric

    @property
    def mode(self) -> str | None:  # type: ignore[override]
        return self.searcher.mode

    def suggest(self, trial_id: str) -> dict | None:
        if self._fixed:
            self._own.add(trial_id)
            return self._fixed.pop(0)
        return self.searcher.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self._own:
            self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self._own:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)

    # Tune saves wrappers (objects with a ``searcher`` attribute) through get_state/set_state and the innermost
    # searcher through its own save/restore (see ray.tune.search.SearchGenerator.save_to_dir).
    def get_state(self) -> dict[str, Any]:
        return {"fixed": copy.deepcopy(self._fixed), "own": sorted(self._own)}

    def set_state(self, state: dict[str, Any]) -> None:
        self._fixed, self._own = list(state["fixed"]), set(state["own"])

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)
