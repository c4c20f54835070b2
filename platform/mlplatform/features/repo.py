"""The feature repository: applied feature view declarations, one JSON file per view.

Declarations live under ``MLPLATFORM_HOME/feature_repo/<view>.json`` (not in the SQL store: no existing table fits a
view definition, and a definition is small, read by name only and travels with the online table under the same home).
Each file holds the view, its content version and when and from which YAML file it was applied. Writes are atomic
(temporary file + rename), so a concurrent reader sees the old or the new definition, never half of one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mlplatform.errors import IntegrityError, NotFound
from mlplatform.features.pit_join import FeatureView, feature_column, get_historical_features, load_feature_views
from mlplatform.settings import get_settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppliedView:
    view: FeatureView
    applied_at: str
    applied_from: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.view.name, "version": self.view.version, "view": self.view.model_dump(mode="json"),
                "applied_at": self.applied_at, "applied_from": self.applied_from}


def repo_dir(home: Path | None = None) -> Path:
    if home is None:
        home = get_settings().home
    return Path(home) / "feature_repo"


def _is_local_relative(source: str) -> bool:
    return "://" not in source and not Path(source).is_absolute()


def resolve_sources(views: list[FeatureView], base: Path) -> list[FeatureView]:
    """Relative local sources are relative to the YAML file's folder (as in Feast), recorded as absolute paths so
    that ``materialize`` works from any working directory."""
    out = []
    for view in views:
        if view.source and _is_local_relative(view.source):
            view = view.model_copy(update={"source": str((base / view.source).resolve())})
        out.append(view)
    return out


def apply_file(path: str | Path, home: Path | None = None) -> list[dict[str, Any]]:
    """Validate every view of ``path`` first (all or nothing), then record them. One result per view:
    ``created``, ``updated`` (its definition changed) or ``unchanged``."""
    path = Path(path)
    views = resolve_sources(load_feature_views(path), path.resolve().parent)
    folder = repo_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for view in views:
        try:
            previous: AppliedView | None = get_applied(view.name, home)
        except NotFound:
            previous = None
        if previous is not None and previous.view.version == view.version:
            status = "unchanged"
        else:
            status = "created" if previous is None else "updated"
            record = AppliedView(view, datetime.now(UTC).isoformat(), str(path.resolve()))
            _atomic_write(folder / f"{view.name}.json", json.dumps(record.to_dict(), indent=2, sort_keys=True))
        if view.source and "://" not in view.source and not Path(view.source).exists():
            logger.warning("feature view %s: source %s does not exist yet", view.name, view.source)
        results.append({"name": view.name, "version": view.version, "status": status, "source": view.source})
    logger.info("applied %d feature view(s) from %s", len(results), path)
    return results


def _atomic_write(target: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def get_applied(name: str, home: Path | None = None) -> AppliedView:
    file = repo_dir(home) / f"{name}.json"
    if "/" in name or name.startswith(".") or not file.exists():
        raise NotFound(f"feature view {name!r} is not applied (mlplatform features apply FILE.yaml)", field="view")
    try:
        data = json.loads(file.read_text())
        view = FeatureView.model_validate(data["view"])
    except (OSError, ValueError, KeyError, ValidationError) as exc:
        raise IntegrityError(f"feature view record {file} is unreadable: {exc}") from exc
    return AppliedView(view, data.get("applied_at", ""), data.get("applied_from"))


def get_view(name: str, home: Path | None = None) -> FeatureView:
    return get_applied(name, home).view


def list_applied(home: Path | None = None) -> list[AppliedView]:
    folder = repo_dir(home)
    if not folder.exists():
        return []
    return [get_applied(file.stem, home) for file in sorted(folder.glob("*.json"))]


def join_views(entity_df: Any, names: list[str], *, label_time: str = "event_time", full_feature_names: bool = False,
               home: Path | None = None) -> tuple[Any, list[str], dict[str, Any]]:
    """Training data from applied views: ``entity_df`` (entity key, label time, labels) joined point-in-time with
    every named view. Returns the frame, the feature columns added (named as online lookups name them) and the
    record a model version keeps of the views and versions it was trained on (SPEC S4.9)."""
    views = [get_view(name, home) for name in names]
    frame = get_historical_features(entity_df, views, label_time=label_time, full_feature_names=full_feature_names)
    columns = [feature_column(v, f, full_feature_names) for v in views for f in v.features]
    return frame, columns, views_record(views, full_feature_names)


def views_record(views: list[FeatureView], full_feature_names: bool) -> dict[str, Any]:
    """The views and versions features came from: what a model version records at training and what an
    ``entity_ids`` lookup serves, compared before a prediction (``serving.online_features.check_feature_views``)."""
    return {"views": [{"name": v.name, "version": v.version} for v in views],
            "full_feature_names": full_feature_names}
