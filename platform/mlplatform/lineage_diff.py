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
        "data": {str(d.get("name", i)): d.get("version") or d.get("hash")
                 for i, d in enumerate(lineage.get("datasets") or [])},
        "code": {"commit": git.get("commit", ABSENT if git.get("repository", True) else "not a repository"),
                 "dirty": git.get("dirty", ABSENT), "diff_sha256": git.get("diff_sha256", ABSENT)},
        "environment": {"python": (env.get("python") or ABSENT).split()[0], "os": env.get("os", ABSENT),
                        "cuda": env.get("cuda", ABSENT),
                        **{f"pkg:{k}": v for k, v in (env.get("packages") or {}).items()}},
        "config": {k: v for k, v in _flatten(lineage.get("config") or {}).items()} | {"seed": lineage.get("seed",
                                                                                                  ABSENT)},
        "features": {"transform_sha256": lineage.get("transform_sha256", ABSENT)},
        "model": {"parent_version": version.parent_version, "artifact_sha256": version.artifact_sha256},
    }


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
        "datasets": ", ".join(f"{k}@{str(v)[:12]}" for k, v in sections["data"].items()) or ABSENT,
        "git commit": sections["code"]["commit"], "dirty": sections["code"]["dirty"],
        "python": sections["environment"]["python"], "os": sections["environment"]["os"],
        "packages recorded": packages, "seed": sections["config"]["seed"],
        "transform sha256": sections["features"]["transform_sha256"],
        "parent version": version.parent_version, "artifact sha256": version.artifact_sha256,
    }


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
