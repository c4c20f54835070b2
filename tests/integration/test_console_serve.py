"""The console as a Serve application beside the model endpoint (issue 21): `serve up` adds it at /console, and
the deployed replica renders the store's values with links under its route prefix."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration._console_scenario import MODEL, seed


def test_serve_up_document_adds_the_console_beside_the_models() -> None:
    from mlplatform.serving import deploy

    source = {"http_options": {"port": 8123}, "applications": [{
        "name": "models", "route_prefix": "/", "import_path": "serve_apps.model_app:build_app",
        "args": {"models": [{"name": MODEL, "ref": f"{MODEL}@champion"}],
                 "auth": {"enabled": True, "token_secret": "MY_TOKEN"}}}]}
    plain = deploy.prepare(source, store_url="sqlite:////tmp/s.db", home="/tmp/h")
    assert deploy.console_url(plain) is None and len(plain["applications"]) == 1
    document = deploy.prepare(source, store_url="sqlite:////tmp/s.db", home="/tmp/h", console=True)
    console = document["applications"][1]
    assert console["route_prefix"] == "/console" and console["import_path"] == deploy.CONSOLE_IMPORT_PATH
    assert console["args"]["store_url"] == "sqlite:////tmp/s.db" and console["args"]["home"] == "/tmp/h"
    assert console["args"]["auth"] == {"enabled": True, "token_secret": "MY_TOKEN"}  # the serving token
    assert deploy.console_url(document) == "http://127.0.0.1:8123/console/"
    assert deploy.endpoint(document) == "http://127.0.0.1:8123"  # the model endpoint is still the first app


@pytest.mark.ray
def test_console_renders_under_serve(serve_instance: str, client: Any) -> None:
    from ray import serve

    from mlplatform.console.serve import build_app

    seed(client)
    serve.run(build_app({"store_url": str(client.engine.url)}), name="console-test", route_prefix="/console-test")
    try:
        with httpx.Client(timeout=30) as http:
            page = http.get(f"{serve_instance}/console-test/models")
            assert page.status_code == 200
            assert "accuracy=0.8500" in page.text and f'href="/console-test/models/{MODEL}"' in page.text
            assert http.get(f"{serve_instance}/console-test/models/{MODEL}/rollout").status_code == 200
            root = http.get(f"{serve_instance}/console-test/", follow_redirects=False)
            assert root.status_code == 303 and root.headers["location"] == "/console-test/models"
    finally:
        serve.delete("console-test")
