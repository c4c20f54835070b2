"""Warm start from a registered version (SPEC S2.4).

The parent's weights only mean something with the preprocessing they were trained with, so a warm start reuses
the parent's fitted transform (shipped in its artifact) and refuses, before any Ray job, data whose input schema
does not match it. The source artifact is read from a verified private copy and never written to.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlplatform.artifacts.model_format import ModelManifest
from mlplatform.client import Registry
from mlplatform.entities import ModelVersion
from mlplatform.errors import InvalidInput
from mlplatform.features.rows import infer_schema
from mlplatform.features.transform import TabularTransform
from mlplatform.models.factory import default_factory


@dataclass(frozen=True)
class WarmStart:
    ref: str  # name:version, recorded as the parent in lineage
    version: ModelVersion
    manifest: ModelManifest
    transform: TabularTransform
    state_dict: dict[str, Any]


def load_warm_start(registry: Registry, ref: str, *, family: str, task: str, features: list[str],
                    train: pd.DataFrame) -> WarmStart:
    # heavy: torch takes seconds to import; only the torch path pays for it
    import torch

    if not default_factory().get(family).warm_start:
        raise InvalidInput(f"family {family!r} cannot warm start (only torch families can)", field="warm_start")
    version = registry.resolve(ref)
    local = registry.fetch(version)
    try:
        manifest = ModelManifest.read(local)
        if manifest.framework != "torch" or manifest.family != family:
            raise InvalidInput(f"warm start source {version.ref} is a {manifest.framework} {manifest.family!r} "
                               f"model; it cannot initialise a {family!r} model", field="warm_start")
        if manifest.task != task:
            raise InvalidInput(f"warm start source {version.ref} is a {manifest.task} model, this run is {task}",
                               field="warm_start")
        transform = TabularTransform.load(local)
        state = torch.load(local / manifest.model_file, map_location="cpu", weights_only=True)
    finally:
        shutil.rmtree(local, ignore_errors=True)
    check_schema(version.ref, manifest, features, train)
    return WarmStart(ref=version.ref, version=version, manifest=manifest, transform=transform, state_dict=state)


def check_schema(source: str, manifest: ModelManifest, features: list[str], train: pd.DataFrame) -> None:
    """The run's features must be the parent's, in its order, with the same logical dtypes."""
    expected = [(f["name"], f["dtype"]) for f in manifest.input_schema]
    found = [(s.name, s.dtype) for s in infer_schema(train, features)]
    if expected == found:
        return
    names_e, names_f = [n for n, _ in expected], [n for n, _ in found]
    problems = []
    missing = [n for n in names_e if n not in names_f]
    extra = [n for n in names_f if n not in names_e]
    if missing:
        problems.append(f"missing feature(s) {', '.join(missing)}")
    if extra:
        problems.append(f"new feature(s) {', '.join(extra)}")
    changed = [f"{n} ({a} -> {b})" for n, a in expected for m, b in found if n == m and a != b]
    if changed:
        problems.append(f"changed dtype(s) {', '.join(changed)}")
    if not problems:
        problems.append(f"feature order differs (expected {', '.join(names_e)})")
    raise InvalidInput(f"warm start from {source} refused: the input schema is incompatible: "
                       f"{'; '.join(problems)}", field="warm_start")


def check_state_dict(source: str, model: Any, state: dict[str, Any]) -> None:
    """Strict key and shape check, reporting every missing, unexpected and mismatched key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(f"{k} {tuple(state[k].shape)} -> {tuple(own[k].shape)}" for k in set(own) & set(state)
                        if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or mismatched:
        parts = [f"{label}: {', '.join(keys[:5])}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)) if keys]
        raise InvalidInput(f"warm start from {source} refused: the weights do not fit the configured model "
                           f"({'; '.join(parts)})", field="warm_start")
