"""Stacking members given as registered versions: resolved to the family and parameters they were trained with,
so the ensemble refits them per fold on this run's data (a fitted version's predictions on its own training rows
would leak into the meta-model). The version stays named in the member spec and in the new version's lineage."""

from __future__ import annotations

from typing import Any

from mlplatform.artifacts.model_format import ModelManifest
from mlplatform.client import Registry
from mlplatform.errors import InvalidInput
from mlplatform.models.stacking import is_version_ref


def resolve_members(members: list[Any], registry: Registry) -> list[dict[str, Any]]:
    resolved: list[dict[str, Any]] = []
    for index, member in enumerate(members):
        if not is_version_ref(member):
            resolved.append({"family": member, "params": {}, "version": None} if isinstance(member, str)
                            else {"params": {}, "version": None, **member})
            continue
        version = registry.resolve(member)
        if version.framework != "sklearn":
            raise InvalidInput(f"stacking member {member} is a {version.framework} model; only sklearn families "
                               "can be refitted per fold", field=f"model.params.members.{index}")
        manifest = ModelManifest.read(registry.fetch(version))  # verified copy: the params really trained with
        if manifest.family == "stacking":
            raise InvalidInput(f"stacking member {member} is itself a stack; nesting is not supported",
                               field=f"model.params.members.{index}")
        resolved.append({"family": manifest.family, "params": dict(manifest.model_params or {}),
                         "version": version.ref})
    return resolved
