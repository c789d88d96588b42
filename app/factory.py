"""``create_app(settings)``: the explicit app factory. Nothing happens at import time."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

from litestar import Litestar, get

from app.asgi_io import hot_route
from app.backpressure import LoadGate
from app.compiled import compiled_status
from app.index_holder import IndexFeed, IndexHolder
from app.observability.metrics import Metrics, metrics_app_route
from app.observability.readiness import Readiness
from app.observability.tracing import Tracer
from app.openapi import build_openapi
from app.problems import exception_handlers
from app.routes.admin import admin_index, admin_reload
from app.routes.bulk import PATH as BULK_PATH
from app.routes.bulk import bulk_handler
from app.routes.health import healthz, problem_type, readyz
from app.routes.verification import PATH as VERIFY_PATH
from app.routes.verification import verification_handler
from app.security.gate import SecurityGate
from app.security.settings import SecuritySettings
from app.service import Verifier
from app.services import Services
from app.settings import Settings
from matching.index import AccountIndex

log = logging.getLogger("vop.server")


def _staleness(feed: IndexFeed) -> Callable[[], float | None]:
    def staleness() -> float | None:
        status = feed.status()
        # Never confirmed current (e.g. started from the local cache while Redis is down): stale.
        return status.staleness_s if status.staleness_s is not None else (math.inf if status.stale else None)

    return staleness


def _report_build(metrics: Metrics) -> None:
    """Log, and export as a gauge, whether this worker runs the compiled build (app.compiled)."""
    status = compiled_status()
    interpreted = sum(not compiled for compiled in status.values())
    metrics.interpreted_modules.set(interpreted)
    if interpreted:
        log.info(
            "hot path from source: %d of %d modules interpreted (the compiled build: make compiled, "
            "or the image, built with VOP_MYPYC=1)",
            interpreted,
            len(status),
        )
    else:
        log.info("hot path compiled: %d modules (mypyc)", len(status))


def create_app(
    settings: Settings,
    *,
    index: AccountIndex | None = None,
    loader: Callable[[], AccountIndex] | None = None,
    security: SecuritySettings | None = None,
    feed: IndexFeed | None = None,
    tracer: Tracer | None = None,
) -> Litestar:
    """Build the ASGI app. Give ``index`` (ready at once), ``loader`` (run in the background at
    start-up; ``/readyz`` is 503 until it finishes) or ``feed`` (started at start-up, hands over
    every new index version, stopped at shutdown). ``security`` defaults to auth and audit on,
    with the local dev key under the data dir (loopback binds only); ``tracer`` to the OTEL_*
    environment (off unless configured)."""
    security = security or SecuritySettings(host=settings.host, data_dir=settings.data_dir)
    guard = SecurityGate.from_settings(security)
    tracer = tracer or Tracer.from_env()
    holder = IndexHolder(feed)
    if index is not None:
        holder.swap(index)
    verifier = Verifier(holder, settings.psp_bics, stale_policy=settings.stale_policy)
    gate = LoadGate(settings.max_in_flight)
    metrics = Metrics(routes=(VERIFY_PATH, BULK_PATH, "/readyz", "/healthz", "/metrics"))
    max_staleness = float(getattr(getattr(feed, "settings", None), "max_staleness_s", 30.0))
    readiness = Readiness(
        lambda: holder.current,
        error=lambda: holder.error,
        staleness=_staleness(feed) if feed is not None else None,
        stale_after_s=max_staleness,
        unready_after_s=max_staleness if settings.stale_policy == "unready" else None,
    )
    metrics.track_index(lambda: holder.current, feed.status if feed is not None else None)
    metrics.track_load(lambda: gate.in_flight, lambda: gate.shed)
    metrics.track_readiness(readiness)
    metrics.track_audit(guard.metrics)
    for breaker in guard.breakers():
        metrics.track_breaker(breaker)
    document = build_openapi()
    services = Services(settings, verifier, gate, guard, metrics, tracer)
    verify_handler, bulk = verification_handler(services), bulk_handler(services)

    @get("/schema/openapi.json", include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        return document

    def start() -> None:
        # Lifespan start-up runs inside the worker's event loop: audit shipping moves onto it.
        guard.attach(asyncio.get_running_loop())
        metrics.start()
        _report_build(metrics)
        if feed is not None:
            feed.start(holder.swap)
        elif loader is not None and holder.current is None:
            holder.load_in_background(loader)

    async def stop() -> None:
        # Granian stops accepting and finishes in-flight requests before lifespan shutdown runs,
        # so by now nothing new arrives: flush the audit trail, metrics and spans, stop the feed.
        readiness.mark_draining()
        if feed is not None:
            feed.stop()
        await guard.aclose()
        metrics.stop()
        tracer.shutdown()

    app = Litestar(
        route_handlers=[
            hot_route(VERIFY_PATH, "verify_payee", verify_handler),
            hot_route(BULK_PATH, "verify_payee_bulk", bulk),
            healthz,
            readyz,
            problem_type,
            admin_index,
            admin_reload,
            metrics_app_route(metrics),
            openapi,
        ],
        exception_handlers=exception_handlers(),
        on_startup=[start],
        on_shutdown=[stop],
        openapi_config=None,
        request_max_body_size=settings.max_body_bytes,
        logging_config=None,  # logging is configured once per process (app.observability.logging)
        debug=False,
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.verifier = verifier
    app.state.load_gate = gate
    app.state.security = guard
    app.state.metrics = metrics
    app.state.tracer = tracer
    app.state.readiness = readiness
    # The hot routes' handlers, served straight from the server by app.fastlane / app.rsgi.
    app.state.hot_routes = {VERIFY_PATH: verify_handler, BULK_PATH: bulk}
    return app
