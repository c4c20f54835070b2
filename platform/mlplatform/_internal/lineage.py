"""Environment lineage captured automatically at registration (SPEC S1.8)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform as stdlib_platform
import subprocess
import sys
from pathlib import Path
from typing import Any


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10,
                              check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
    except (OSError, subprocess.SubprocessError):
        return {"repository": False, "note": "not a git repository (or no commit yet)"}
    diff = git("diff", "HEAD")
    return {"repository": True, "commit": commit, "dirty": bool(diff.strip()),
            "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff.strip() else None}


def environment() -> dict[str, Any]:
    packages = sorted(
        {(d.metadata["Name"] or "").lower(): d.version for d in importlib.metadata.distributions()
         if d.metadata["Name"]}.items()
    )
    env: dict[str, Any] = {
        "python": sys.version, "os": stdlib_platform.platform(), "machine": stdlib_platform.machine(),
        "packages": dict(packages),
    }
    try:
        # heavy: torch takes seconds to import; only the torch path pays for it
        import torch

        env["cuda"] = torch.version.cuda
        env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # torch absent or no driver: say so rather than guess
        env["cuda"], env["gpus"] = None, []
    return env


def capture(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"git": git_state(), "environment": environment(), **(extra or {})}
