"""The high-throughput mode end to end: Ray started with RAY_SERVE_THROUGHPUT_OPTIMIZED=1, the app deployed as
``mlplatform serve up --high-throughput`` deploys it, real HTTP to the direct-ingress port and to the proxy. Runs
in its own process because Serve reads the switch when Ray starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e._script import run_script

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_direct_ingress_serves_the_colocated_model_on_loopback(tmp_path: Path) -> None:
    facts = run_script("_high_throughput.py", tmp_path / "home", timeout_s=280)
    # one direct-ingress port, on loopback (HAProxy is not enabled, so nothing binds all interfaces)
    assert len(facts["direct_urls"]) == 1 and facts["direct_urls"][0].startswith("http://127.0.0.1:")
    # --high-throughput serves the model inside the ingress replica: no model deployment
    assert facts["colocated"] is True and facts["deployments"] == ["Ingress"]
    for via in ("direct", "proxy"):
        assert facts[via] == {"status": 200, "version": 1, "equal": True}, via
    assert facts["direct_bad_input"]["status"] == 422 and facts["direct_bad_input"]["fields"]
    assert facts["direct_cache"] == ["miss", "hit"]
