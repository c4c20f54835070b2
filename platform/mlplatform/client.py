"""The client facade: ``Client().runs``, ``.datasets``, ``.registry``, ``.monitoring``, ``.schedules``, ``.loop``,
``.rollouts``.

Every process (CLI, Ray driver, Serve replica) builds its own ``Client`` from the same settings, so all of them
see the same store and registry. With a SQLite file, remote Ray workers must not write to it directly (it lives on
the head node's disk): they report to the driver, or to one writer actor, which writes here.
"""

from __future__ import annotations

import getpass
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from mlplatform._internal import lineage as lineage_capture
from mlplatform.artifacts.model_format import ModelManifest
from mlplatform.artifacts.storage import ArtifactStore
from mlplatform.entities import AliasChange, Evaluation, ModelVersion, RegisteredModel
from mlplatform.entities.names import parse_model_ref, validate_model_name
from mlplatform.predictor import Predictor
from mlplatform.rollouts import Rollouts
from mlplatform.settings import Settings, get_settings, with_secret_password
from mlplatform.store.interfaces import (
    DatasetStore,
    LoopStore,
    MonitoringStore,
    RegistryStore,
    RunStore,
    ScheduleStore,
)
from mlplatform.store.sql import migrate
from mlplatform.store.sql.datasets import SqlDatasetStore
from mlplatform.store.sql.loop import SqlLoopStore
from mlplatform.store.sql.monitoring import SqlMonitoringStore
from mlplatform.store.sql.registry import SqlRegistryStore
from mlplatform.store.sql.rollouts import SqlRolloutStore
from mlplatform.store.sql.runs import SqlRunStore
from mlplatform.store.sql.schedules import SqlScheduleStore
from mlplatform.store.sql.session import SessionScope, create_store_engine


def current_actor() -> str:
    try:
        return os.environ.get("MLPLATFORM_ACTOR") or getpass.getuser()
    except Exception:  # getpass fails in some containers without a passwd entry
        return "unknown"


