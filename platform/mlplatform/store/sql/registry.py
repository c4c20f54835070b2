"""Registered models, immutable versions, aliases with history, evaluations (SPEC S1.6, S1.7, S1.10)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mlplatform.entities import AliasChange, Evaluation, ModelVersion, RegisteredModel, VersionStatus
from mlplatform.entities.names import validate_alias, validate_model_name
from mlplatform.errors import Conflict, InvalidInput, NotFound
from mlplatform.store.sql.models import (
    AliasHistoryRow,
    AliasRow,
    AuditRow,
    EvaluationRow,
    ModelRow,
    ModelVersionRow,
    utcnow,
)
from mlplatform.store.sql.session import SessionScope

ROLE_ALIASES = ("champion", "challenger", "shadow")
STANDBY = "standby"  # served as champion before and restorable; the SPEC names no state for it


class SqlRegistryStore:
    def __init__(self, scope: SessionScope) -> None:
        self._scope = scope

    # -- reads -------------------------------------------------------------------------------------------------
    def list_models(self) -> list[RegisteredModel]:
        with self._scope.session() as session:
            models = list(session.scalars(sa.select(ModelRow).order_by(ModelRow.name)))
            return [self._model_entity(session, m) for m in models]

    def get_model(self, name: str) -> RegisteredModel:
        with self._scope.session() as session:
            return self._model_entity(session, self._model(session, name))

    def list_versions(self, name: str) -> list[ModelVersion]:
        with self._scope.session() as session:
            model = self._model(session, name)
            rows = session.scalars(
                sa.select(ModelVersionRow).where(ModelVersionRow.model_id == model.id)
                .order_by(ModelVersionRow.version)
            )
            return [self._version_entity(session, model, r) for r in rows]

    def get_version(self, name: str, version: int | None = None, alias: str | None = None) -> ModelVersion:
        """By number, by alias, or (neither) the champion."""
        with self._scope.session() as session:
            model = self._model(session, name)
            row = self._version_row(session, model, version, alias)
            return self._version_entity(session, model, row)

    def in_service(self, since: datetime) -> set[tuple[str, int]]:
        """Versions being served: in an active rollout, or that answered a logged prediction since ``since``."""
        # heavy: the SQL stack loads only where the store is opened, not in every Ray worker
        from mlplatform.store.sql.models import PredictionLogRow, RolloutRow

        with self._scope.session() as session:
            served = {(n, int(v)) for n, v in session.execute(
                sa.select(PredictionLogRow.model_name, PredictionLogRow.version)
                .where(PredictionLogRow.timestamp >= since).distinct())}
            for row in session.scalars(sa.select(RolloutRow).where(RolloutRow.status == "active")):
                served |= {(row.model_name, v) for v in (row.champion_version, row.challenger_version)
                           if v is not None}
            return served

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasChange]:
        with self._scope.session() as session:
            model = self._model(session, name)
            query = sa.select(AliasHistoryRow).where(AliasHistoryRow.model_id == model.id)
            if alias is not None:
                query = query.where(AliasHistoryRow.alias == alias)
            return [
                AliasChange(model_name=name, alias=r.alias, from_version=r.from_version, to_version=r.to_version,
                            actor=r.actor, reason=r.reason, created_at=r.created_at)
                for r in session.scalars(query.order_by(AliasHistoryRow.id))
            ]

    # -- writes ------------------------------------------------------------------------------------------------
    def create_version(
        self, name: str, *, framework: str, task: str | None, artifact_uri: str, artifact_sha256: str,
        files: dict[str, dict[str, Any]], input_schema: list[dict[str, Any]], metrics: dict[str, float],
        lineage: dict[str, Any], source_run_id: str | None = None, parent: tuple[str, int] | None = None,
        actor: str = "unknown",
    ) -> ModelVersion:
        validate_model_name(name)

        def work(session: Session) -> ModelVersion:
            model = session.scalar(sa.select(ModelRow).where(ModelRow.name == name))
            if model is None:
                model = ModelRow(id=str(uuid.uuid4()), name=name, task=task, description=None, created_at=utcnow())
                session.add(model)
                session.flush()
            parent_id = None
            if parent is not None:
                parent_model = self._model(session, parent[0])
                parent_id = self._version_row(session, parent_model, parent[1], None).id
            latest = session.scalar(
                sa.select(sa.func.max(ModelVersionRow.version)).where(ModelVersionRow.model_id == model.id)
            )
            row = ModelVersionRow(
                id=str(uuid.uuid4()), model_id=model.id, version=(latest or 0) + 1,
                status=VersionStatus.REGISTERED.value, framework=framework, artifact_uri=artifact_uri,
                artifact_sha256=artifact_sha256, files=files, input_schema=input_schema, metrics=metrics,
                lineage=lineage, source_run_id=source_run_id, parent_version_id=parent_id, created_at=utcnow(),
            )
            session.add(row)
            session.flush()  # a concurrent registration of the same number fails here and is retried
            self._audit(session, actor, "register", f"{name}:{row.version}", None)
            return self._version_entity(session, model, row)

        for _ in range(5):
            try:
                return self._scope.run(work, what="register version")
            except Conflict:  # another process took the same version number first; take the next one
                continue
        raise Conflict(f"could not allocate a version number for {name}; too many concurrent registrations")

    def set_alias(self, name: str, alias: str, version: int, *, actor: str = "unknown",
                  reason: str | None = None) -> ModelVersion:
        validate_alias(alias)

        def work(session: Session) -> ModelVersion:
            model = self._model(session, name)
            row = self._version_row(session, model, version, None)
            if row.status == VersionStatus.ARCHIVED.value:
                raise Conflict(f"{name}:{version} is archived; register it again to serve it", field="version")
            self._move_alias(session, model, alias, row, actor, reason)
            return self._version_entity(session, model, row)

        return self._scope.run(work, what="set alias")

    def delete_alias(self, name: str, alias: str, *, actor: str = "unknown", reason: str | None = None) -> None:
        def work(session: Session) -> None:
            model = self._model(session, name)
            current = session.get(AliasRow, (model.id, alias))
            if current is None:
                raise NotFound(f"model {name} has no alias {alias!r}", field="alias")
            holder = session.get(ModelVersionRow, current.version_id)
            session.delete(current)
            session.add(AliasHistoryRow(model_id=model.id, alias=alias, from_version=holder.version if holder else
                                        None, to_version=None, actor=actor, reason=reason, created_at=utcnow()))
            session.flush()
            if holder is not None:
                self._refresh_status(session, model, holder)
            self._audit(session, actor, "alias_delete", f"{name}@{alias}", reason)

        self._scope.run(work, what="delete alias")

    def promote(self, name: str, *, actor: str = "unknown", reason: str | None = None) -> ModelVersion:
        """Challenger becomes champion; the old champion stays restorable (status ``standby``)."""

        def work(session: Session) -> ModelVersion:
            model = self._model(session, name)
            challenger = session.get(AliasRow, (model.id, "challenger"))
            if challenger is None:
                raise NotFound(f"model {name} has no challenger to promote", field="alias")
            row = session.get(ModelVersionRow, challenger.version_id)
            assert row is not None
            session.delete(challenger)
            session.add(AliasHistoryRow(model_id=model.id, alias="challenger", from_version=row.version,
                                        to_version=None, actor=actor, reason=reason or "promoted",
                                        created_at=utcnow()))
            session.flush()
            self._move_alias(session, model, "champion", row, actor, reason or "promoted", action="promote")
            return self._version_entity(session, model, row)

        return self._scope.run(work, what="promote")

    def rollback(self, name: str, *, actor: str = "unknown", reason: str | None = None) -> ModelVersion:
        """Champion goes back to its previous holder: never a never-served or archived version."""

        def work(session: Session) -> ModelVersion:
            model = self._model(session, name)
            current_alias = session.get(AliasRow, (model.id, "champion"))
            if current_alias is None:
                raise NotFound(f"model {name} has no champion to roll back", field="alias")
            current = session.get(ModelVersionRow, current_alias.version_id)
            assert current is not None
            history = session.scalars(
                sa.select(AliasHistoryRow).where(
                    AliasHistoryRow.model_id == model.id, AliasHistoryRow.alias == "champion",
                    AliasHistoryRow.to_version.is_not(None),
                ).order_by(AliasHistoryRow.id.desc())
            )
            target = None
            for change in history:
                if change.to_version == current.version:
                    continue
                candidate = self._version_row(session, model, change.to_version, None)
                if candidate.status not in {VersionStatus.ARCHIVED.value, VersionStatus.ROLLED_BACK.value}:
                    target = candidate
                    break
            if target is None:
                raise Conflict(f"model {name} has no earlier champion to roll back to", field="alias")
            current.status = VersionStatus.ROLLED_BACK.value
            self._move_alias(session, model, "champion", target, actor, reason or "rollback", action="rollback")
            return self._version_entity(session, model, target)

        return self._scope.run(work, what="rollback")

    def archive(self, name: str, version: int, *, actor: str = "unknown", reason: str | None = None) -> ModelVersion:
        def work(session: Session) -> ModelVersion:
            model = self._model(session, name)
            row = self._version_row(session, model, version, None)
            held = list(session.scalars(sa.select(AliasRow).where(AliasRow.version_id == row.id)))
            if any(a.alias == "champion" for a in held):
                raise Conflict(f"{name}:{version} is the champion; promote or roll back first", field="version")
            for alias_row in held:
                session.delete(alias_row)
                session.add(AliasHistoryRow(model_id=model.id, alias=alias_row.alias, from_version=row.version,
                                            to_version=None, actor=actor, reason="archived", created_at=utcnow()))
            row.status = VersionStatus.ARCHIVED.value
            self._audit(session, actor, "archive", f"{name}:{version}", reason)
            return self._version_entity(session, model, row)

        return self._scope.run(work, what="archive")

    def add_evaluation(self, name: str, version: int, metrics: dict[str, float], *, dataset_version: str | None,
                       slice: str = "all", n: int | None = None) -> None:
        def work(session: Session) -> None:
            model = self._model(session, name)
            row = self._version_row(session, model, version, None)
            now = utcnow()
            session.execute(sa.insert(EvaluationRow), [
                {"version_id": row.id, "dataset_version": dataset_version, "slice": slice, "metric": k,
                 "value": float(v), "n": n, "created_at": now}
                for k, v in metrics.items()
            ])

        self._scope.run(work, what="add evaluation")

    def evaluations(self, name: str, version: int | None = None) -> list[Evaluation]:
        with self._scope.session() as session:
            model = self._model(session, name)
            query = (sa.select(EvaluationRow, ModelVersionRow.version)
                     .join(ModelVersionRow, ModelVersionRow.id == EvaluationRow.version_id)
                     .where(ModelVersionRow.model_id == model.id).order_by(EvaluationRow.id))
            if version is not None:
                query = query.where(ModelVersionRow.version == version)
            return [Evaluation(model_name=name, version=v, dataset_version=e.dataset_version, slice=e.slice,
                               metric=e.metric, value=e.value, n=e.n, created_at=e.created_at)
                    for e, v in session.execute(query)]

    def leaderboard(self, name: str, metric: str, *, dataset_version: str | None = None, mode: str = "max",
                    slice: str = "all") -> list[dict[str, Any]]:
        """Versions ranked on one metric of one dataset version; versions lacking it are left out, never 0."""
        if mode not in {"max", "min"}:
            raise InvalidInput("mode must be 'max' or 'min'", field="mode")
        rows = [e for e in self.evaluations(name) if e.metric == metric and e.slice == slice
                and (dataset_version is None or e.dataset_version == dataset_version)]
        if dataset_version is None and len({e.dataset_version for e in rows}) > 1:
            raise InvalidInput(f"evaluations of {name} span several dataset versions; pass --dataset-version",
                               field="dataset_version")
        latest: dict[int, Evaluation] = {}
        for e in rows:
            latest[e.version] = e
        versions = {v.version: v for v in self.list_versions(name)}
        ranked = sorted(latest.values(), key=lambda e: (-e.value if mode == "max" else e.value, e.version))
        return [{"rank": i + 1, "version": e.version, "status": versions[e.version].status,
                 "aliases": versions[e.version].aliases, "metric": metric, "value": e.value,
                 "dataset_version": e.dataset_version, "n": e.n} for i, e in enumerate(ranked)]

    # -- internals ---------------------------------------------------------------------------------------------
    def _move_alias(self, session: Session, model: ModelRow, alias: str, row: ModelVersionRow, actor: str,
                    reason: str | None, action: str = "alias_set") -> None:
        current = session.get(AliasRow, (model.id, alias))
        previous = session.get(ModelVersionRow, current.version_id) if current else None
        if previous is not None and previous.id == row.id:
            return
        if current is None:
            session.add(AliasRow(model_id=model.id, alias=alias, version_id=row.id, updated_at=utcnow()))
        else:
            current.version_id = row.id
            current.updated_at = utcnow()
        session.add(AliasHistoryRow(model_id=model.id, alias=alias, from_version=previous.version if previous else
                                    None, to_version=row.version, actor=actor, reason=reason, created_at=utcnow()))
        session.flush()
        if previous is not None:
            self._refresh_status(session, model, previous)
        self._refresh_status(session, model, row)
        self._audit(session, actor, action, f"{model.name}@{alias} -> {row.version}", reason)

    def _refresh_status(self, session: Session, model: ModelRow, row: ModelVersionRow) -> None:
        held = set(session.scalars(sa.select(AliasRow.alias).where(AliasRow.version_id == row.id)))
        for role in ROLE_ALIASES:
            if role in held:
                row.status = role
                return
        if row.status in {VersionStatus.ARCHIVED.value, VersionStatus.ROLLED_BACK.value}:
            return
        was_champion = session.scalar(
            sa.select(sa.func.count()).select_from(AliasHistoryRow).where(
                AliasHistoryRow.model_id == model.id, AliasHistoryRow.alias == "champion",
                AliasHistoryRow.to_version == row.version,
            )
        )
        row.status = STANDBY if was_champion else VersionStatus.REGISTERED.value

    @staticmethod
    def _audit(session: Session, actor: str, action: str, target: str, reason: str | None) -> None:
        session.add(AuditRow(actor=actor, action=action, target=target, reason=reason, request_id=None,
                             created_at=utcnow()))

    @staticmethod
    def _model(session: Session, name: str) -> ModelRow:
        model = session.scalar(sa.select(ModelRow).where(ModelRow.name == name))
        if model is None:
            raise NotFound(f"model {name!r} is not registered", field="model")
        return model

    @staticmethod
    def _version_row(session: Session, model: ModelRow, version: int | None, alias: str | None) -> ModelVersionRow:
        if version is not None:
            row = session.scalar(sa.select(ModelVersionRow).where(
                ModelVersionRow.model_id == model.id, ModelVersionRow.version == int(version)))
            if row is None:
                raise NotFound(f"model {model.name} has no version {version}", field="version")
            return row
        alias = alias or "champion"
        alias_row = session.get(AliasRow, (model.id, alias))
        if alias_row is None:
            raise NotFound(f"model {model.name} has no alias {alias!r}", field="alias")
        found = session.get(ModelVersionRow, alias_row.version_id)
        assert found is not None
        return found

    def _model_entity(self, session: Session, model: ModelRow) -> RegisteredModel:
        aliases = {
            a: v for a, v in session.execute(
                sa.select(AliasRow.alias, ModelVersionRow.version)
                .join(ModelVersionRow, ModelVersionRow.id == AliasRow.version_id)
                .where(AliasRow.model_id == model.id)
            )
        }
        latest = session.scalar(
            sa.select(sa.func.max(ModelVersionRow.version)).where(ModelVersionRow.model_id == model.id))
        return RegisteredModel(id=model.id, name=model.name, task=model.task, description=model.description,
                               created_at=model.created_at, aliases=aliases, latest_version=latest)

    def _version_entity(self, session: Session, model: ModelRow, row: ModelVersionRow) -> ModelVersion:
        aliases = sorted(session.scalars(sa.select(AliasRow.alias).where(AliasRow.version_id == row.id)))
        parent = session.get(ModelVersionRow, row.parent_version_id) if row.parent_version_id else None
        return ModelVersion(
            id=row.id, model_name=model.name, version=row.version, status=row.status, framework=row.framework,
            artifact_uri=row.artifact_uri, artifact_sha256=row.artifact_sha256, files=row.files,
            input_schema=row.input_schema, metrics=row.metrics, lineage=row.lineage,
            source_run_id=row.source_run_id, parent_version=parent.version if parent else None,
            created_at=row.created_at, aliases=aliases,
        )
