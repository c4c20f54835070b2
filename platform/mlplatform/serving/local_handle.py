"""A DeploymentHandle look-alike for a model served inside the ingress replica (``colocate_models``).

The ingress calls models as ``handle.<method>.remote(...)`` and awaits the response (cancelling it on timeout);
:class:`LocalHandle` gives the same calls on an in-process :class:`~mlplatform.serving.model_server.ModelServer`,
so one code path serves both layouts. Sync methods answer at once; async ones run as tasks on the ingress's loop.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any


class LocalResponse:
    """Awaitable and cancellable, like a ``DeploymentResponse``."""

    def __init__(self, result: Any) -> None:
        if inspect.isawaitable(result):
            self._future: asyncio.Future[Any] = asyncio.ensure_future(result)
        else:
            self._future = asyncio.get_running_loop().create_future()
            self._future.set_result(result)

    def __await__(self) -> Any:
        return self._future.__await__()

    def cancel(self) -> None:
        self._future.cancel()


class _LocalMethod:
    def __init__(self, method: Any) -> None:
        self._method = method

    def remote(self, *args: Any, **kwargs: Any) -> LocalResponse:
        try:
            return LocalResponse(self._method(*args, **kwargs))
        except Exception as exc:  # raised before any await: deliver it through the response, as Serve does
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return LocalResponse(failed)


class LocalHandle:
    def __init__(self, server: Any) -> None:
        self.server = server

    def __getattr__(self, name: str) -> _LocalMethod:
        return _LocalMethod(getattr(self.server, name))
