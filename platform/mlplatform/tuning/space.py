"""Search spaces for each algorithm, built from one typed config, and the canonical trial config.

Raw trial configs differ by algorithm:

- random / PBT: ``{"pattern": p, "<p>": {"params": .., "training": ..}, ..., "preprocessing": .., "rebalancing": r}``.
  Tune's own spaces are flat (ray issues #11216, #28646) and ``points_to_evaluate`` cannot address the inside of a
  nested ``tune.choice``, so every pattern's sub-space is sampled and only the chosen pattern's is used.
- optuna: the same shape, produced by a define-by-run function that only suggests the chosen pattern's
  parameters (a truly conditional space: TPE never sees parameters of other patterns).
- grid: ``{"trial": <canonical config>}`` from an explicit, counted enumeration.

:func:`canonical_config` turns any of them into ``{"pattern", "family", "params", "training", "preprocessing",
"rebalancing"}``, which is what trials run and what the store records.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from mlplatform.config.tune import BASELINE_PATTERN, Dimension, TuneSearchConfig, grid_product

_SCALARS = (str, int, float, bool, type(None))


def baseline_config() -> dict[str, Any]:
    return {"pattern": BASELINE_PATTERN, "family": BASELINE_PATTERN, "params": {}, "training": {},
            "preprocessing": {}, "rebalancing": "none"}


def families(config: TuneSearchConfig) -> dict[str, str]:
    return {name: config.family_of(name) for name in config.patterns}


def canonical_config(raw: dict[str, Any], pattern_families: Mapping[str, str]) -> dict[str, Any]:
    if "trial" in raw:
        return dict(raw["trial"])
    pattern = raw["pattern"]
    if pattern == BASELINE_PATTERN:
        return baseline_config()
    sub = raw.get(pattern) or {}
    return {"pattern": pattern, "family": pattern_families[pattern], "params": dict(sub.get("params") or {}),
            "training": dict(sub.get("training") or {}), "preprocessing": dict(raw.get("preprocessing") or {}),
            "rebalancing": raw.get("rebalancing", "none")}


# -- random / PBT ----------------------------------------------------------------------------------------------
def _domain(value: Any) -> Any:
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    from ray import tune

    if not isinstance(value, Dimension):
        return value
    if value.kind == "choice":
        return tune.choice(list(value.choice or []))
    low, high = value.bounds
    if value.kind == "int":
        return tune.randint(low, high + 1)  # randint excludes the upper bound; the config's is inclusive
    if value.kind == "loguniform":
        return tune.loguniform(low, high)
    return tune.uniform(low, high)


def param_space(config: TuneSearchConfig) -> dict[str, Any]:
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    from ray import tune

    if config.search.algorithm == "grid":
        return {"trial": tune.grid_search(grid_configs(config))}
    space: dict[str, Any] = {"pattern": tune.choice(list(config.patterns))}
    for name, pattern in config.patterns.items():
        space[name] = {"params": {k: _domain(v) for k, v in pattern.params.items()},
                       "training": {k: _domain(v) for k, v in pattern.training.items()}}
    space["preprocessing"] = {k: _domain(v) for k, v in config.preprocessing.items()}
    space["rebalancing"] = tune.choice(list(config.rebalancing))
    return space


def pbt_mutations(config: TuneSearchConfig) -> dict[str, Any]:
    """PBT perturbs training settings of the (single, torch) pattern; config validation checks they are
    dimensions."""
    name, pattern = next(iter(config.patterns.items()))
    return {name: {"training": {k: _domain(pattern.training[k]) for k in config.search.mutations}}}


# -- grid ------------------------------------------------------------------------------------------------------
def grid_configs(config: TuneSearchConfig, warm: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    points = config.search.grid_points
    out = [baseline_config(), *(warm or [])]
    for name, pattern in config.patterns.items():
        for params in grid_product(pattern.params, points):
            for training in grid_product(pattern.training, points):
                for pre in grid_product(config.preprocessing, points):
                    for rebalancing in config.rebalancing:
                        out.append({"pattern": name, "family": config.family_of(name), "params": params,
                                    "training": training, "preprocessing": pre, "rebalancing": rebalancing})
    return out


# -- optuna define-by-run --------------------------------------------------------------------------------------
def _suggest(trial: Any, name: str, value: Any) -> tuple[bool, Any]:
    """(suggested?, value). Non-scalar choices (e.g. layer width lists) go through Optuna as JSON strings."""
    if not isinstance(value, Dimension):
        return False, value
    if value.kind == "choice":
        choices = list(value.choice or [])
        if all(isinstance(c, _SCALARS) for c in choices):
            return True, trial.suggest_categorical(name, choices)
        picked = trial.suggest_categorical(name, [json.dumps(c) for c in choices])
        return True, json.loads(picked)
    low, high = value.bounds
    if value.kind == "int":
        return True, trial.suggest_int(name, int(low), int(high))
    return True, trial.suggest_float(name, float(low), float(high), log=value.kind == "loguniform")


class DefineByRun:
    """Suggest the pattern, then only that pattern's parameters. Returns the decoded values and constants so
    the raw config has the random-search shape. A class, not a closure: Optuna's searcher state is pickled."""

    def __init__(self, config: TuneSearchConfig) -> None:
        self.patterns = {k: (dict(v.params), dict(v.training)) for k, v in config.patterns.items()}
        self.preprocessing, self.rebalancing = dict(config.preprocessing), list(config.rebalancing)

    def __call__(self, trial: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        pattern = trial.suggest_categorical("pattern", list(self.patterns))
        params, training = self.patterns[pattern]
        for section, values in (("params", params), ("training", training)):
            for key, value in values.items():
                name = f"{pattern}/{section}/{key}"
                out[name] = _suggest(trial, name, value)[1]
        for key, value in self.preprocessing.items():
            out[f"preprocessing/{key}"] = _suggest(trial, f"preprocessing/{key}", value)[1]
        rebalancing = self.rebalancing
        out["rebalancing"] = trial.suggest_categorical("rebalancing", rebalancing) if len(rebalancing) > 1 \
            else rebalancing[0]
        return out


def define_by_run(config: TuneSearchConfig) -> Callable[[Any], dict[str, Any]]:
    return DefineByRun(config)


# -- warm-start points ------------------------------------------------------------------------------------------
def warm_points(config: TuneSearchConfig, canonical: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Earlier best configs as ``points_to_evaluate`` in this search's raw shape; configs of patterns this
    search does not have are dropped."""
    points = []
    for item in canonical:
        pattern = item.get("pattern")
        if pattern not in config.patterns:
            continue
        if config.search.algorithm == "optuna":
            point: dict[str, Any] = {"pattern": pattern}
            spec = config.patterns[pattern]
            for section, space in (("params", spec.params), ("training", spec.training)):
                for key, dim in space.items():
                    if isinstance(dim, Dimension) and key in item.get(section, {}):
                        value = item[section][key]
                        if dim.kind == "choice" and not all(isinstance(c, _SCALARS) for c in dim.choice or []):
                            value = json.dumps(value)
                        point[f"{pattern}/{section}/{key}"] = value
            for key, dim in config.preprocessing.items():
                if isinstance(dim, Dimension) and key in item.get("preprocessing", {}):
                    point[f"preprocessing/{key}"] = item["preprocessing"][key]
            if len(config.rebalancing) > 1 and item.get("rebalancing") in config.rebalancing:
                point["rebalancing"] = item["rebalancing"]
            points.append(point)
        elif config.search.algorithm == "grid":
            points.append({**item, "family": config.family_of(pattern)})
        else:
            spec = config.patterns[pattern]
            # Only paths that exist in this search's space: Tune cannot place a value anywhere else.
            points.append({
                "pattern": pattern,
                pattern: {section: {k: v for k, v in item.get(section, {}).items() if k in space}
                          for section, space in (("params", spec.params), ("training", spec.training))},
                "preprocessing": {k: v for k, v in item.get("preprocessing", {}).items()
                                  if k in config.preprocessing},
                **({"rebalancing": item["rebalancing"]} if item.get("rebalancing") in config.rebalancing else {}),
            })
    return points
