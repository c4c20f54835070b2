"""cluster.yaml would come up: Ray's own launcher validation (offline: no cloud calls), an image whose Python meets
requires-python, an upload without the local virtualenv or secrets, and the same pinned install as `make install`."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _config() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_passes_ray_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(_config())
    validate_config(prepared)  # raises on any schema error
    assert {"head", "cpu_worker", "gpu_worker"} <= set(prepared["available_node_types"])
    text = (ROOT / "cluster.yaml").read_text()
    assert "MLPLATFORM_DB_PASSWORD_FILE" in text and "password:" not in text.lower()


def _images(config: dict) -> list[str]:
    docker = config["docker"]
    images = [docker["image"], docker.get("head_image"), docker.get("worker_image")]
    images += [t.get("docker", {}).get("worker_image") for t in config["available_node_types"].values()]
    return [i for i in images if i]


def test_every_image_has_the_projects_python_and_ray() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    minimum = tuple(int(p) for p in re.fullmatch(r">=\s*(\d+)\.(\d+)", project["requires-python"]).groups())
    ray_pin = re.search(r"^ray==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    images = _images(_config())
    assert len(images) >= 2  # CPU and GPU
    for image in images:
        match = re.fullmatch(r"rayproject/ray:(?P<ray>[\d.]+)-py(?P<major>\d)(?P<minor>\d+)(-gpu)?", image)
        assert match, f"{image}: not a Ray image whose tag names its Python"
        assert (int(match["major"]), int(match["minor"])) >= minimum, image
        assert match["ray"] == ray_pin, image


def test_the_upload_skips_local_state_and_secrets() -> None:
    excluded = set(_config()["rsync_exclude"])
    assert {".venv", ".mlplatform", "demo_output", ".env", "*.db"} <= excluded


def test_setup_installs_exactly_what_make_install_does() -> None:
    makefile = (ROOT / "Makefile").read_text()
    make_args = [m for m in re.findall(r"\$\(PY\) -m pip install (.+)", makefile) if "constraints.txt" in m]
    assert len(make_args) == 1
    installs = [re.search(r"python -m pip install (.+)", c) for c in _config()["setup_commands"]]
    assert [m.group(1).strip() for m in installs if m] == [make_args[0].strip()]


def test_serving_slots_on_head_and_gpu_nodes_and_a_declared_instance_profile() -> None:
    config = _config()
    types = config["available_node_types"]
    assert types["head"]["resources"]["serve"] > 0 and types["gpu_worker"]["resources"]["serve"] > 0
    assert "serve" not in types["cpu_worker"]["resources"]
    profiles = {t["node_config"]["IamInstanceProfile"]["Name"] for t in types.values()}
    assert len(profiles) == 1
    assert any("secretsmanager get-secret-value" in c for c in config["initialization_commands"])
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "0.0.0.0" not in start
