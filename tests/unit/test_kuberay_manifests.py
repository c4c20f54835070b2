"""deploy/kuberay/*.yaml: generated from one source, valid for the KubeRay CRDs (strictly: an unknown field, which
Kubernetes would silently prune, fails), serveConfigV2 equal to serve_apps/config.yaml, secrets only as files."""

from __future__ import annotations

import copy
import functools
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT.parent / "shared" / "kuberay"
MANIFESTS = {"raycluster.yaml": "ray.io_rayclusters.yaml", "rayjob-train.yaml": "ray.io_rayjobs.yaml",
             "rayservice.yaml": "ray.io_rayservices.yaml"}


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("kuberay_generate", ROOT / "deploy" / "kuberay" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused wherever it lists properties and does not preserve unknowns."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def _validator(crd_file: str) -> Any:
    import jsonschema

    if not CRDS.is_dir():
        pytest.skip(f"KubeRay CRD schemas not found at {CRDS} (../shared/kuberay from the project root)")
    # The CRDs are ~1 MB each: libyaml's loader reads one in well under a second, the pure-Python one in ~8 s.
    crd = yaml.load((CRDS / crd_file).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"])), crd["spec"]["names"]["kind"]


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "deploy" / "kuberay" / name).read_text())


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_manifest_is_valid_for_its_kuberay_crd(name: str) -> None:
    validator, kind = _validator(MANIFESTS[name])
    manifest = _load(name)
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", kind)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]
    assert errors == []


def test_the_strict_check_catches_a_misspelt_field() -> None:
    validator, _ = _validator(MANIFESTS["rayjob-train.yaml"])
    manifest = copy.deepcopy(_load("rayjob-train.yaml"))
    manifest["spec"]["shutdownAfterJobFinish"] = manifest["spec"].pop("shutdownAfterJobFinishes")
    manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    messages = [e.message for e in validator.iter_errors(manifest)]
    assert any("shutdownAfterJobFinish" in m for m in messages) and any("3 is not of type" in m for m in messages)


def test_files_are_what_the_generator_writes() -> None:
    assert _generator().main(["--check"]) == 0, "run: python deploy/kuberay/generate.py"


def test_serve_config_v2_is_serve_apps_config_filled_in_for_the_cluster() -> None:
    from ray.serve.schema import ServeDeploySchema

    from mlplatform.config.serve import ServeConfig

    served = yaml.safe_load(_load("rayservice.yaml")["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(served)  # Ray's own schema for a Serve config
    source = yaml.safe_load((ROOT / "serve_apps" / "config.yaml").read_text())
    gen = _generator()
    assert [a["name"] for a in served["applications"]] == [a["name"] for a in source["applications"]]
    for app, original in zip(served["applications"], source["applications"], strict=True):
        filled = {"store_url": gen.STORE_URL, "artifact_uri": gen.ARTIFACT_URI, "home": "/tmp/mlplatform"}
        assert app["args"] == {**original["args"], **filled}
        assert app["deployments"] == original["deployments"]
        assert (app["import_path"], app["route_prefix"]) == (original["import_path"], original["route_prefix"])
        ServeConfig.parse(app["args"])


def test_secrets_come_from_a_kubernetes_secret_as_files() -> None:
    for name in MANIFESTS:
        text = (ROOT / "deploy" / "kuberay" / name).read_text()
        assert not re.search(r"(?i)password\s*[:=]\s*\S", text.replace("DB_PASSWORD_FILE", ""))
        pods = [m.group(0) for m in re.finditer(r"template:", text)]
        assert len(pods) >= 2
        manifest = _load(name)
        spec = manifest["spec"].get("rayClusterSpec") or manifest["spec"].get("rayClusterConfig") or manifest["spec"]
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for group in groups:
            pod = group["template"]["spec"]
            assert pod["volumes"] == [{"name": "mlplatform-secrets", "secret": {"secretName": "mlplatform-secrets",
                                                                                "defaultMode": 0o400}}]
            env = {e["name"]: e for e in pod["containers"][0]["env"]}
            assert env["MLPLATFORM_DB_PASSWORD_FILE"]["value"].startswith("/var/run/secrets/mlplatform/")
            assert all("value" not in e or "secret" not in e["value"] or e["name"].endswith("_FILE")
                       for e in env.values())


def test_serving_slots_head_and_serve_groups_and_the_image_matches_cluster_yaml() -> None:
    service = _load("rayservice.yaml")["spec"]["rayClusterConfig"]
    assert service["headGroupSpec"]["resources"]["serve"] and service["workerGroupSpecs"][0]["resources"]["serve"]
    assert service["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    dockerfile = (ROOT / "deploy" / "kuberay" / "Dockerfile").read_text()
    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert f"ARG BASE={cluster['docker']['image']}" in dockerfile
    makefile = (ROOT / "Makefile").read_text()
    install = next(m for m in re.findall(r"\$\(PY\) -m pip install (.+)", makefile) if "constraints.txt" in m)
    assert f"RUN python -m pip install {install.strip()}" in dockerfile
