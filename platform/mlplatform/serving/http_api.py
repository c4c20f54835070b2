"""The HTTP face of serving (KServe V1 style, SPEC S6.2-S6.4): a FastAPI app run by the ingress deployment.

The ingress parses and bounds the raw body, forwards instances to the model deployment through its
DeploymentHandle, answers, and queues one prediction-log row per instance. Every error becomes one JSON shape in
one place (:func:`error_response`) with the status from :func:`mlplatform.errors.http_status_for`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mlplatform.config.serve import ServeConfig as ServingConfig
from mlplatform.entities import PredictionRecord
from mlplatform.errors import (
    InvalidInput,
    MLPlatformError,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    Timeout,
    Unavailable,
    http_status_for,
)
from mlplatform.rollouts.routing import SHADOW, routing_key
from mlplatform.serving import v2
from mlplatform.serving.access import PiiMask, RateLimiter, TokenCheck, client_key
from mlplatform.serving.answer import ModelAnswer
from mlplatform.serving.hot_routes import HotRouteMiddleware
from mlplatform.serving.local_handle import LocalHandle
from mlplatform.serving.online_features import OnlineFeatureLookup, parse_entity_ids, parse_request_values
from mlplatform.serving.prediction_log import PredictionLogBuffer, process_writer
from mlplatform.serving.request_id import REQUEST_ID, clean_request_id
from mlplatform.serving.rollout.shadow import ShadowQueue
from mlplatform.serving.validation import parse_instances, parse_json_body

logger = logging.getLogger(__name__)
MAX_VERSION = 2**31 - 1  # registry versions are 32-bit integers in every store
METADATA_TIMEOUT_S = 2.0

api = FastAPI(title="mlplatform serving", version="1", description="KServe V1 style prediction API.")

_PREDICT_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "description": "Either instances (feature rows) or entity_ids (online features; an "
    "unknown entity is a 422 naming entity_ids[i]).",
    "properties": {"instances": {"type": "array", "minItems": 1, "maxItems": 1000,
                                 "items": {"type": "object", "additionalProperties": True}},
                   "entity_ids": {"type": "array", "minItems": 1, "maxItems": 1000,
                                  "items": {"type": ["string", "integer"]}}}}}}}}
_TENSOR = {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
    "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    "datatype": {"type": "string", "enum": ["BYTES", "FP64", "FP32", "INT64", "INT32", "BOOL"]},
    "data": {"type": "array"}, "parameters": {"type": "object"}}}
_INFER_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["inputs"], "description": "Open Inference Protocol v2: one tensor per feature "
    "(BYTES for categoricals, FP64/FP32/INT64 for numbers), or one 2-D FP32 tensor for an all-numeric model.",
    "properties": {"id": {"type": "string"}, "parameters": {"type": "object"},
                   "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
                   "outputs": {"type": "array", "items": {"type": "object", "properties": {
                       "name": {"type": "string", "enum": ["predict", "predict_proba"]}}}}}}}}}}
_FEEDBACK_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["request_id", "label"],
    "properties": {"request_id": {"type": "string", "maxLength": 128},
                   "label": {"type": ["string", "number", "integer", "boolean"]},
                   "instance_index": {"type": "integer", "minimum": 0}}}}}}}


class RequestIdMiddleware:
    """``request.state.request_id`` from a valid ``X-Request-ID`` header, else a fresh UUID (echoed on the answer).

    Pure ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs every request through an
    extra task and stream, which was ~10% of the ingress's CPU under load. Serve's proxy already puts an
    X-Request-ID on every request and echoes it, so the header is only added here when this app runs without it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-request-id"), None)
        request_id = clean_request_id(given)
        scope.setdefault("state", {})["request_id"] = request_id
        if given is not None:
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)


# added first, so it runs inside RequestIdMiddleware (the last added is the outermost): request.state.request_id
api.add_middleware(HotRouteMiddleware)
api.add_middleware(RequestIdMiddleware)


