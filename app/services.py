"""The per-process collaborators the HTTP routes use, built once by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

from app.backpressure import LoadGate
from app.observability.metrics import Metrics
from app.observability.tracing import Tracer
from app.security.gate import SecurityGate
from app.service import Verifier
from app.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    verifier: Verifier
    load: LoadGate
    security: SecurityGate
    metrics: Metrics
    tracer: Tracer
