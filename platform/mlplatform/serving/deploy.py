"""Declarative deploys of the serving YAML, shared by ``mlplatform serve`` and the tests.

``deploy`` takes the same document ``serve deploy`` reads and applies it through the Serve controller's
declarative path (the one the dashboard's REST API uses), so a later deploy that only changes a model's
``user_config`` reconfigures live replicas in place instead of replacing them. ``serve.run`` would always replace
them (the imperative API gives every call a new code version).
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

from mlplatform.config.base import read_yaml
from mlplatform.config.serve import ServeConfig
from mlplatform.errors import ConfigError, NotFound, Unavailable
from mlplatform.serving.names import deployment_name

logger = logging.getLogger(__name__)
DEFAULT_CONFIG = Path("serve_apps/config.yaml")
REPO_ROOT = Path(__file__).resolve().parents[3]
# Ray Serve's throughput-optimized mode (Ray >= 2.56): gRPC between deployments, no separate user-code thread or
# router loop, buffered request logs, GC frozen after start-up, and direct ingress: every ingress replica also
# serves HTTP itself on a port from 30000-31000 (RAY_SERVE_DIRECT_INGRESS_MIN/MAX_HTTP_PORT). Measured here: ~4,200
# req/s at concurrency 32 on that port against ~300 through the default proxy. Off by default because adding
# RAY_SERVE_ENABLE_HA_PROXY=1 (HAProxy in front of those ports) binds all interfaces, not 127.0.0.1.
THROUGHPUT_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
# The web console (mlplatform.console), deployed beside the models by `serve up`; named by import path only, so
# serving never imports it.
CONSOLE_ROUTE = "/console"
CONSOLE_IMPORT_PATH = "mlplatform.console.serve:build_app"


def load_config(path: Path | str = DEFAULT_CONFIG) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"serve config {path} does not exist", field="config")
    document = read_yaml(path)  # the one YAML reader: a bad file names the file and the line
    if not document.get("applications"):
        raise ConfigError(f"{path}: expected a Serve config with an 'applications' list", field="applications")
    for app in document["applications"]:
        ServeConfig.parse(app.get("args") or {}, source=f"{path}: applications[{app.get('name')}].args")
    return document


def prepare(document: dict[str, Any], *, model: str | None = None, port: int | None = None,
            host: str | None = None, store_url: str | None = None, artifact_uri: str | None = None,
            home: str | None = None, high_throughput: bool = False, console: bool = False) -> dict[str, Any]:
    """Fill what replicas cannot know (store, artifacts, import path) and apply CLI overrides.

    ``high_throughput`` puts ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` in every app's ``runtime_env`` (see
    :data:`THROUGHPUT_ENV`): the replicas start with Ray's throughput-optimized settings, including a direct-ingress
    HTTP port per ingress replica. The controller and proxies read it when Ray starts, so for the full mode Ray
    itself must be started with it too (``mlplatform serve up --high-throughput`` does that when it starts Ray).

    ``console`` adds the web console as a second application at :data:`CONSOLE_ROUTE` on the same HTTP port, on
    the same store and with the first application's bearer-token auth."""
    doc = copy.deepcopy(document)
    http = doc.setdefault("http_options", {})
    http.setdefault("host", "127.0.0.1")  # never all interfaces unless the config says so
    if host:
        http["host"] = host
    if port:
        http["port"] = port
    pythonpath = os.pathsep.join([str(REPO_ROOT / "platform"), str(REPO_ROOT)])
    for app in doc["applications"]:
        args = app.setdefault("args", {})
        for key, value in (("store_url", store_url), ("artifact_uri", artifact_uri), ("home", home)):
            if value and not args.get(key):
                args[key] = value
        if model:
            # heavy: the SQL stack loads only where the store is opened, not in every Ray worker
            from mlplatform.client import parse_model_ref

            name, _, _ = parse_model_ref(model)
            args["models"] = [{**_entry(args, name), "name": name, "ref": model}]
            app["deployments"] = [d for d in app.get("deployments", []) if d.get("name") == "Ingress"]
        env = app.setdefault("runtime_env", {}).setdefault("env_vars", {})
        env.setdefault("PYTHONPATH", pythonpath)
        if high_throughput:
            env.update(THROUGHPUT_ENV)
            # The direct-ingress port answers from the ingress replica: with the models inside it too, a request
            # is one process end to end (measured here: 1,660 req/s at c=32 against 480 with a handle hop).
            args.setdefault("colocate_models", True)
        ServeConfig.parse(args, source=f"applications[{app.get('name')}].args")
    if console and not any(a.get("route_prefix") == CONSOLE_ROUTE for a in doc["applications"]):
        first = doc["applications"][0]["args"]
        doc["applications"].append({
            "name": "console", "route_prefix": CONSOLE_ROUTE, "import_path": CONSOLE_IMPORT_PATH,
            "args": {"store_url": first.get("store_url"), "artifact_uri": first.get("artifact_uri"),
                     "home": first.get("home"), "auth": first.get("auth") or {"enabled": False}},
            "runtime_env": {"env_vars": {"PYTHONPATH": pythonpath}},
        })
    return doc


def console_url(document: dict[str, Any]) -> str | None:
    """The console's URL when the document deploys it."""
    if not any(a.get("route_prefix") == CONSOLE_ROUTE for a in document["applications"]):
        return None
    http = document.get("http_options") or {}
    return f"http://{http.get('host', '127.0.0.1')}:{http.get('port', 8000)}{CONSOLE_ROUTE}/"


def _entry(args: dict[str, Any], name: str) -> dict[str, Any]:
    return next((m for m in args.get("models", []) if m.get("name") == name), {})


def with_model_ref(document: dict[str, Any], app_name: str, model_name: str, ref: str) -> dict[str, Any]:
    """A copy whose ``deployments`` entry for the model carries ``user_config: {ref}`` (a reload in place)."""
    doc = copy.deepcopy(document)
    app = next(a for a in doc["applications"] if a["name"] == app_name)
    deployments = app.setdefault("deployments", [])
    colocated = bool((app.get("args") or {}).get("colocate_models"))
    name = "Ingress" if colocated else deployment_name(model_name)  # colocated models live in the ingress
    entry = next((d for d in deployments if d.get("name") == name), None)
    if entry is None:
        entry = {"name": name}
        deployments.append(entry)
    if colocated:
        refs = dict((entry.get("user_config") or {}).get("refs") or {})
        entry["user_config"] = {"refs": {**refs, model_name: ref}}
    else:
        entry["user_config"] = {"ref": ref}
    return doc


def deploy(document: dict[str, Any], *, blocking: bool = True) -> None:
    """Start Serve with the document's http_options (if not running) and apply the document."""
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    try:
        schema = ServeDeploySchema.model_validate(document)
    except ValueError as exc:
        raise ConfigError(f"invalid Serve config: {str(exc).splitlines()[0]}", field="applications") from None
    serve.start(http_options=document.get("http_options") or {"host": "127.0.0.1"})
    # Private client, same call as the dashboard's PUT /api/serve/applications/ behind `serve deploy`.
    client = _get_global_client()
    assert client is not None  # serve.start above made it
    client.deploy_apps(schema, _blocking=blocking)


def endpoint(document: dict[str, Any]) -> str:
    http = document.get("http_options") or {}
    prefix = (document["applications"][0].get("route_prefix") or "/").rstrip("/")
    return f"http://{http.get('host', '127.0.0.1')}:{http.get('port', 8000)}{prefix}"


def direct_ingress() -> dict[str, list[str]]:
    """Per application, the direct-ingress URLs of its ingress replicas (throughput-optimized mode; empty
    otherwise): what HAProxy, when enabled, balances over, and what a client can call without the proxy hop."""
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    import ray
    from ray.serve._private.common import RequestProtocol
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    if client is None:
        raise Unavailable("Serve is not running on this cluster", retry_after_s=5)
    controller = client._controller
    bind = getattr(ray.get(controller.get_http_config.remote()), "host", None) or "127.0.0.1"
    urls: dict[str, list[str]] = {}
    for group in ray.get(controller.get_target_groups.remote()):
        if group.protocol != RequestProtocol.HTTP or not group.app_name:
            continue
        for target in group.targets:
            if target.name.startswith("SERVE_REPLICA::"):  # proxies are targets too when direct ingress is off
                host = target.ip if bind in ("0.0.0.0", "::") else bind
                urls.setdefault(group.app_name, []).append(
                    f"http://{host}:{target.port}{(group.route_prefix or '/').rstrip('/')}")
    return urls


def status() -> dict[str, Any]:
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    from ray import serve

    details = serve.status()
    apps = {}
    for name, app in details.applications.items():
        apps[name] = {"status": str(app.status.value if hasattr(app.status, "value") else app.status),
                      "message": app.message,
                      "deployments": {d: {"status": str(getattr(s.status, "value", s.status)),
                                          "replicas": {str(getattr(k, "value", k)): n
                                                       for k, n in s.replica_states.items()}}
                                      for d, s in app.deployments.items()}}
    try:
        direct = direct_ingress()
    except Exception:  # private controller API: status must not fail when it changes
        logger.debug("direct-ingress targets unavailable", exc_info=True)
        direct = {}
    return {"proxies": {k: str(getattr(v, "value", v)) for k, v in details.proxies.items()}, "applications": apps,
            "direct_ingress": direct}
