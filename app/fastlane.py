"""The ASGI app granian serves: the two verification routes straight from the scope, everything
else (health, metrics, admin, docs, lifespan) through Litestar.

Measured in-process over the 10,000-probe mix on the 1M index (``python -m bench.bench_inprocess``,
bench/RESULTS.md): the same ``@asgi`` handler costs ~6-10 µs more per request when reached
through Litestar's app and router (scope state, router lookup, exception middleware) than when
called directly — a fifth of the whole check. Both paths run the very same handler function;
Litestar still registers it, so routing, 404/405 and tests through ``TestClient(create_app(...))``
see one implementation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from app.asgi_io import asgi_route
from app.exchange import Handler


class FastLane:
    def __init__(self, app: Litestar, routes: Mapping[str, ASGIApp]) -> None:
        self.app = app
        self._routes = dict(routes)

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            handler = self._routes.get(scope["path"])
            if handler is not None:
                await handler(scope, receive, send)
                return
        await self.app(scope, receive, send)


def fast_lane(app: Litestar) -> FastLane:
    """Wrap an app built by ``create_app`` (its hot handlers are in ``app.state.hot_routes``)."""
    hot: Mapping[str, Handler] = app.state.hot_routes
    return FastLane(app, {path: asgi_route(handler) for path, handler in hot.items()})
