"""`make test`: the whole suite as two pytest processes side by side, to stay inside the 25-minute budget on 2 cores.

The end-to-end tests spend most of their time starting their own Ray clusters and subprocesses (the demo, the
throughput-optimized Serve, three nodes), and the rest of the suite spends much of its time waiting on the shared
local Ray. Run one beside the other and the two cores stay busy. Each process has its own shared Ray (free ports),
its own temporary directory and its own output; the second's output is printed when it ends, and the exit status
is the worse of the two. Arguments are passed to both processes (e.g. ``-x`` or ``-k``)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The side stream: self-contained end-to-end tests, the multi-worker training and tuning tests and the serving chaos
# tests, about half of the time (measured 2026-12-06: with the first three alone the side stream took 12 minutes
# and the main one 22).
SIDE = ["tests/e2e", "tests/integration/test_training.py", "tests/integration/test_breast_cancer.py",
        "tests/integration/test_tuning.py", "tests/integration/test_serving_chaos.py"]


def main(argv: list[str]) -> int:
    python = sys.executable
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlplatform-suite-") as scratch:
        side_log = Path(scratch) / "side.log"
        with side_log.open("w") as log:
            side = subprocess.Popen(
                [python, "-m", "pytest", *SIDE, f"--basetemp={scratch}/side", *argv],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            main_rc = subprocess.call(
                [python, "-m", "pytest", *(f"--ignore={path}" for path in SIDE), f"--basetemp={scratch}/main",
                 *argv], cwd=ROOT)
            side_rc = side.wait()
        print(f"\n===== side stream: {' '.join(SIDE)} =====", flush=True)
        sys.stdout.write(side_log.read_text())
    print(f"\nmake test: main stream exit {main_rc}, side stream exit {side_rc}, "
          f"{time.monotonic() - started:.0f} s wall", flush=True)
    # 5 is "no tests collected": a -k that selects tests from one stream only is not a failure of the other
    return max(rc if rc != 5 else 0 for rc in (main_rc, side_rc))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
