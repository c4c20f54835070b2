"""The console as a Ray Serve application (``import_path: mlplatform.console.serve:build_app``).

``mlplatform serve up`` deploys it at route prefix ``/console`` beside the model endpoint. The FastAPI app is built
inside the replica (``__serve_build_asgi_app__``), so the store connection opens there, not in the driver. It asks
for no CPU: it only renders pages and must not take a slot the models need on a 2-core machine.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from mlplatform.config.base import config_from_dict
from mlplatform.console.app import ConsoleConfig, create_app

ROUTE_PREFIX = "/console"
APP_NAME = "console"


@serve.deployment(name="Console", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=32)
@serve.ingress()
class ConsoleDeployment:
    def __init__(self, config: dict[str, Any]) -> None:
        self._config = ConsoleConfig.model_validate(config)

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self._config)


def build_app(args: dict[str, Any]) -> Application:
    """Serve calls this with the application's ``args`` (a :class:`ConsoleConfig` as a plain dict)."""
    # a bad config fails the deploy (naming the field), not the first page
    config = config_from_dict(args or {}, ConsoleConfig, "console app args")
    return ConsoleDeployment.bind(config.model_dump(mode="json"))  # type: ignore[attr-defined]  # @serve.deployment adds bind
