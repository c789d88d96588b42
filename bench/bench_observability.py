"""Per-request cost of the observability layer, in process (no HTTP): metrics, tracing, logging
context. ``python -m bench.bench_observability [--multiprocess]``.

``--multiprocess`` sets ``PROMETHEUS_MULTIPROC_DIR`` (a temp folder) before prometheus_client is
imported, as ``vop serve`` does, so the unbatched comparison writes to mmap'd files like a worker.
"""

# Imports after the --multiprocess switch: prometheus_client reads the variable at import.
# ruff: noqa: PLC0415
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable

N = 200_000


def per_call_us(fn: Callable[[], None], n: int = N) -> float:
    for _ in range(1000):
        fn()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--multiprocess", action="store_true", help="prometheus_client multi-process mode")
    args = parser.parse_args(argv)
    if args.multiprocess:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="vop-bench-")

    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from prometheus_client import CollectorRegistry

    from app.observability.logging import bind_request
    from app.observability.metrics import Metrics
    from app.observability.tracing import Tracer
    from matching.model import Outcome

    route = "/vop/v1/payee-verifications"
    m = Metrics(routes=(route,), registry=CollectorRegistry())
    outcome = Outcome("name", "MTCH", "exact")
    bulk = [outcome] * 10_000

    def metrics_request() -> None:
        m.request_started()
        m.observe_outcome(outcome)
        m.request_finished(route, 200, 0.0012)

    hist = m.request_duration.labels(route, "200")
    checks = m.checks_total.labels("name", "MTCH", "exact")

    def direct_prometheus() -> None:
        hist.observe(0.0012)
        checks.inc()

    class Null(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    off = Tracer.from_env({})
    on = Tracer.with_exporter(Null())
    headers = [
        (b"content-type", b"application/json"),
        (b"traceparent", b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"),
    ]
    attrs = {"http.route": route}

    def traced(tracer: Tracer) -> Callable[[], None]:
        def run() -> None:
            with tracer.span("POST " + route, headers, attrs) as span:
                span.set_attributes({"vop.result.code": "MTCH", "vop.index.version": 3})

        return run

    def logging_context() -> None:
        bind_request("0f8fad5b-d9cb-469f-a165-70867728950e", "")

    rows = [
        ("metrics per request (batched: in-flight, outcome, latency)", per_call_us(metrics_request)),
        ("  for comparison: prometheus_client direct (histogram + counter)", per_call_us(direct_prometheus)),
        (
            "metrics observe_outcomes, 10,000-item bulk (per request)",
            per_call_us(lambda: m.observe_outcomes(bulk), 200),
        ),
        ("tracing off (shared no-op span)", per_call_us(traced(off))),
        ("tracing on (SDK span, W3C parent, null exporter)", per_call_us(traced(on), 50_000)),
        ("log context (bind_request)", per_call_us(logging_context)),
        ("flush of pending counters (per flush, not per request)", per_call_us(m.flush, 2000)),
    ]
    mode = "multi-process" if args.multiprocess else "single-process"
    print(f"observability per-request cost ({mode}, Python {sys.version.split()[0]}):")
    for name, us in rows:
        print(f"  {name:<66} {us:8.2f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
