"""``create_app(settings)``: the explicit app factory. Nothing happens at import time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Litestar, get

from app.backpressure import LoadGate
from app.index_holder import IndexHolder
from app.openapi import build_openapi
from app.problems import exception_handlers
from app.routes.bulk import bulk_route
from app.routes.health import healthz, problem_type, readyz
from app.routes.verification import verification_route
from app.security.gate import SecurityGate
from app.security.settings import SecuritySettings
from app.service import Verifier
from app.settings import Settings
from matching.index import AccountIndex


def create_app(
    settings: Settings,
    index: AccountIndex | None = None,
    loader: Callable[[], AccountIndex] | None = None,
    security: SecuritySettings | None = None,
) -> Litestar:
    """Build the ASGI app. Give ``index`` (ready at once) or ``loader`` (run in the background
    at start-up; ``/readyz`` is 503 until it finishes). ``security`` defaults to auth and audit
    on, with the local dev key under the data dir (loopback binds only)."""
    security = security or SecuritySettings(host=settings.host, data_dir=settings.data_dir)
    guard = SecurityGate.from_settings(security)
    holder = IndexHolder()
    if index is not None:
        holder.swap(index)
    verifier = Verifier(holder, settings.psp_bics)
    gate = LoadGate(settings.max_in_flight)
    document = build_openapi()

    @get("/schema/openapi.json", include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        return document

    def start_loading() -> None:
        if loader is not None and holder.current is None:
            holder.load_in_background(loader)

    app = Litestar(
        route_handlers=[
            verification_route(settings, verifier, gate, guard),
            bulk_route(settings, verifier, gate, guard),
            healthz,
            readyz,
            problem_type,
            openapi,
        ],
        exception_handlers=exception_handlers(),
        on_startup=[start_loading],
        on_shutdown=[guard.close],
        openapi_config=None,
        request_max_body_size=settings.max_body_bytes,
        debug=False,
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.verifier = verifier
    app.state.load_gate = gate
    app.state.security = guard
    return app
