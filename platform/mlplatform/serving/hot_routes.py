"""The predict and infer routes answered straight from the ASGI scope, before FastAPI's routing (issue 19).

FastAPI solves every route's dependencies per request, and on a Serve class-based ingress that includes resolving
``self`` through a dependency. On the direct-ingress port that cost about a fifth of the ingress's throughput
(measured at c=32, two runs each way: 1,480-1,670 req/s through FastAPI, 1,830-2,060 through this path). The hot
routes are matched here with Starlette's own :class:`~starlette.routing.Route` (the matching FastAPI's routes use,
so a path matches here exactly when it would match there) and handed to the ingress instance's handler, the same
one the FastAPI route calls. Every other request, and any request outside a Serve replica, goes on to FastAPI.
The routes stay declared on the FastAPI app (:mod:`mlplatform.serving.app` uses the paths below), so
``/openapi.json`` describes them and they answer wherever this path does not engage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import Match, Route

PREDICT = "/v1/models/{name}:predict"
PREDICT_VERSION = "/v1/models/{name}/versions/{version}:predict"
INFER = "/v2/models/{name}/infer"
INFER_VERSION = "/v2/models/{name}/versions/{version}/infer"
# path -> the ingress method answering it: ``await method(name, request, version=...)`` returns a Response
HOT_ROUTES: tuple[tuple[str, str], ...] = (
    (PREDICT, "predict"), (PREDICT_VERSION, "predict"), (INFER, "infer_v2"), (INFER_VERSION, "infer_v2"))


def _matching_only(request: Request) -> None:
    raise AssertionError("the hot routes only match paths; the ingress instance answers")


def replica_servable() -> Any:
    """The ingress instance of the Serve replica this process runs (what Serve's class-based routes resolve
    ``self`` to), or None outside a replica."""
    # heavy: Ray takes seconds to import; only a Ray job, Tune or Serve path pays for it
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        return serve.get_replica_context().servable_object
    except RayServeException:
        return None


class HotRouteMiddleware:
    """Pure ASGI: a POST to one of :data:`HOT_ROUTES` goes to the servable's handler directly; anything else, or
    no servable with that handler, goes on to the wrapped app. ``servable`` finds the instance (default: the Serve
    replica's); a replica keeps one servable for its life, so the first one found is kept."""

    def __init__(self, app: Any, servable: Callable[[], Any] = replica_servable,
                 routes: tuple[tuple[str, str], ...] = HOT_ROUTES) -> None:
        self.app = app
        self._find_servable = servable
        self._servable: Any = None
        self._routes = [(Route(path, _matching_only, methods=["POST"]), handler) for path, handler in routes]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for route, handler in self._routes:
                match, child_scope = route.matches(scope)
                if match is not Match.FULL:
                    continue
                answer = getattr(self._servable_now(), handler, None)
                if answer is None:
                    break
                scope.update(child_scope)  # as Starlette's router does: request.path_params
                params = child_scope["path_params"]
                response = await answer(params["name"], Request(scope, receive), version=params.get("version"))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _servable_now(self) -> Any:
        if self._servable is None:
            self._servable = self._find_servable()
        return self._servable
