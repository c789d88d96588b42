"""The RSGI app granian serves (``VOP_INTERFACE=rsgi``): the two verification routes natively over
RSGI, everything else (health, metrics, admin, docs) through the Litestar app behind an ASGI
bridge, and Litestar's lifespan driven from ``__rsgi_init__`` / ``__rsgi_del__``.

The hot routes run the same handlers as under ASGI (app.fastlane); only the I/O differs
(app.rsgi_io against app.asgi_io). Measured in bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping
from typing import Any

from granian._granian import RSGIHTTPProtocol as HTTPProtocol
from granian.rsgi import Scope
from litestar import Litestar

from app.asgi import build_from_env
from app.exchange import Handler
from app.lifespan import Lifespan, LifespanError
from app.rsgi_bridge import AsgiBridge
from app.rsgi_io import RSGIRoute, rsgi_route

log = logging.getLogger("vop.server")


class RsgiApp:
    def __init__(self, app: Litestar) -> None:
        self.app = app
        hot: Mapping[str, Handler] = app.state.hot_routes
        self._routes: dict[str, RSGIRoute] = {path: rsgi_route(handler) for path, handler in hot.items()}
        self._lifespan = Lifespan(app)
        self._other = AsgiBridge(app, self._lifespan.state)

    @property
    def state(self) -> Any:
        return self.app.state

    async def __rsgi__(self, scope: Scope, protocol: HTTPProtocol) -> None:
        if scope.proto != "http":  # no WebSocket routes: refuse the upgrade
            protocol.close(403)  # type: ignore[attr-defined]
            return
        route = self._routes.get(scope.path)
        if route is not None:
            await route(scope, protocol)
            return
        await self._other(scope, protocol)

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.run_until_complete(self._lifespan.startup())
        except LifespanError as exc:
            # As granian does for a failed ASGI lifespan startup: the worker exits (and is respawned).
            log.error("start-up failed: %s", exc)
            sys.exit(1)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.run_until_complete(self._lifespan.shutdown())
        except LifespanError as exc:
            log.error("shutdown failed: %s", exc)


def app_from_env() -> RsgiApp:
    """Granian's RSGI target (factory): builds the app in each worker process."""
    return RsgiApp(build_from_env())
