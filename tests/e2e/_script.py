"""Runs an e2e script in its own process (a process joins one Ray only) and returns its ``RESULT {json}`` line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_script(name: str, home: Path, timeout_s: float) -> dict[str, Any]:
    script = Path(__file__).with_name(name)
    result = subprocess.run([sys.executable, str(script), str(home)], capture_output=True, text=True,
                            timeout=timeout_s, cwd=Path(__file__).resolve().parents[2])
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stderr[-4000:]
    return json.loads(lines[-1].removeprefix("RESULT "))