class Registry:
    """Model registry: SQL records + verified artifacts."""

    def __init__(self, store: RegistryStore, artifacts: ArtifactStore, cache_dir: Path) -> None:
        self._store = store
        self._artifacts = artifacts
        self._cache_dir = cache_dir

    def register(self, name: str, artifact_dir: Path | str, *, source_run_id: str | None = None,
                 parent: str | None = None, alias: str | None = None, lineage: dict[str, Any] | None = None,
                 actor: str | None = None) -> ModelVersion:
        """Copy an artifact directory into the artifact store, record every file's SHA-256, create the next
        version, and optionally point an alias at it."""
        validate_model_name(name)
        artifact_dir = Path(artifact_dir)
        manifest = ModelManifest.read(artifact_dir)
        Predictor.from_dir(artifact_dir)  # refuse an artifact that cannot load before it is registered
        parent_ref = None
        if parent is not None:
            parent_version = self.resolve(parent)
            parent_ref = (parent_version.model_name, parent_version.version)
        uri, files, digest = self._artifacts.upload_directory(artifact_dir, f"models/{name}")
        full_lineage = {**manifest.lineage, **lineage_capture.capture(), **(lineage or {})}
        version = self._store.create_version(
            name, framework=manifest.framework, task=manifest.task, artifact_uri=uri, artifact_sha256=digest,
            files=files, input_schema=manifest.input_schema, metrics=manifest.metrics, lineage=full_lineage,
            source_run_id=source_run_id, parent=parent_ref, actor=actor or current_actor(),
        )
        if alias is not None:
            version = self._store.set_alias(name, alias, version.version, actor=actor or current_actor(),
                                            reason="set at registration")
        return version

    def resolve(self, ref: str) -> ModelVersion:
        name, version, alias = parse_model_ref(ref)
        return self._store.get_version(name, version=version, alias=alias)

    def fetch(self, version: ModelVersion) -> Path:
        """A verified local copy of a version's artifact (IntegrityError on any mismatch)."""
        return self._artifacts.fetch_verified(version.artifact_uri, version.files, self._cache_dir)

    def load(self, ref: str | ModelVersion) -> Predictor:
        """Load by ``name``, ``name:version`` or ``name@alias``. A SHA-256 mismatch raises IntegrityError and
        loads nothing, so whatever the caller held before stays in use."""
        version = self.resolve(ref) if isinstance(ref, str) else ref
        local = self.fetch(version)
        try:
            return Predictor.from_dir(local, name=version.model_name, version=version.version)
        finally:
            shutil.rmtree(local, ignore_errors=True)


    # Reads, alias moves and evaluations are the store's own rules; the registry adds the artifacts around them.

    def list_models(self) -> list[RegisteredModel]:
        return self._store.list_models()

    def get_model(self, name: str) -> RegisteredModel:
        return self._store.get_model(name)

    def list_versions(self, name: str) -> list[ModelVersion]:
        return self._store.list_versions(name)

    def get_version(self, name: str, version: int | None = None, alias: str | None = None) -> ModelVersion:
        """By number, by alias, or (neither) the champion."""
        return self._store.get_version(name, version=version, alias=alias)

    def in_service(self, since: datetime) -> set[tuple[str, int]]:
        """Versions being served: in an active rollout, or that answered a logged prediction since ``since``."""
        return self._store.in_service(since)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasChange]:
        return self._store.alias_history(name, alias)

    def create_version(
        self, name: str, *, framework: str, task: str | None, artifact_uri: str, artifact_sha256: str,
        files: dict[str, dict[str, Any]], input_schema: list[dict[str, Any]], metrics: dict[str, float],
        lineage: dict[str, Any], source_run_id: str | None = None, parent: tuple[str, int] | None = None,
        actor: str = "unknown",
    ) -> ModelVersion:
        """The bare record of a version whose artifact is already stored; :meth:`register` uploads and checks
        the artifact first and is what callers want."""
        return self._store.create_version(
            name, framework=framework, task=task, artifact_uri=artifact_uri, artifact_sha256=artifact_sha256,
            files=files, input_schema=input_schema, metrics=metrics, lineage=lineage, source_run_id=source_run_id,
            parent=parent, actor=actor,
        )

    def set_alias(self, name: str, alias: str, version: int, *, actor: str = "unknown",
                  reason: str | None = None) -> ModelVersion:
        return self._store.set_alias(name, alias, version, actor=actor, reason=reason)

    def delete_alias(self, name: str, alias: str, *, actor: str = "unknown", reason: str | None = None) -> None:
        self._store.delete_alias(name, alias, actor=actor, reason=reason)

    def promote(self, name: str, *, actor: str = "unknown", reason: str | None = None) -> ModelVersion:
        """Challenger becomes champion; the old champion stays restorable (status ``standby``)."""
        return self._store.promote(name, actor=actor, reason=reason)

    def rollback(self, name: str, *, actor: str = "unknown", reason: str | None = None) -> ModelVersion:
        """Champion goes back to its previous holder: never a never-served or archived version."""
        return self._store.rollback(name, actor=actor, reason=reason)

    def archive(self, name: str, version: int, *, actor: str = "unknown", reason: str | None = None) -> ModelVersion:
        return self._store.archive(name, version, actor=actor, reason=reason)

    def add_evaluation(self, name: str, version: int, metrics: dict[str, float], *, dataset_version: str | None,
                       slice: str = "all", n: int | None = None) -> None:
        self._store.add_evaluation(name, version, metrics, dataset_version=dataset_version, slice=slice, n=n)

    def evaluations(self, name: str, version: int | None = None) -> list[Evaluation]:
        return self._store.evaluations(name, version)

    def leaderboard(self, name: str, metric: str, *, dataset_version: str | None = None, mode: str = "max",
                    slice: str = "all") -> list[dict[str, Any]]:
        """Versions ranked on one metric of one dataset version; versions lacking it are left out, never 0."""
        return self._store.leaderboard(name, metric, dataset_version=dataset_version, mode=mode, slice=slice)


class Client:
    def __init__(self, settings: Settings | None = None, *, store_url: str | None = None,
                 artifact_uri: str | None = None, auto_init: bool = True) -> None:
        self.settings = settings or get_settings()

        url = with_secret_password(store_url) if store_url else self.settings.resolved_store_url()
        # heavy: the SQL stack loads only where the store is opened, not in every Ray worker
        from sqlalchemy.engine import make_url

        self.display_url = make_url(url).render_as_string(hide_password=True)
        busy_timeout_s = self.settings.store_busy_timeout_s
        self.engine = create_store_engine(url, busy_timeout_s=busy_timeout_s)
        migrate.ensure_schema(self.engine, self.display_url, auto_init=auto_init)
        self._scope = SessionScope(self.engine, self.display_url, busy_timeout_s=busy_timeout_s)
        self.artifacts = ArtifactStore(artifact_uri or self.settings.resolved_artifact_uri())
        self.runs: RunStore = SqlRunStore(self._scope)
        self.datasets: DatasetStore = SqlDatasetStore(self._scope)
        self.monitoring: MonitoringStore = SqlMonitoringStore(self._scope)
        self.schedules: ScheduleStore = SqlScheduleStore(self._scope)
        self.loop: LoopStore = SqlLoopStore(self._scope)  # the automatic loop's decisions (mlplatform.loop)
        self.rollouts = Rollouts(self, SqlRolloutStore(self._scope))
        cache = self.settings.home / "cache" if self.artifacts.is_local else Path(tempfile.gettempdir())
        self.registry = Registry(SqlRegistryStore(self._scope), self.artifacts, cache / "artifacts")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