def unwrap(exc: BaseException) -> BaseException:
    """Translate what a DeploymentHandle raises into platform errors (the replica's own error, backpressure)."""
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    from ray.exceptions import RayActorError, RayTaskError
    from ray.serve.exceptions import BackPressureError

    if isinstance(exc, RayTaskError) and isinstance(getattr(exc, "cause", None), BaseException):
        exc = exc.cause
    if isinstance(exc, BackPressureError):
        return Overloaded("the model's queue is full; retry later", retry_after_s=1)
    if isinstance(exc, RayActorError):
        return Unavailable("a model replica is unavailable; retry later", retry_after_s=1)
    return exc


def error_response(exc: BaseException, request_id: str) -> JSONResponse:
    """The only place where exceptions become HTTP answers."""
    exc = unwrap(exc)
    status = http_status_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, MLPlatformError):
        error: dict[str, Any] = {"type": type(exc).__name__, "message": exc.message, "fields": []}
        rows = exc.details.get("errors") if isinstance(exc, InvalidInput) else None
        if rows and all("index" in e for e in rows):  # the row validator's issues: every bad field, with its code
            error["fields"] = [{"field": f"instances[{e['index']}].{e['field']}", "reason": e["message"],
                                "code": e["reason"]} for e in rows]
        elif exc.field:
            error["fields"].append({"field": exc.field, "reason": exc.message})
        if status in (429, 503):
            headers["Retry-After"] = str(int(exc.details.get("retry_after_s", 1)))
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
    else:
        # unexpected: a generic message to the client, the details in the replica's log
        logger.error("request %s failed unexpectedly", request_id, exc_info=exc)
        error = {"type": "InternalError", "message": "internal error", "fields": []}
    if status >= 500 and status != 500:
        logger.warning("request %s answered %d: %s", request_id, status, exc)
    elif status < 500:  # every error answer leaves a trace with its status (the 500s are logged above)
        logger.info("request %s answered %d %s: %s", request_id, status, error["type"], error["message"][:200])
    return JSONResponse({"error": error, "request_id": request_id}, status_code=status, headers=headers)


