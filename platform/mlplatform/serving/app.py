"""Compose the serving application: one FastAPI ingress + one deployment per model, joined by DeploymentHandles.

Nothing here deploys at import; :func:`build_app` returns an ``Application`` for ``serve.run`` or for the
``import_path`` of a ``serve deploy`` YAML (``serve_apps/model_app.py`` re-exports it).
"""

# No ``from __future__ import annotations`` here: FastAPI must resolve the routes' ``Request`` annotations at
# runtime, and string annotations on Serve's class-based routes fail to resolve (PydanticUserError at /openapi.json).
from typing import Any

import ray
from fastapi import Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve import Application

from mlplatform.config.serve import ServeConfig
from mlplatform.serving.ensemble import EnsembleServer
from mlplatform.serving.hot_routes import INFER, INFER_VERSION, PREDICT, PREDICT_VERSION
from mlplatform.serving.http_api import _FEEDBACK_BODY, _INFER_BODY, _PREDICT_BODY, ServingAPI, api
from mlplatform.serving.model_server import ModelServer
from mlplatform.serving.names import deployment_name, ensemble_deployment_name, member_deployment_name

INGRESS_NAME = "Ingress"


@serve.ingress(api)
class Ingress(ServingAPI):
    # Route order matters: "{name}:predict" must be tried before the plain "{name}" metadata route. The predict and
    # infer routes are answered before FastAPI's routing inside a replica (serving/hot_routes.py); declared here they
    # keep their OpenAPI description and answer wherever that path does not engage.
    @api.post(PREDICT, openapi_extra=_PREDICT_BODY, summary="Predict")
    async def predict_route(self, name: str, request: Request) -> JSONResponse:
        return await self.predict(name, request)

    @api.post(PREDICT_VERSION, openapi_extra=_PREDICT_BODY,
              summary="Predict with one registered version (pinned: no rollout split, no shadow copy)")
    async def predict_version_route(self, name: str, version: str, request: Request) -> JSONResponse:
        return await self.predict(name, request, version=version)

    @api.get("/v1/models", summary="List served models")
    async def list_models_route(self, request: Request) -> JSONResponse:
        return await self.list_models(request)

    @api.get("/v1/models/{name}", summary="Model metadata, input schema, serving version, ready")
    async def model_route(self, name: str, request: Request) -> JSONResponse:
        return await self.model_metadata(name, request)

    @api.post("/v1/feedback", openapi_extra=_FEEDBACK_BODY, summary="Store a delayed label")
    async def feedback_route(self, request: Request) -> JSONResponse:
        return await self.feedback(request)

    @api.get("/healthz", summary="200 when every model is ready, else 503")
    async def healthz_route(self, request: Request) -> JSONResponse:
        return await self.healthz(request)

    # Open Inference Protocol v2 (KServe V2 REST): the same predict path, tensors in and out (serving/v2.py)
    @api.get("/v2/health/live", summary="V2: 200 while the server answers")
    async def v2_live_route(self) -> JSONResponse:
        return JSONResponse({"live": True})

    @api.get("/v2/health/ready", summary="V2: 200 when every model is ready, else 503")
    async def v2_ready_route(self, request: Request) -> JSONResponse:
        return await self.v2_server_ready(request)

    @api.get("/v2", summary="V2: server metadata")
    async def v2_server_route(self) -> JSONResponse:
        return JSONResponse({"name": "mlplatform", "version": "1", "extensions": ["binary_tensor_data"]})

    @api.post(INFER, openapi_extra=_INFER_BODY, summary="V2: infer")
    async def v2_infer_route(self, name: str, request: Request) -> JSONResponse:
        return await self.infer_v2(name, request)

    @api.post(INFER_VERSION, openapi_extra=_INFER_BODY,
              summary="V2: infer with one registered version (pinned: no rollout split, no shadow copy)")
    async def v2_infer_version_route(self, name: str, version: str, request: Request) -> JSONResponse:
        return await self.infer_v2(name, request, version=version)

    @api.get("/v2/models/{name}/ready", summary="V2: 200 when the model is ready")
    async def v2_model_ready_route(self, name: str, request: Request) -> JSONResponse:
        return await self.v2_model_ready(name, request)

    @api.get("/v2/models/{name}/versions/{version}/ready", summary="V2: 200 when that version can answer")
    async def v2_version_ready_route(self, name: str, version: str, request: Request) -> JSONResponse:
        return await self.v2_model_ready(name, request, version=version)

    @api.get("/v2/models/{name}", summary="V2: model metadata (inputs per feature, outputs)")
    async def v2_model_route(self, name: str, request: Request) -> JSONResponse:
        return await self.v2_model_metadata(name, request)

    @api.get("/v2/models/{name}/versions/{version}", summary="V2: one version's metadata")
    async def v2_version_route(self, name: str, version: str, request: Request) -> JSONResponse:
        return await self.v2_model_metadata(name, request, version=version)


