"""The hot-route path (serving/hot_routes.py) matches exactly the requests FastAPI's own routing gives the predict
and infer routes, hands them to the ingress instance's handler, and leaves everything else to FastAPI."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mlplatform.serving.hot_routes import HOT_ROUTES, HotRouteMiddleware


class Servable:
    """Stands in for the ingress instance: answers like the FastAPI routes below, marked as the hot path's."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def predict(self, name: str, request: Request, version: str | None = None) -> JSONResponse:
        self.bodies.append(await request.body())
        return JSONResponse({"via": "hot", "handler": "predict", "name": name, "version": version,
                             "request_id": request.state.request_id})

    async def infer_v2(self, name: str, request: Request, version: str | None = None) -> JSONResponse:
        return JSONResponse({"via": "hot", "handler": "infer_v2", "name": name, "version": version,
                             "request_id": request.state.request_id})


class SetRequestId:
    """Outermost, like the ingress's RequestIdMiddleware: the handlers read request.state.request_id."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope.setdefault("state", {})["request_id"] = "rid-1"
        await self.app(scope, receive, send)


def build(servable: Any | None, hot: bool = True) -> FastAPI:
    """The four routes declared on FastAPI as the ingress declares them, with the hot path in front (or not)."""
    app = FastAPI()
    handlers = dict(HOT_ROUTES)
    for path, handler in HOT_ROUTES:
        def route(name: str, request: Request, version: str | None = None, _handler: str = handler) -> JSONResponse:
            return JSONResponse({"via": "fastapi", "handler": _handler, "name": name, "version": version,
                                 "request_id": request.state.request_id})
        app.add_api_route(path, route, methods=["POST"])
    app.add_api_route("/v1/models/{name}", lambda name: {"metadata": name}, methods=["GET"])
    app.add_api_route("/v1/feedback", lambda: {"feedback": True}, methods=["POST"])
    assert set(handlers.values()) == {"predict", "infer_v2"}
    if hot:
        app.add_middleware(HotRouteMiddleware, servable=lambda: servable)
    app.add_middleware(SetRequestId)
    return app


def post(app: Any, path: str, method: str = "POST", root_path: str = "") -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, root_path=root_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.request(method, root_path + path, content=b'{"instances": []}')
    return asyncio.run(go())


PATHS = [
    "/v1/models/churn:predict", "/v1/models/churn/versions/3:predict", "/v2/models/churn/infer",
    "/v2/models/churn/versions/7/infer", "/v1/models/a:b:predict", "/v1/models/churn%20x:predict",
    "/v1/models/churn:predict/", "/v1/models/:predict", "/v1/models/churn", "/v1/feedback",
    "/v2/models/churn/versions//infer", "/v1/models/churn/versions/3", "/v3/models/churn:predict",
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_the_hot_path_answers_exactly_what_fastapi_routes_to_the_predict_and_infer_handlers(
        path: str, method: str) -> None:
    plain = post(build(None, hot=False), path, method)
    hot = post(build(Servable()), path, method)
    assert hot.status_code == plain.status_code, (hot.text, plain.text)
    if plain.status_code == 200 and "handler" in plain.json():
        assert hot.json() == {**plain.json(), "via": "hot"}  # same handler, name, version and request id
    else:
        assert hot.content == plain.content


def test_a_prefixed_app_matches_below_its_root_path_as_serve_mounts_it() -> None:
    servable = Servable()
    answer = post(build(servable), "/v1/models/churn/versions/2:predict", root_path="/models")
    assert answer.json() == {"via": "hot", "handler": "predict", "name": "churn", "version": "2",
                             "request_id": "rid-1"}
    assert servable.bodies == [b'{"instances": []}']  # the handler reads the body the client sent


@pytest.mark.parametrize("servable", [None, object()], ids=["outside-a-replica", "not-an-ingress"])
def test_without_an_ingress_instance_fastapi_answers(servable: Any) -> None:
    answer = post(build(servable), "/v1/models/churn:predict")
    assert answer.json()["via"] == "fastapi"