class ServingAPI:
    """Route bodies; the ingress deployment class inherits this and adds ``@serve.ingress``."""

    def __init__(self, models: dict[str, Any], config: dict[str, Any]) -> None:
        self.cfg = ServingConfig.parse(config)
        self._models = dict(models)  # name -> DeploymentHandle of that model's deployment
        self._colocated: dict[str, Any] = {}
        if self.cfg.colocate_models:  # the models live in this replica; LocalHandle keeps the calls the same
            # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
            from mlplatform.serving.model_server import ModelServer

            for entry in self.cfg.models:
                server = ModelServer(entry.name, config)
                server.apply_ref()
                self._colocated[entry.name] = server
                self._models[entry.name] = LocalHandle(server)
        # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
        from mlplatform.serving.model_server import build_client

        self._client = build_client(self.cfg)
        self._metrics = _Metrics()
        log_cfg = self.cfg.prediction_log
        self._log = None
        if log_cfg.enabled:
            write = (process_writer(config, log_cfg.write_timeout_s) if log_cfg.writer == "process"
                     else self._client.monitoring.log_predictions)
            self._log = PredictionLogBuffer(write, queue_size=log_cfg.queue_size, flush_rows=log_cfg.flush_rows,
                                            flush_interval_s=log_cfg.flush_interval_s,
                                            on_drop=self._metrics.log_dropped)

        self._pii = PiiMask(self.cfg.pii)

        self._auth = TokenCheck(self.cfg.auth) if self.cfg.auth.enabled else None
        self._limiter = RateLimiter(self.cfg.rate_limit) if self.cfg.rate_limit.enabled else None
        self._replica = _replica_id()
        self._shadows: dict[str, ShadowQueue] = {}
        served: list[Any] = [*self.cfg.models, *self.cfg.ensembles]
        self._lookups = {entry.name: OnlineFeatureLookup(entry.online_features, self.cfg.home)
                         for entry in served if entry.online_features}

    def __del__(self) -> None:
        # Serve calls the destructor on graceful shutdown: flush the prediction log before the replica exits.
        log = getattr(self, "_log", None)
        if log is not None:
            log.close(self.cfg.prediction_log.write_timeout_s)
        for server in getattr(self, "_colocated", {}).values():
            server.__del__()

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """``user_config: {"refs": {model: ref}}`` reloads colocated models in place (``serve deploy`` with a new
        ref, as the model deployments' own ``user_config`` does when they are separate)."""
        for name, ref in ((user_config or {}).get("refs") or {}).items():
            server = self._colocated.get(name)
            if server is None:
                raise NotFound(f"model {name!r} is not served inside this ingress", field="refs")
            await server.reconfigure({"ref": ref})

    def check_health(self) -> None:
        for name, server in self._colocated.items():
            if server._model is None:
                raise Unavailable(f"model {name} is not loaded")

    def _lookup(self, name: str) -> OnlineFeatureLookup:
        lookup = self._lookups.get(name)
        if lookup is None:
            raise InvalidInput(f"model {name!r} has no online features configured; send 'instances' instead",
                               field="entity_ids")
        return lookup

    def _handle(self, name: str) -> Any:
        handle = self._models.get(name)
        if handle is None:
            raise NotFound(f"model {name!r} is not served here", field="name")
        return handle

    def _admit(self, request: Request, limit: bool = True) -> None:
        """Auth, then the rate limit (SPEC S6.12), before any parsing, model or store work."""
        token = self._auth.check(request.headers) if self._auth is not None else None
        if self._limiter is not None and limit:
            self._limiter.admit(client_key(request.headers, token, request.client.host if request.client else None,
                                           self.cfg.rate_limit.trusted_proxies))

    def _admit_metadata(self, request: Request) -> None:
        if self.cfg.auth.metadata:
            self._admit(request, limit=False)

    async def _call(self, response: Any, timeout_s: float, what: str) -> Any:
        try:
            return await asyncio.wait_for(_await(response), timeout_s)
        except TimeoutError:
            response.cancel()
            raise Timeout(f"{what} did not answer within {timeout_s:g} s") from None

    async def _call_once_more_if_replica_died(self, call: Any, started: float, what: str) -> Any:
        """A prediction whose replica died under it (killed, OOM) is sent once more, within what is left of the
        deadline: the handle routes it to a live replica. A prediction has no side effect, so a second attempt is
        safe; without it every request in flight on a killed replica failed (chaos (c): up to 1.25 % of requests)."""
        # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
        from ray.exceptions import RayActorError

        try:
            return await self._call(call(), self.cfg.request_timeout_s, what)
        except RayActorError:
            left = self.cfg.request_timeout_s - (time.perf_counter() - started)
            if left <= 0:
                raise
            self._metrics.retry()
            logger.warning("%s: replica died during the call; sending it once more", what)
            return await self._call(call(), left, what)

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.cfg.max_body_bytes:
            raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {self.cfg.max_body_bytes}",
                                  field="body")
        return await request.body()

    # -- routes ------------------------------------------------------------------------------------------------
    async def predict(self, name: str, request: Request, version: str | None = None) -> JSONResponse:
        return await self._respond(name, request, version, self._read_v1, self._render_v1, error_response)

    async def _respond(self, name: str, request: Request, version: str | None, read: Any, render: Any,
                       fail: Any) -> JSONResponse:
        """One predict request in either protocol: ``read`` turns the body into instances, ``render`` the answer
        into the protocol's body, ``fail`` an exception into its error answer; the rest is :meth:`_answer`."""
        started = time.perf_counter()
        request_id = request.state.request_id
        status = 200
        pinned: int | None = None
        try:
            pinned = _parse_version(version)
            answered = await self._answer(name, request, pinned, read, started)
            return render(name, request_id, answered)
        except Exception as exc:
            response = fail(exc, request_id)
            status = response.status_code
            self._log_error(name, request_id, status, exc, started, pinned_version=pinned)
            return response
        finally:
            # tags from the URL only for served names: unknown names would grow the metric without bound
            self._metrics.request(name if name in self._models else "unknown", status,
                                  time.perf_counter() - started)

    async def _answer(self, name: str, request: Request, pinned: int | None, read: Any,
                      started: float) -> _Answered:
        """The one predict path of V1 and V2: auth and rate limit, the body, the rollout router (sticky key, or
        the pinned version), the model deployment (row validator, cache, breaker), the prediction log and the
        shadow copies."""
        request_id = request.state.request_id
        self._admit(request)
        handle = self._handle(name)
        if pinned is not None and any(e.name == name for e in self.cfg.ensembles):
            raise InvalidInput(f"{name!r} is an ensemble: it has no registry versions to pin", field="version")
        parsed, instances, entity_ids, views = await read(name, request, await self._read_body(request))
        key = routing_key(request.headers, instances, request_id, self.cfg.rollout.entity_field)

        def call() -> Any:
            return (handle.predict.remote(instances, routing_key=key, **views) if pinned is None
                    else handle.predict.remote(instances, pinned_version=pinned, **views))

        answer: ModelAnswer = await self._call_once_more_if_replica_died(call, started, f"model {name}")
        latency_ms = (time.perf_counter() - started) * 1000
        self._log_answer(request_id, answer, instances, latency_ms, entity_ids)
        for mirrored in answer.mirror_versions:  # queued only: sent after this response, in batches
            self._mirror(name, handle, request_id, instances, mirrored)
        return _Answered(parsed, answer, entity_ids)

    async def _read_v1(self, name: str, request: Request, raw: bytes) -> tuple[Any, list[dict[str, Any]],
                                                                                list[str | int] | None,
                                                                                dict[str, Any]]:
        payload = parse_json_body(raw, self.cfg.max_body_bytes)
        if isinstance(payload, dict) and "entity_ids" in payload:
            entity_ids = parse_entity_ids(payload, self.cfg.max_instances)
            lookup = self._lookup(name)
            instances = await lookup.instances(entity_ids, parse_request_values(payload, len(entity_ids)))
            # the version answering checks the views (an ensemble's members check their own)
            views = {} if any(e.name == name for e in self.cfg.ensembles) else {"feature_views": lookup.record}
            return None, instances, entity_ids, views
        return None, parse_instances(payload, self.cfg.max_instances), None, {}

    def _render_v1(self, name: str, request_id: str, answered: _Answered) -> JSONResponse:
        answer = answered.answer
        results = answer.results
        body = {"predictions": [r["prediction"] for r in results], **answer.v1_fields(answered.entity_ids),
                "request_id": request_id, "served_by": self._replica, "timestamp": datetime.now(UTC).isoformat()}
        if any(r["probabilities"] is not None for r in results):
            body["probabilities"] = [r["probabilities"] for r in results]
        return JSONResponse(body, headers={"X-Cache": _cache_header(answer)})

    # -- Open Inference Protocol v2 (serving/v2.py translates; the predict path above is shared) -----------------
    async def infer_v2(self, name: str, request: Request, version: str | None = None) -> JSONResponse:
        return await self._respond(name, request, version, self._read_v2, self._render_v2, _v2_error)

    async def _read_v2(self, name: str, request: Request, raw: bytes) -> tuple[Any, list[dict[str, Any]],
                                                                                None, dict[str, Any]]:
        if len(raw) > self.cfg.max_body_bytes:
            raise PayloadTooLarge(f"request body is {len(raw)} bytes; the limit is {self.cfg.max_body_bytes}",
                                  field="body")
        parsed = v2.parse_infer(raw, request.headers, self.cfg.max_body_bytes, self.cfg.max_instances)
        # the model's schema only for a 2-D tensor (its column order): per-feature tensors need no lookup
        schema = (await self._metadata(name)).get("input_schema") if parsed.matrix is not None else None
        return parsed, parsed.instances(schema), None, {}

    def _render_v2(self, name: str, request_id: str, answered: _Answered) -> JSONResponse:
        return JSONResponse(v2.infer_response(name, answered.parsed, answered.answer, request_id),
                            headers={"X-Cache": _cache_header(answered.answer)})

    async def v2_model_metadata(self, name: str, request: Request, version: str | None = None) -> JSONResponse:
        try:
            self._admit_metadata(request)
            return JSONResponse(v2.model_metadata(await self._ready_metadata(name, version)))
        except Exception as exc:
            return _v2_error(exc, request.state.request_id)

    async def v2_model_ready(self, name: str, request: Request, version: str | None = None) -> JSONResponse:
        try:
            self._admit_metadata(request)
            await self._ready_metadata(name, version)
            return JSONResponse({"name": name, "ready": True})
        except Exception as exc:
            return _v2_error(exc, request.state.request_id)

    async def _ready_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        """The metadata of the served model (or of one of its versions); Unavailable (503) until it is ready."""
        pinned = _parse_version(version)
        if pinned is not None:
            self._handle(name)
            if any(e.name == name for e in self.cfg.ensembles):
                raise NotFound(f"{name!r} is an ensemble: it has no registry versions", field="version")
            return await self._call(self._models[name].version_metadata.remote(pinned), METADATA_TIMEOUT_S,
                                    f"model {name}")
        meta = await self._metadata(name)
        if not meta.get("ready"):
            raise Unavailable(f"model {name} is not ready", retry_after_s=5)
        return meta

    async def v2_server_ready(self, request: Request) -> JSONResponse:
        metas = await asyncio.gather(*[self._metadata(n) for n in self._models], return_exceptions=True)
        waiting = [n for n, m in zip(self._models, metas, strict=True) if not (isinstance(m, dict) and m.get("ready"))]
        if waiting:
            return JSONResponse({"ready": False, "error": f"not ready: {', '.join(waiting)}"}, status_code=503,
                                headers={"Retry-After": "5"})
        return JSONResponse({"ready": True})

    def _mirror(self, name: str, handle: Any, request_id: str, instances: list[dict[str, Any]],
                version: int) -> None:
        def done(answer: ModelAnswer | None, error: BaseException | None, latency_ms: float) -> None:
            if error is not None:
                logger.info("shadow copy of %s to version %s failed: %s", request_id, version, unwrap(error))
                cause = unwrap(error)
                self._log_error_row(name, request_id, http_status_for(cause), cause, latency_ms, version, SHADOW)
                return
            assert answer is not None
            self._log_answer(request_id, answer, instances, latency_ms)

        queue = self._shadows.get(name)
        if queue is None:
            rollout = self.cfg.rollout
            queue = self._shadows[name] = ShadowQueue(
                lambda v, batch: _await(handle.predict_shadow.remote(v, batch)),
                max_queued=rollout.shadow_max_inflight, max_batch=self.cfg.batching.max_batch_size,
                timeout_s=rollout.shadow_timeout_s,
                # the name is a served model's (checked before any mirror): the tag set stays bounded
                on_drop=lambda: self._metrics.shadow_dropped(name))
        queue.submit(version, instances, done)

    def _log_answer(self, request_id: str, answer: ModelAnswer, instances: list[dict[str, Any]],
                    latency_ms: float, entity_ids: list[str | int] | None = None) -> None:
        if self._log is None:
            return
        now = datetime.now(UTC)
        variant = answer.logged_variant
        # an ensemble has no registry version of its own: logged as version 0 (its members are in the response)
        version = answer.answered_version or 0
        pii = self._pii  # personal fields never reach the store in the clear (SPEC S6.12)
        self._log.add([PredictionRecord(
            request_id=request_id, model_name=answer.model_name, version=version,
            features=pii.features(instances[i]), prediction=r["prediction"], confidence=r["confidence"],
            latency_ms=latency_ms, timestamp=now, instance_index=i, variant=variant,
            probabilities=r.get("probabilities"),
            entity_id=None if entity_ids is None else pii.entity(str(entity_ids[i])))
            for i, r in enumerate(answer.results)])

    def _log_error(self, name: str, request_id: str, status: int, exc: BaseException, started: float,
                   pinned_version: int | None) -> None:
        """An error answer leaves a row in the prediction log with its status (SPEC S6.10), under the model name
        only when that model is served here (an unknown name from the URL must not grow the log's key space).
        Refusals before admission (401/403 auth, 429 rate limit) are not logged: an unauthenticated caller must
        not be able to write into the store, and the request metric counts them by status anyway."""
        if status in (401, 403, 429):
            return
        self._log_error_row(name if name in self._models else "unknown", request_id, status, unwrap(exc),
                            (time.perf_counter() - started) * 1000, pinned_version or 0, None)

    def _log_error_row(self, name: str, request_id: str, status: int, exc: BaseException, latency_ms: float,
                       version: int, variant: str | None) -> None:
        if self._log is None:
            return
        # the same text the client got: the platform's own message, never an unexpected exception's details
        reason = (f"{type(exc).__name__}: {exc.message}" if isinstance(exc, MLPlatformError)
                  else "InternalError: internal error")
        self._log.add([PredictionRecord(
            request_id=request_id, model_name=name, version=version, features={}, prediction=None, confidence=None,
            latency_ms=latency_ms, timestamp=datetime.now(UTC), variant=variant, status=status,
            error=reason[:500])])

    async def list_models(self, request: Request) -> JSONResponse:
        try:
            self._admit_metadata(request)
            metas = await asyncio.gather(*[self._metadata(n) for n in self._models])
            return JSONResponse({"models": metas})
        except Exception as exc:
            return error_response(exc, request.state.request_id)

    async def model_metadata(self, name: str, request: Request) -> JSONResponse:
        try:
            self._admit_metadata(request)
            meta = await self._metadata(name)
            if not meta.get("ready"):
                raise Unavailable(f"model {name} is not ready", retry_after_s=5)
            return JSONResponse(meta)
        except Exception as exc:
            return error_response(exc, request.state.request_id)

    async def _metadata(self, name: str) -> dict[str, Any]:
        meta = await self._call(self._handle(name).metadata.remote(), METADATA_TIMEOUT_S, f"model {name}")
        return {k: v for k, v in meta.items() if k not in ("requested_ref", "last_error")} | {
            "requested_ref": meta.get("requested_ref"), "refused": meta.get("last_error")}

    async def healthz(self, request: Request) -> JSONResponse:
        try:
            metas = await asyncio.gather(*[self._metadata(n) for n in self._models], return_exceptions=True)
        except Exception as exc:
            return error_response(exc, request.state.request_id)
        ready = {n: isinstance(m, dict) and bool(m.get("ready")) for n, m in zip(self._models, metas, strict=True)}
        body = {"status": "ok" if all(ready.values()) else "degraded", "models": ready,
                "prediction_log": self._log.stats() if self._log else None,
                "shadow": {n: q.stats() for n, q in self._shadows.items()},
                # a replica serving another champion than the registry names says so, and why (SPEC S7)
                "convergence": {n: m.get("convergence") for n, m in zip(self._models, metas, strict=True)
                                if isinstance(m, dict) and m.get("convergence")}}
        return JSONResponse(body, status_code=200 if all(ready.values()) else 503,
                            headers=None if all(ready.values()) else {"Retry-After": "5"})

    async def feedback(self, request: Request) -> JSONResponse:
        request_id = request.state.request_id
        try:
            self._admit(request)  # a label is a write: the same token and budget as predict
            payload = parse_json_body(await self._read_body(request), self.cfg.max_body_bytes)
            target, label, index = _parse_feedback(payload, self.cfg.max_instances)
            stored = await asyncio.wait_for(asyncio.to_thread(
                self._client.monitoring.add_label, label, request_id=target, instance_index=index), 5.0)
        except TimeoutError:
            return error_response(Timeout("the store did not answer within 5 s"), request_id)
        except Exception as exc:
            return error_response(exc, request_id)
        return JSONResponse({"request_id": target, "instance_index": index, "stored": stored})


