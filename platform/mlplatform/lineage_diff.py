"""Readable summaries and diffs of model-version lineage (SPEC S1.8). Old records' missing fields show as absent."""

from __future__ import annotations

from typing import Any

from mlplatform.entities import ModelVersion

ABSENT = "(absent)"


def _sections(version: ModelVersion) -> dict[str, dict[str, Any]]:
    lineage = version.lineage or {}
    git = lineage.get("git") or {}
    env = lineage.get("environment") or {}
    return {
        "data": _data_section(lineage),
        "code": {"commit": git.get("commit", ABSENT if git.get("repository", True) else "not a repository"),
                 "dirty": git.get("dirty", ABSENT), "diff_sha256": git.get("diff_sha256", ABSENT)},
        "environment": {"python": (env.get("python") or ABSENT).split()[0], "os": env.get("os", ABSENT),
                        "cuda": env.get("cuda", ABSENT),
                        **{f"pkg:{k}": v for k, v in (env.get("packages") or {}).items()}},
        "config": {k: v for k, v in _flatten(lineage.get("config") or {}).items()} | {"seed": lineage.get("seed",
                                                                                                  ABSENT)},
        "features": {"transform_sha256": lineage.get("transform_sha256", ABSENT),
                     **{f"view:{v.get('name')}": v.get("version")
                        for v in (lineage.get("feature_views") or {}).get("views", [])}},
        "model": {"parent_version": version.parent_version, "artifact_sha256": version.artifact_sha256},
    }


def _data_section(lineage: dict[str, Any]) -> dict[str, Any]:
    """The training data as lineage records it: ``dataset`` (one dict, what training writes) or an older
    ``datasets`` list; name, version hash, rows, split and the validation filter."""
    entries = [lineage["dataset"]] if isinstance(lineage.get("dataset"), dict) else list(lineage.get("datasets") or [])
    out: dict[str, Any] = {}
    for i, entry in enumerate(entries):
        prefix = "" if len(entries) == 1 else f"{i}."
        out[f"{prefix}name"] = entry.get("name", ABSENT)
        out[f"{prefix}version"] = entry.get("version") or entry.get("hash") or ABSENT
        for key in ("uri", "rows", "rows_used"):
            if key in entry:
                out[f"{prefix}{key}"] = entry[key]
        split = entry.get("split") or lineage.get("split") or {}
        for key in ("method", "seed", "n_train", "n_validation", "n_test"):
            if key in split:
                out[f"{prefix}split.{key}"] = split[key]
        validation = entry.get("validation") or {}
        if validation:
            out[f"{prefix}filter"] = (f"forced past {validation.get('level')}: {validation.get('rows_dropped', 0)} "
                                      "row(s) dropped") if validation.get("forced") else "none (validation passed)"
    return out


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def summarize(version: ModelVersion) -> dict[str, Any]:
    sections = _sections(version)
    packages = sum(1 for k in sections["environment"] if k.startswith("pkg:"))
    return {
        "dataset": _dataset_line(sections["data"]),
        "git commit": sections["code"]["commit"], "dirty": sections["code"]["dirty"],
        "python": sections["environment"]["python"], "os": sections["environment"]["os"],
        "packages recorded": packages, "seed": sections["config"]["seed"],
        "transform sha256": sections["features"]["transform_sha256"],
        "feature views": ", ".join(f"{k[5:]}@{str(v)[:12]}" for k, v in sections["features"].items()
                                   if k.startswith("view:")) or ABSENT,
        "parent version": version.parent_version, "artifact sha256": version.artifact_sha256,
    }


def _dataset_line(data: dict[str, Any]) -> str:
    if not data:
        return ABSENT
    if "name" not in data:  # several datasets
        return ", ".join(f"{data[k]}@{str(data[k.replace('name', 'version')])[:12]}" for k in data if
                         k.endswith(".name"))
    split = "/".join(str(data[f"split.n_{p}"]) for p in ("train", "validation", "test") if f"split.n_{p}" in data)
    parts = [f"{data['name']}@{str(data['version'])[:12]}"]
    if "rows" in data:
        parts.append(f"{data['rows']} rows")
    if split:
        parts.append(f"split {data.get('split.method', '?')} {split}")
    if "filter" in data:
        parts.append(f"filter: {data['filter']}")
    return "; ".join(parts)


def diff_versions(old: ModelVersion, new: ModelVersion) -> list[dict[str, Any]]:
    before, after = _sections(old), _sections(new)
    changes = []
    for section in before:
        keys = sorted(set(before[section]) | set(after[section]))
        for key in keys:
            a, b = before[section].get(key, ABSENT), after[section].get(key, ABSENT)
            if a != b:
                changes.append({"section": section, "key": key, "old": a, "new": b})
    return changes
