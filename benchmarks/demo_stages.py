"""The demo's wall time split by stage (issue: the newcomer's path). Runs `python -m mlplatform.demo` on a private
Ray and a throwaway MLPLATFORM_HOME, writes benchmarks/results/demo_stages.json and prints the slowest stage.
Target: the whole demo under 600 s on this 2-core machine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import emit_target, print_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "demo_stages.json"


def main() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "MLPLATFORM_HOME": home, "MLPLATFORM_DEMO_PORT": str(port),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        env.pop("RAY_ADDRESS", None)
        facts_file = Path(home) / "facts.json"
        done = subprocess.run([sys.executable, "-m", "mlplatform.demo", "--in-process-ray", "--facts", str(facts_file)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
            return 1
        facts = json.loads(facts_file.read_text())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    record = {"seconds": facts["seconds"], "stages": facts["stages"], "cpus": os.cpu_count(),
              "load_average": os.getloadavg()[0]}
    RESULTS.write_text(json.dumps(record, indent=1) + "\n")
    stages = sorted(facts["stages"].items(), key=lambda kv: -kv[1])
    print_table(f"make demo stages ({facts['seconds']:.0f} s in all)",
                [{"stage": title, "seconds": float(seconds)} for title, seconds in stages])
    print(f"slowest stage: {stages[0][0]} ({stages[0][1]:.1f} s); written to {RESULTS.relative_to(ROOT)}")
    ok = emit_target("demo_stages", "demo_wall_s", float(facts["seconds"]), 600.0, higher_is_better=False)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