@dataclass
class _Answered:
    """What the shared predict path hands the protocol that renders it."""

    parsed: Any  # the protocol's parsed request (V2's outputs and id), None for V1
    answer: ModelAnswer
    entity_ids: list[str | int] | None


def _cache_header(answer: ModelAnswer) -> str:
    hits = sum(answer.cached)
    return "hit" if hits == len(answer.results) else "miss" if hits == 0 else "partial"


def _v2_error(exc: BaseException, request_id: str) -> JSONResponse:
    return v2.error(error_response(exc, request_id))


async def _await(response: Any) -> Any:
    return await response


def _parse_version(version: str | None) -> int | None:
    if version is None:
        return None
    # ASCII digits only (str.isdigit accepts other scripts' digits), bounded before any store query
    if not re.fullmatch(r"[0-9]{1,10}", version) or not 1 <= int(version) <= MAX_VERSION:
        raise InvalidInput(f"version must be an integer from 1 to {MAX_VERSION}, got {version[:40]!r}",
                           field="version")
    return int(version)


def _parse_feedback(payload: Any, max_instances: int) -> tuple[str, Any, int]:
    if not isinstance(payload, dict):
        raise InvalidInput("feedback body must be a JSON object", field="body")
    target = payload.get("request_id")
    if not isinstance(target, str) or not REQUEST_ID.match(target):
        raise InvalidInput("request_id must be 1-128 characters of [A-Za-z0-9._-]", field="request_id")
    if "label" not in payload:
        raise InvalidInput("'label' is required", field="label")
    label = payload["label"]
    if not isinstance(label, str | int | float | bool) or (isinstance(label, float) and not math.isfinite(label)):
        raise InvalidInput("label must be a string, number or boolean", field="label")
    index = payload.get("instance_index", 0)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < max_instances:
        # a request holds at most max_instances rows: a larger index names nothing (and 10^30 overflowed SQL)
        raise InvalidInput(f"instance_index must be an integer from 0 to {max_instances - 1}",
                           field="instance_index")
    return target, label, index


