"""Tracing: off by default (shared no-op span), spans reach an exporter with W3C parents and
no personal data, and the OTEL_* variables are honoured."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import sampling
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.observability.tracing import NOOP_SPAN, Tracer, TracingConfigError, _sampler

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def test_off_by_default_is_a_shared_noop() -> None:
    for env in ({}, {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"},
                {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}):  # fmt: skip
        tracer = Tracer.from_env(env)
        assert not tracer.enabled
        with tracer.span("POST /x", [(b"traceparent", PARENT.encode())]) as span:
            span.set_attributes({"a": 1})
            assert span is NOOP_SPAN
            assert span.trace_id == ""
        tracer.shutdown()


def test_otlp_exporter_from_env() -> None:
    tracer = Tracer.from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SERVICE_NAME": "vop-t"}
    )
    assert tracer.enabled
    assert tracer._provider is not None
    assert tracer._provider.resource.attributes["service.name"] == "vop-t"
    tracer._provider.shutdown()  # nothing was recorded: no export attempt


def test_span_per_request_with_w3c_parent_and_attributes() -> None:
    exporter = InMemorySpanExporter()
    tracer = Tracer.with_exporter(exporter)
    headers = [(b"content-type", b"application/json"), (b"traceparent", PARENT.encode())]
    with tracer.span("POST /vop/v1/payee-verifications", headers, {"http.route": "/vop"}) as span:
        assert span.trace_id == TRACE_ID
        span.set_attributes({"vop.index.version": 3, "vop.result.code": "MTCH"})
        span.set_attribute("http.response.status_code", 200)
    (finished,) = exporter.get_finished_spans()
    assert finished.name == "POST /vop/v1/payee-verifications"
    assert format(finished.context.trace_id, "032x") == TRACE_ID
    assert finished.parent is not None
    assert format(finished.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert finished.attributes is not None
    assert dict(finished.attributes) == {
        "http.route": "/vop", "vop.index.version": 3, "vop.result.code": "MTCH",
        "http.response.status_code": 200,
    }  # fmt: skip
    carrier: dict[str, str] = {}
    with tracer.span("child", {"traceparent": PARENT}):
        tracer.inject(carrier)
    assert carrier["traceparent"].split("-")[1] == TRACE_ID


def test_without_traceparent_a_new_trace_starts_and_errors_keep_only_the_type() -> None:
    exporter = InMemorySpanExporter()
    tracer = Tracer.with_exporter(exporter)
    with tracer.span("POST /x") as span:
        assert len(span.trace_id) == 32
        assert span.trace_id != TRACE_ID
        span.record_error(ValueError("Max Mustermann DE89370400440532013000"))
    (finished,) = exporter.get_finished_spans()
    assert finished.parent is None
    assert finished.status.description == "ValueError"
    assert "Mustermann" not in str(finished.to_json())


def test_sampler_from_env() -> None:
    assert _sampler({}).get_description().startswith("ParentBased")
    assert _sampler({"OTEL_TRACES_SAMPLER": "always_off"}) is sampling.ALWAYS_OFF
    ratio = _sampler({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    assert isinstance(ratio, sampling.TraceIdRatioBased)
    assert ratio.rate == 0.25
    exporter = InMemorySpanExporter()
    tracer = Tracer.with_exporter(exporter, {"OTEL_TRACES_SAMPLER": "always_off"})
    with tracer.span("x"):
        pass
    assert exporter.get_finished_spans() == ()
    with pytest.raises(TracingConfigError):
        _sampler({"OTEL_TRACES_SAMPLER": "sometimes"})
    with pytest.raises(TracingConfigError):
        _sampler({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"})
    with pytest.raises(TracingConfigError):
        Tracer.from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
