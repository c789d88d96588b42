"""OpenTelemetry tracing, off by default, configured by the standard ``OTEL_*`` variables.

On when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``) or an OTLP endpoint is
set (``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), unless
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``. Sampler: ``OTEL_TRACES_SAMPLER`` /
``OTEL_TRACES_SAMPLER_ARG`` (default ``parentbased_always_on``); service: ``OTEL_SERVICE_NAME``
(default ``vop-responder``). OTLP goes over HTTP/protobuf (``OTEL_EXPORTER_OTLP_PROTOCOL``
``http/protobuf``; ``grpc`` works when ``opentelemetry-exporter-otlp-proto-grpc`` is installed); the
exporter reads its own ``OTEL_EXPORTER_OTLP_*`` variables (endpoint, headers, timeout).

The decision is taken once, in :meth:`Tracer.from_env`: when off, ``span()`` returns one shared
do-nothing context manager (~0.1 µs per request, no OpenTelemetry import at all). When on, each
request gets a SERVER span whose parent is the W3C ``traceparent`` / ``tracestate`` of the request.
Attributes are fixed enums and numbers only (route, method, status, index version, result code and
reason, batch size) — never names, IBANs or other client-provided text.
"""

# Lazy imports: with tracing off, OpenTelemetry is never imported (start-up and memory).
# ruff: noqa: PLC0415
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler

__all__ = ["NOOP_SPAN", "Span", "Tracer", "TracingConfigError"]

log = logging.getLogger("vop.tracing")
DEFAULT_SERVICE_NAME: Final = "vop-responder"
AttrValue = str | bool | int | float
Headers = Iterable[tuple[bytes, bytes]] | Mapping[str, str]


class TracingConfigError(ValueError):
    """An ``OTEL_*`` variable has a value this service does not support."""


class Span(Protocol):
    """What a request handler may do with its span."""

    @property
    def trace_id(self) -> str: ...
    def set_attribute(self, key: str, value: AttrValue) -> None: ...
    def set_attributes(self, attributes: Mapping[str, AttrValue]) -> None: ...
    def record_error(self, exc: BaseException) -> None: ...
    def __enter__(self) -> Span: ...
    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class _NoopSpan:
    __slots__ = ()
    trace_id = ""

    def set_attribute(self, key: str, value: AttrValue) -> None:
        return None

    def set_attributes(self, attributes: Mapping[str, AttrValue]) -> None:
        return None

    def record_error(self, exc: BaseException) -> None:
        return None

    def __enter__(self) -> _NoopSpan:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


NOOP_SPAN: Final = _NoopSpan()


