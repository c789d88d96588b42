"""``create_app(settings)``: the explicit app factory. Nothing happens at import time."""

from __future__ import annotations

from collections.abc import Callable

from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from app.index_holder import IndexHolder
from app.problems import exception_handlers
from app.routes.health import healthz, problem_type, readyz
from app.routes.verification import verify_payee
from app.service import Verifier
from app.settings import Settings
from matching.index import AccountIndex


def create_app(
    settings: Settings,
    index: AccountIndex | None = None,
    loader: Callable[[], AccountIndex] | None = None,
) -> Litestar:
    """Build the ASGI app. Give ``index`` (ready at once) or ``loader`` (run in the background
    at start-up; ``/readyz`` is 503 until it finishes)."""
    holder = IndexHolder()
    if index is not None:
        holder.swap(index)

    def start_loading() -> None:
        if loader is not None and holder.current is None:
            holder.load_in_background(loader)

    app = Litestar(
        route_handlers=[verify_payee, healthz, readyz, problem_type],
        exception_handlers=exception_handlers(),
        on_startup=[start_loading],
        openapi_config=OpenAPIConfig(
            title="Verification of Payee responder",
            version="1.1.1",
            description=(
                "EPC VoP inter-PSP API (responding PSP). "
                "Errors are RFC 9457 problem JSON with a scheme `code`."
            ),
            path="/schema",
        ),
        request_max_body_size=settings.max_body_bytes,
        debug=False,
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.verifier = Verifier(holder, settings.psp_bics)
    return app
