"""Storage that does not only grow: ``mlplatform gc --keep-last N`` (SPEC S1.10).

In each series the newest N stay: a model's versions, a finished training run's checkpoints, a finished tuning
trial's checkpoints. A model version is never touched while it holds an alias, is one of the last 3 champions
(they stay deployable, S1.7), sits in an active rollout, or answered a prediction within
``retention_served_window_s``. A removed version's row stays (history is immutable); it is archived and the audit
log says why. Checkpoints of a run that is still running are never touched. Everything here plans first; nothing
is deleted unless ``apply`` is called.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mlplatform.artifacts.storage import join_uri
from mlplatform.entities import RunKind, RunStatus
from mlplatform.errors import InvalidInput
from mlplatform.store.sql.models import utcnow

if TYPE_CHECKING:  # annotations only: the SQL store loads where a client is opened
    from mlplatform.client import Client

logger = logging.getLogger(__name__)
CHAMPIONS_KEPT = 3
CHECKPOINT_PREFIX = "checkpoint_"


@dataclass(frozen=True)
class GcItem:
    kind: str  # model_version | train_checkpoint | trial_checkpoint
    target: str  # name:version, run id, or run id/trial
    uri: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(client: Client, keep_last: int) -> list[GcItem]:
    if keep_last < 1:
        raise InvalidInput("--keep-last must be at least 1", field="keep_last")
    return [*_model_versions(client, keep_last), *_checkpoints(client, keep_last)]


def apply(client: Client, items: list[GcItem], *, actor: str) -> None:
    for item in items:
        client.artifacts.delete_dir(item.uri)
        if item.kind == "model_version":
            name, version = item.target.rsplit(":", 1)
            current = client.registry.get_version(name, int(version))
            if current.status != "archived":
                client.registry.archive(name, int(version), actor=actor, reason=f"gc: {item.reason}")
        logger.info("gc removed %s %s (%s)", item.kind, item.target, item.uri)


def _model_versions(client: Client, keep_last: int) -> list[GcItem]:
    registry = client.registry
    since = utcnow() - timedelta(seconds=client.settings.retention_served_window_s)
    served = registry.in_service(since)
    items = []
    for model in registry.list_models():
        history = [c.to_version for c in registry.alias_history(model.name, "champion") if c.to_version is not None]
        recent_champions = set(list(dict.fromkeys(reversed(history)))[:CHAMPIONS_KEPT])
        versions = sorted(registry.list_versions(model.name), key=lambda v: v.version, reverse=True)
        for version in versions[keep_last:]:
            if (version.aliases or version.version in recent_champions or (model.name, version.version) in served
                    or not client.artifacts.exists(version.artifact_uri)):
                continue
            items.append(GcItem("model_version", version.ref, version.artifact_uri,
                                f"older than the newest {keep_last} versions, no alias, not served"))
    return items


def _checkpoints(client: Client, keep_last: int) -> list[GcItem]:
    items = []
    finished = [r for r in client.runs.list_runs(limit=100_000) if r.status != RunStatus.RUNNING.value]
    for run in finished:
        storage = run.tags.get("storage_path") if isinstance(run.tags, dict) else None
        if not storage:
            continue
        if run.kind == RunKind.TRAIN.value:
            items += _old_checkpoints(client, join_uri(storage, run.id), keep_last, "train_checkpoint", run.id)
        elif run.kind == RunKind.TUNE.value and run.tags.get("tune_name"):
            experiment = join_uri(storage, run.tags["tune_name"])
            for trial in client.artifacts.list_dirs(experiment):
                items += _old_checkpoints(client, join_uri(experiment, trial), keep_last, "trial_checkpoint",
                                          f"{run.id}/{trial}")
    return items


def _old_checkpoints(client: Client, folder: str, keep_last: int, kind: str, target: str) -> list[GcItem]:
    # Ray names checkpoints checkpoint_<index or timestamp>: zero-padded, so name order is age order.
    names = [n for n in client.artifacts.list_dirs(folder) if n.startswith(CHECKPOINT_PREFIX)]
    return [GcItem(kind, target, join_uri(folder, name), f"older than the newest {keep_last} checkpoints")
            for name in sorted(names)[:-keep_last]]