# Any: Ray's stubs type serve.deployment(cls) as a decorator factory, not the Deployment it returns
IngressDeployment: Any = serve.deployment(Ingress)
ModelDeployment: Any = serve.deployment(ModelServer)
EnsembleDeployment: Any = serve.deployment(EnsembleServer)


def model_deployment_options(cfg: ServeConfig, name: str) -> dict[str, Any]:
    entry = next(m for m in cfg.models if m.name == name)
    options: dict[str, Any] = {
        "name": deployment_name(name),
        "user_config": {"ref": entry.initial_ref()},
        "max_ongoing_requests": cfg.max_ongoing_requests,
        "max_queued_requests": cfg.max_queued_requests,
        "ray_actor_options": cfg.actor_options(cfg.model_num_cpus),
        "graceful_shutdown_timeout_s": cfg.graceful_shutdown_timeout_s,
        "health_check_period_s": cfg.health_check_period_s,
    }
    if entry.num_replicas is not None:
        options["num_replicas"] = entry.num_replicas
    else:
        options["autoscaling_config"] = cfg.autoscaling.model_dump(exclude_none=True)
    return options


def _replica_options(cfg: ServeConfig, num_replicas: int | None) -> dict[str, Any]:
    if num_replicas is not None:
        return {"num_replicas": num_replicas}
    return {"autoscaling_config": cfg.autoscaling.model_dump(exclude_none=True)}


def ensemble_bindings(cfg: ServeConfig, plain: dict[str, Any]) -> dict[str, Any]:
    """One deployment per distinct member ref (shared by the ensembles naming it), one per ensemble."""
    # heavy: the SQL stack loads only where the store is opened, not in every Ray worker
    from mlplatform.client import parse_model_ref

    members: dict[str, Any] = {}
    bound: dict[str, Any] = {}
    for entry in cfg.ensembles:
        for ref in entry.members:
            if ref not in members:
                members[ref] = ModelDeployment.options(
                    name=member_deployment_name(ref), user_config={"ref": ref},
                    max_ongoing_requests=cfg.max_ongoing_requests, max_queued_requests=cfg.max_queued_requests,
                    ray_actor_options=cfg.actor_options(cfg.model_num_cpus),
                    graceful_shutdown_timeout_s=cfg.graceful_shutdown_timeout_s,
                    health_check_period_s=cfg.health_check_period_s, **_replica_options(cfg, entry.num_replicas),
                ).bind(parse_model_ref(ref)[0], plain, member_ref=ref)
        bound[entry.name] = EnsembleDeployment.options(
            name=ensemble_deployment_name(entry.name), max_ongoing_requests=cfg.ingress_max_ongoing_requests,
            max_queued_requests=cfg.max_queued_requests, ray_actor_options=cfg.actor_options(cfg.ingress_num_cpus),
            graceful_shutdown_timeout_s=cfg.graceful_shutdown_timeout_s,
            **_replica_options(cfg, entry.num_replicas),
        ).bind(entry.name, [members[ref] for ref in entry.members], plain)
    return bound


def build_app(args: dict[str, Any]) -> Application:
    """Application builder: ``args`` follow :class:`ServeConfig` (models, ensembles, store_url, ...)."""
    cfg = ServeConfig.parse(args)
    cfg = cfg.for_cluster(ray.cluster_resources() if ray.is_initialized() else {})
    plain = cfg.model_dump(mode="json")  # replicas re-validate the same plain dict
    # colocated: the ingress builds the models itself (serving/local_handle.py), no model deployments
    handles = {} if cfg.colocate_models else {
        entry.name: ModelDeployment.options(**model_deployment_options(cfg, entry.name)).bind(entry.name, plain)
        for entry in cfg.models}
    handles.update(ensemble_bindings(cfg, plain))
    return IngressDeployment.options(
        name=INGRESS_NAME, num_replicas=cfg.ingress_replicas, max_ongoing_requests=cfg.ingress_max_ongoing_requests,
        # at least the ingress's own concurrency: Serve's proxy answers a full ingress queue with a plain-text 503
        # without Retry-After, so the model queue (whose overflow becomes a JSON 503 + Retry-After) must fill first
        max_queued_requests=max(cfg.ingress_max_ongoing_requests, cfg.max_queued_requests * max(
            1, len(handles) + len(cfg.models) * cfg.colocate_models)),
        ray_actor_options=cfg.actor_options(cfg.ingress_num_cpus),
        graceful_shutdown_timeout_s=cfg.graceful_shutdown_timeout_s,
    ).bind(handles, plain)
