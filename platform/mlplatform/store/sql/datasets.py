"""Dataset versions: name + content hash, with schema, row count and profile (SPEC S4)."""

from __future__ import annotations

import builtins
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mlplatform.entities import DatasetVersion
from mlplatform.errors import NotFound
from mlplatform.store.sql.models import DatasetRow, utcnow
from mlplatform.store.sql.session import SessionScope, insert_if_absent


def _dataset(row: DatasetRow) -> DatasetVersion:
    return DatasetVersion(id=row.id, name=row.name, version=row.version, uri=row.uri, schema=row.schema,
                          row_count=row.row_count, profile=row.profile, created_at=row.created_at)


class SqlDatasetStore:
    def __init__(self, scope: SessionScope) -> None:
        self._scope = scope

    def register(self, name: str, version: str, *, uri: str | None, schema: dict[str, Any], row_count: int,
                 profile: dict[str, Any] | None = None) -> DatasetVersion:
        """Idempotent: the same name and content hash return the existing record."""

        def work(session: Session) -> DatasetVersion:
            query = sa.select(DatasetRow).where(DatasetRow.name == name, DatasetRow.version == version)
            row = session.scalar(query)
            if row is None:
                insert_if_absent(session, DatasetRow, {
                    "id": str(uuid.uuid4()), "name": name, "version": version, "uri": uri, "schema": schema,
                    "row_count": row_count, "profile": profile or {}, "created_at": utcnow(),
                }, ["name", "version"])
                row = session.scalars(query).one()
            return _dataset(row)

        return self._scope.run(work, what="register dataset")

    def get(self, name: str, version: str | None = None) -> DatasetVersion:
        """A version by name and hash (a unique prefix of 8+ characters works), or the newest of a name."""
        with self._scope.session() as session:
            query = sa.select(DatasetRow).where(DatasetRow.name == name)
            if version is not None:
                query = query.where(DatasetRow.version.startswith(version))
            rows = list(session.scalars(query.order_by(DatasetRow.created_at.desc()).limit(2)))
            if not rows or (version is not None and len(rows) > 1 and len(version) < 64):
                what = f"{name}@{version}" if version else name
                raise NotFound(f"dataset {what} does not exist" if not rows else f"dataset version {what} is "
                               "ambiguous; give more characters of the hash", field="dataset")
            return _dataset(rows[0])

    def list(self, name: str | None = None, limit: int = 100) -> list[DatasetVersion]:
        with self._scope.session() as session:
            query = sa.select(DatasetRow).order_by(DatasetRow.created_at.desc()).limit(limit)
            if name is not None:
                query = query.where(DatasetRow.name == name)
            return [_dataset(r) for r in session.scalars(query)]

    def for_run(self, run_id: str) -> builtins.list[tuple[str, DatasetVersion]]:
        # heavy: the SQL stack loads only where the store is opened, not in every Ray worker
        from mlplatform.store.sql.models import RunDatasetRow

        with self._scope.session() as session:
            rows = session.execute(
                sa.select(RunDatasetRow.role, DatasetRow)
                .join(DatasetRow, DatasetRow.id == RunDatasetRow.dataset_id)
                .where(RunDatasetRow.run_id == run_id)
            )
            return [(role, _dataset(ds)) for role, ds in rows]
