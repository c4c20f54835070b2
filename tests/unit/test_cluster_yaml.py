"""cluster.yaml passes Ray's own launcher validation (offline: no cloud calls)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_cluster_yaml_passes_ray_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    prepared = prepare_config(config)
    validate_config(prepared)  # raises on any schema error
    types = prepared["available_node_types"]
    assert {"head", "cpu_worker", "gpu_worker"} <= set(types)
    assert any("make install" in cmd for cmd in prepared["setup_commands"])
    text = (ROOT / "cluster.yaml").read_text()
    assert "MLPLATFORM_DB_PASSWORD_FILE" in text and "password:" not in text.lower()