def _replica_id() -> str:
    try:
        # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
        from ray import serve

        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside a replica (unit use)
        return "local"


class _Metrics:
    def __init__(self) -> None:
        # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
        from ray.util import metrics

        self._requests = metrics.Counter("mlplatform_serve_requests", "Predict requests by model and status.",
                                         tag_keys=("model", "status"))
        self._log_dropped = metrics.Counter("mlplatform_prediction_log_dropped_rows",
                                            "Prediction-log rows lost (queue full, store down at shutdown).")
        self._retries = metrics.Counter("mlplatform_serve_retries",
                                        "Predictions sent once more because their model replica died.")
        self._shadow_dropped = metrics.Counter("mlplatform_serve_shadow_dropped",
                                               "Shadow copies dropped because the shadow queue was full.",
                                               tag_keys=("model",))
        self._latency = metrics.Histogram("mlplatform_serve_latency_ms", "Predict latency measured in the handler.",
                                          boundaries=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000],
                                          tag_keys=("model",))

    def retry(self) -> None:
        self._retries.inc()

    def shadow_dropped(self, model: str) -> None:
        self._shadow_dropped.inc(tags={"model": model})

    def log_dropped(self, rows: int) -> None:
        self._log_dropped.inc(rows)

    def request(self, model: str, status: int, seconds: float) -> None:
        self._requests.inc(tags={"model": model, "status": str(status)})
        self._latency.observe(seconds * 1000, tags={"model": model})