class _HeaderGetter:
    """OpenTelemetry ``Getter`` over ASGI headers (list of byte pairs) or a str mapping."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


_TRACE_HEADERS: Final = {b"traceparent": "traceparent", b"tracestate": "tracestate"}


def _carrier(headers: Headers) -> dict[str, str]:
    if isinstance(headers, Mapping):
        return {k.lower(): v for k, v in headers.items() if k.lower() in ("traceparent", "tracestate")}
    out: dict[str, str] = {}
    for name, value in headers:
        key = _TRACE_HEADERS.get(name.lower())
        if key is not None:
            out[key] = value.decode("latin-1")
    return out


class _OtelSpan:
    __slots__ = ("_cm", "_span", "trace_id")

    def __init__(self, tracer: Any, name: str, context: Any, attributes: Mapping[str, AttrValue]) -> None:
        from opentelemetry.trace import SpanKind

        self._cm = tracer.start_as_current_span(
            name, context=context, kind=SpanKind.SERVER, attributes=dict(attributes)
        )
        self._span: Any = None
        self.trace_id = ""

    def __enter__(self) -> _OtelSpan:
        self._span = self._cm.__enter__()
        ctx = self._span.get_span_context()
        self.trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else ""
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._cm.__exit__(et, ev, tb)

    def set_attribute(self, key: str, value: AttrValue) -> None:
        self._span.set_attribute(key, value)

    def set_attributes(self, attributes: Mapping[str, AttrValue]) -> None:
        self._span.set_attributes(dict(attributes))

    def record_error(self, exc: BaseException) -> None:
        from opentelemetry.trace import Status, StatusCode

        # The exception *type* only: messages may quote request content.
        self._span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        self._span.set_attribute("error.type", type(exc).__name__)


class Tracer:
    """``tracer.span(name, headers, attributes)`` → a context manager yielding a :class:`Span`.

    Build with :meth:`from_env` (off unless the ``OTEL_*`` variables turn it on) or
    :meth:`with_exporter` (tests: an ``InMemorySpanExporter``)."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider
        self.enabled = provider is not None
        self._tracer: Any = None
        self._propagator: Any = None
        self._getter: Any = None
        if provider is not None:
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

            self._tracer = provider.get_tracer("vop-responder")
            self._propagator = TraceContextTextMapPropagator()
            self._getter = _HeaderGetter()

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def disabled(cls) -> Tracer:
        return cls(None)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Tracer:
        env = os.environ if env is None else env
        if not _wanted(env):
            return cls.disabled()
        names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
        exporters = [_exporter(name, env) for name in names if name != "none"]
        tracer = cls._build(env, exporters, batch=True)
        log.info("tracing on: exporters %s, sampler %s", ",".join(names), _sampler_name(env))
        return tracer

    @classmethod
    def with_exporter(cls, exporter: SpanExporter, env: Mapping[str, str] | None = None) -> Tracer:
        """Tracing on, spans handed synchronously to ``exporter`` (sampler etc. from ``env``)."""
        return cls._build({} if env is None else env, [exporter], batch=False)

    @classmethod
    def _build(cls, env: Mapping[str, str], exporters: list[SpanExporter], *, batch: bool) -> Tracer:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME})
        provider = TracerProvider(resource=resource, sampler=_sampler(env))
        for exporter in exporters:
            provider.add_span_processor(
                BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
            )
        return cls(provider)

    # ---- use --------------------------------------------------------------------------------
    def span(
        self, name: str, headers: Headers = (), attributes: Mapping[str, AttrValue] | None = None
    ) -> Span:
        """A SERVER span for one request, child of the request's ``traceparent`` if it has one."""
        if self._tracer is None:
            return NOOP_SPAN
        context = self._propagator.extract(_carrier(headers), getter=self._getter)
        return _OtelSpan(self._tracer, name, context, attributes or {})

    def inject(self, carrier: dict[str, str]) -> None:
        """Write ``traceparent``/``tracestate`` of the current span into ``carrier`` (outgoing calls)."""
        if self._propagator is not None:
            self._propagator.inject(carrier)

    def shutdown(self) -> None:
        """Flush pending spans and stop the exporters (lifespan shutdown)."""
        if self._provider is not None:
            self._provider.force_flush()
            self._provider.shutdown()


def _wanted(env: Mapping[str, str]) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _exporter(name: str, env: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(service_name=env.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME)
    if name == "otlp":
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        ).strip()
        if protocol == "grpc":
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found, unused-ignore]
                    OTLPSpanExporter as GrpcExporter,
                )
            except ImportError as exc:
                raise TracingConfigError(
                    "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs opentelemetry-exporter-otlp-proto-grpc"
                ) from exc
            exporter: SpanExporter = GrpcExporter()
            return exporter
        if protocol != "http/protobuf":
            raise TracingConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not supported")
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise TracingConfigError(f"OTEL_TRACES_EXPORTER {name!r} is not supported (otlp, console, none)")


_SAMPLERS: Final = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


def _sampler_name(env: Mapping[str, str]) -> str:
    return (env.get("OTEL_TRACES_SAMPLER") or "parentbased_always_on").strip().lower()


def _sampler(env: Mapping[str, str]) -> Sampler:
    from opentelemetry.sdk.trace import sampling

    name = _sampler_name(env)
    if name not in _SAMPLERS:
        raise TracingConfigError(f"OTEL_TRACES_SAMPLER {name!r} is not supported ({', '.join(_SAMPLERS)})")
    ratio = 1.0
    if name.endswith("traceidratio"):
        raw = env.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
        try:
            ratio = float(raw)
        except ValueError:
            raise TracingConfigError(f"OTEL_TRACES_SAMPLER_ARG must be a number, got {raw!r}") from None
        if not 0.0 <= ratio <= 1.0:
            raise TracingConfigError("OTEL_TRACES_SAMPLER_ARG must be within 0..1")
    root: Sampler
    base = name.removeprefix("parentbased_")
    if base == "always_on":
        root = sampling.ALWAYS_ON
    elif base == "always_off":
        root = sampling.ALWAYS_OFF
    else:
        root = sampling.TraceIdRatioBased(ratio)
    return sampling.ParentBased(root) if name.startswith("parentbased_") else root
