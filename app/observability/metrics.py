"""Prometheus metrics, correct with several granian worker processes, a few µs per request or less.

Multi-process. Every granian worker is its own process. When ``PROMETHEUS_MULTIPROC_DIR`` is set
(``vop serve`` sets it to a per-server folder, :mod:`app.observability.runtime`) prometheus_client
writes each value into memory-mapped files per PID and ``GET /metrics`` — answered by whichever
worker the connection lands on — merges all workers' files (``MultiProcessCollector``); files of
dead workers keep their counters (totals stay monotonic across respawns) and their live gauges are
dropped (``mark_process_dead``, done at scrape time for every PID that no longer exists). Without
the variable (tests, embedding) the registry of this process is served.

Per-request cost. Request-path calls never touch prometheus_client: they add to plain Python
counters under one uncontended lock (``observe_request`` ≈ 0.4 µs, ``observe_outcomes`` of one
outcome ≈ 0.3 µs, see bench/bench_observability.py); a daemon thread flushes those into the
(pre-bound) prometheus children once per ``flush_interval`` (1 s) and on every scrape, and sets
the sampled gauges (in-flight, index, breaker, audit backlog, readiness) at the same time.

Labels are fixed enums only: routes from the constructor's list (anything else is ``other``), HTTP
status codes, outcome kind / code / reason (reasons must look like ``snake_case`` identifiers and
are capped in number), shed reasons, guard actions, breaker names. Never names, IBANs or any other
client-provided text.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import re
import threading
import time
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any, Final, Protocol

from litestar import asgi
from litestar.handlers import ASGIRouteHandler
from litestar.types import Receive, Scope, Send
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from matching.model import Outcome
from matching.resilience import BreakerState, CircuitBreaker

__all__ = [
    "LATENCY_BUCKETS",
    "METRIC_NAMES",
    "IndexLike",
    "Metrics",
    "SourceStatusLike",
    "metrics_app_route",
]

log = logging.getLogger("vop.metrics")

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
OTHER: Final = "other"
LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
BULK_BUCKETS: Final = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
RELOAD_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
KINDS: Final = ("name", "id")
CODES: Final = ("MTCH", "CMTC", "NMTC", "NOAP")
SHED_REASONS: Final = ("overload", "deadline", "not_ready", "draining")
GUARD_ACTIONS: Final = ("flagged", "throttled", "blocked")
RATE_LIMIT_SCOPES: Final = ("client", "global")
#: Statuses bound at start so their series exist (at 0) from the first scrape.
PREBOUND_STATUSES: Final = (200, 400, 404, 413, 429, 500, 503)
MAX_REASONS: Final = 64
_REASON_SHAPE: Final = re.compile(r"[a-z][a-z0-9_]{0,39}")
_KEY_OF: Final = attrgetter("kind", "code", "reason")

#: Every metric family this module defines (the alert-rule test checks exprs against it).
METRIC_NAMES: Final = (
    "vop_http_request_duration_seconds",
    "vop_http_requests_in_flight",
    "vop_http_shed_total",
    "vop_checks_total",
    "vop_bulk_size",
    "vop_rate_limited_total",
    "vop_enumeration_guard_total",
    "vop_index_accounts",
    "vop_index_version",
    "vop_index_built_timestamp_seconds",
    "vop_index_last_change_timestamp_seconds",
    "vop_index_last_change_age_seconds",
    "vop_index_staleness_seconds",
    "vop_index_stale",
    "vop_index_loaded",
    "vop_index_swaps_total",
    "vop_index_reloads_total",
    "vop_index_reload_duration_seconds",
    "vop_index_gaps_total",
    "vop_redis_errors_total",
    "vop_redis_connected",
    "vop_circuit_breaker_state",
    "vop_circuit_breaker_opened_total",
    "vop_audit_backlog",
    "vop_audit_dropped_total",
    "vop_audit_write_errors_total",
    "vop_audit_writer_restarts_total",
    "vop_ready",
    "vop_hot_path_interpreted_modules",
    "vop_draining",
)


class IndexLike(Protocol):
    """What the index gauges read of an index (AccountIndex and OverlayIndex both fit)."""

    @property
    def version(self) -> int: ...
    @property
    def built_at(self) -> float: ...
    @property
    def build_seconds(self) -> float: ...
    def __len__(self) -> int: ...


class SourceStatusLike(Protocol):
    """What the index gauges read of a source's status (``RedisSourceStatus`` fits)."""

    @property
    def connected(self) -> bool: ...
    @property
    def stale(self) -> bool: ...
    @property
    def staleness_s(self) -> float | None: ...
    @property
    def last_change_at(self) -> float | None: ...
    @property
    def full_loads(self) -> int: ...
    @property
    def gaps(self) -> int: ...
    @property
    def errors(self) -> int: ...


class ReadinessLike(Protocol):
    @property
    def draining(self) -> bool: ...
    def is_ready(self) -> bool: ...


def multiprocess_enabled() -> bool:
    """True when values go to per-PID files (the variable was set before prometheus_client loaded)."""
    return bool(os.environ.get(MULTIPROC_ENV)) and values.ValueClass is not values.MutexValue


class _Latency:
    """Pending observations of one (route, status) histogram child: bucket counts, then the sum."""

    __slots__ = ("child", "pending", "total")

    def __init__(self, child: Any, buckets: int) -> None:
        self.child = child
        self.pending = [0] * buckets
        self.total = 0.0


class Metrics:
    """All metrics of one worker process. Create once per process (the app factory)."""

    def __init__(
        self,
        routes: Iterable[str],
        *,
        registry: CollectorRegistry | None = None,
        flush_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_enabled()
        self.flush_interval = flush_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        r = self.registry

        self.request_duration = Histogram(
            "vop_http_request_duration_seconds",
            "Time from the first request byte seen by the app to the last response byte sent.",
            ("route", "status"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight_gauge = Gauge(
            "vop_http_requests_in_flight",
            "Requests being answered (sampled each flush).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.shed_total = Counter(
            "vop_http_shed", "Requests refused to protect latency.", ("reason",), registry=r
        )
        self.checks_total = Counter(
            "vop_checks",
            "Checks answered, by kind, result code and reason.",
            ("kind", "code", "reason"),
            registry=r,
        )
        self.bulk_size = Histogram(
            "vop_bulk_size", "Checks per bulk request.", buckets=BULK_BUCKETS, registry=r
        )
        self.rate_limited_total = Counter(
            "vop_rate_limited", "Requests refused by the rate limiter.", ("scope",), registry=r
        )
        self.guard_total = Counter(
            "vop_enumeration_guard", "Enumeration-guard interventions.", ("action",), registry=r
        )
        self.index_accounts = Gauge(
            "vop_index_accounts",
            "Accounts in the served index (lowest over workers).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.index_version = Gauge(
            "vop_index_version",
            "Version of the served index (lowest over workers).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.index_built = Gauge(
            "vop_index_built_timestamp_seconds",
            "When the served index was built (oldest over workers).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.index_last_change = Gauge(
            "vop_index_last_change_timestamp_seconds",
            "When the last change was applied to the served index (index build for file sources).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.index_last_change_age = Gauge(
            "vop_index_last_change_age_seconds",
            "Seconds since the last applied change (highest over workers).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.index_staleness = Gauge(
            "vop_index_staleness_seconds",
            "Seconds since the index was last known to equal its source (0 for file sources).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.index_stale = Gauge(
            "vop_index_stale",
            "1 when the source flags the index stale.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.index_loaded = Gauge(
            "vop_index_loaded",
            "1 when an index is loaded (lowest over workers).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.index_swaps_total = Counter("vop_index_swaps", "Index versions swapped in.", registry=r)
        self.index_reloads_total = Counter(
            "vop_index_reloads", "Full index loads, by result.", ("result",), registry=r
        )
        self.index_reload_duration = Histogram(
            "vop_index_reload_duration_seconds",
            "Duration of full index loads.",
            buckets=RELOAD_BUCKETS,
            registry=r,
        )
        self.index_gaps_total = Counter(
            "vop_index_gaps", "Change-stream gaps that forced a reload.", registry=r
        )
        self.redis_errors_total = Counter("vop_redis_errors", "Failed Redis calls.", registry=r)
        self.redis_connected = Gauge(
            "vop_redis_connected",
            "1 when the Redis source is connected (lowest over workers).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.breaker_state = Gauge(
            "vop_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open (worst worker).",
            ("breaker",),
            registry=r,
            multiprocess_mode="livemax",
        )
        self.breaker_opened_total = Counter(
            "vop_circuit_breaker_opened", "Times a circuit breaker opened.", ("breaker",), registry=r
        )
        self.audit_backlog = Gauge(
            "vop_audit_backlog",
            "Audit records not yet durably written.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.audit_dropped = Counter(
            "vop_audit_dropped",
            "Audit records lost (queue full, or held by a writer process that died); each loss is "
            "also a chained 'dropped' line.",
            registry=r,
        )
        self.audit_write_errors = Counter(
            "vop_audit_write_errors",
            "Audit write failures (file errors, writer processes that died).",
            registry=r,
        )
        self.audit_writer_restarts = Counter(
            "vop_audit_writer_restarts", "Audit writer processes restarted after dying.", registry=r
        )
        self.ready_gauge = Gauge(
            "vop_ready",
            "1 when /readyz answers 200 (lowest over workers).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.interpreted_modules = Gauge(
            "vop_hot_path_interpreted_modules",
            "Modules of the compiled build's list (app.compiled) this worker runs from source; 0 in "
            "the image's compiled build (highest over workers).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.draining_gauge = Gauge(
            "vop_draining",
            "1 while the server drains before stopping.",
            registry=r,
            multiprocess_mode="livemax",
        )

        # ---- pre-bound children and the request-path accumulators ---------------------------
        self.routes: tuple[str, ...] = (*dict.fromkeys(routes), OTHER)
        self._bounds: list[float] = [*LATENCY_BUCKETS, float("inf")]
        self._latency: dict[tuple[str, int], _Latency] = {}
        for route in self.routes:
            for status in PREBOUND_STATUSES:
                self._latency_slot(route, status)
        self._checks: dict[tuple[str, str, str], int] = {}
        self._check_children: dict[tuple[str, str, str], Any] = {}
        self._reasons: set[str] = set()
        self._bulk: list[int] = [0] * (len(BULK_BUCKETS) + 1)
        self._bulk_sum = 0
        self._bulk_bounds: list[float] = [*map(float, BULK_BUCKETS), float("inf")]
        self._shed = dict.fromkeys(SHED_REASONS, 0)
        self._shed_children = {k: self.shed_total.labels(k) for k in SHED_REASONS}
        self._rate = dict.fromkeys(RATE_LIMIT_SCOPES, 0)
        self._rate_children = {k: self.rate_limited_total.labels(k) for k in RATE_LIMIT_SCOPES}
        self._guard = dict.fromkeys(GUARD_ACTIONS, 0)
        self._guard_children = {k: self.guard_total.labels(k) for k in GUARD_ACTIONS}
        for result in ("ok", "error"):
            self.index_reloads_total.labels(result)
        self.in_flight = 0

        # ---- sampled sources ------------------------------------------------------------------
        self._index: Callable[[], IndexLike | None] | None = None
        self._status: Callable[[], SourceStatusLike | None] | None = None
        self._readiness: ReadinessLike | None = None
        self._audit_counters: Callable[[], Mapping[str, int]] | None = None
        self._last_audit: dict[str, int] = {}
        self._breakers: list[CircuitBreaker] = []
        self._last_version: int | None = None
        self._last_status: tuple[int, int, int] | None = None
        self._load_in_flight: Callable[[], int] | None = None
        self._load_shed: Callable[[], int] | None = None
        self._last_shed = 0

    # ---- request path (cheap: plain counters under one lock) --------------------------------
    def request_started(self) -> None:
        with self._lock:
            self.in_flight += 1

    def request_finished(self, route: str, status: int, seconds: float) -> None:
        """``request_started``'s partner: in-flight −1 and the latency observation, one lock."""
        slot = self._latency.get((route, status)) or self._latency_slot(route, status)
        i = bisect_left(self._bounds, seconds)
        with self._lock:
            self.in_flight -= 1
            slot.pending[i] += 1
            slot.total += seconds

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        slot = self._latency.get((route, status)) or self._latency_slot(route, status)
        i = bisect_left(self._bounds, seconds)
        with self._lock:
            slot.pending[i] += 1
            slot.total += seconds

    def observe_outcome(self, outcome: Outcome) -> None:
        key = (outcome.kind, outcome.code, outcome.reason)
        with self._lock:
            self._checks[key] = self._checks.get(key, 0) + 1

    def observe_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        if len(outcomes) == 1:
            self.observe_outcome(outcomes[0])
            return
        tally = Tally(map(_KEY_OF, outcomes))
        with self._lock:
            checks = self._checks
            for key, n in tally.items():
                checks[key] = checks.get(key, 0) + n

    def observe_bulk(self, size: int) -> None:
        i = bisect_left(self._bulk_bounds, size)
        with self._lock:
            self._bulk[i] += 1
            self._bulk_sum += size

    def shed(self, reason: str = "overload") -> None:
        with self._lock:
            self._shed[reason if reason in self._shed else "overload"] += 1

    def rate_limited(self, scope: str = "client") -> None:
        with self._lock:
            self._rate[scope if scope in self._rate else "client"] += 1

    def enumeration_guarded(self, action: str = "blocked") -> None:
        with self._lock:
            self._guard[action if action in self._guard else "blocked"] += 1

    # ---- rare events (direct) ---------------------------------------------------------------
    def observe_reload(self, seconds: float, ok: bool = True) -> None:
        """A full index load finished (``ok``) or failed; sources that know better than the
        automatic detection in :meth:`update_sampled` call this."""
        self.index_reloads_total.labels("ok" if ok else "error").inc()
        if ok:
            self.index_reload_duration.observe(seconds)

    def redis_error(self, n: int = 1) -> None:
        self.redis_errors_total.inc(n)

    def set_audit_backlog(self, n: int) -> None:
        self.audit_backlog.set(n)

    # ---- sampled sources --------------------------------------------------------------------
    def track_index(
        self,
        current: Callable[[], IndexLike | None],
        status: Callable[[], SourceStatusLike | None] | None = None,
    ) -> None:
        """Index gauges follow ``current()`` (e.g. ``lambda: holder.current``) and, when given, the
        source's ``status()`` (connected, staleness, reload/gap/error counts)."""
        self._index = current
        self._status = status

    def track_breaker(self, breaker: CircuitBreaker) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", breaker.name):
            raise ValueError("breaker names must be short snake_case identifiers")
        gauge = self.breaker_state.labels(breaker.name)
        opened = self.breaker_opened_total.labels(breaker.name)
        gauge.set(int(breaker.state))

        def on_change(b: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
            gauge.set(int(new))
            if new is BreakerState.OPEN:
                opened.inc()

        breaker.add_listener(on_change)
        self._breakers.append(breaker)

    def track_load(self, in_flight: Callable[[], int], shed: Callable[[], int] | None = None) -> None:
        """Sample an existing in-flight level and cumulative shed count (``app.backpressure.LoadGate``:
        ``track_load(lambda: gate.in_flight, lambda: gate.shed)``) instead of counting per request."""
        self._load_in_flight = in_flight
        self._load_shed = shed

    def track_audit(self, counters: Callable[[], Mapping[str, int]]) -> None:
        """Sample the audit trail at scrape time from one mapping (``SecurityGate.metrics``):
        ``audit_pending`` into the backlog gauge; the cumulative ``audit_dropped``,
        ``audit_write_errors`` and ``audit_writer_restarts`` into the counters of the same names."""
        self._audit_counters = counters

    def track_readiness(self, readiness: ReadinessLike) -> None:
        self._readiness = readiness

    def update_sampled(self) -> None:
        """Set the sampled gauges now (the flusher does this every ``flush_interval``)."""
        with self._lock:
            in_flight = self.in_flight
        if self._load_in_flight is not None:
            in_flight += self._load_in_flight()
        self.in_flight_gauge.set(in_flight)
        if self._load_shed is not None:
            shed = self._load_shed()
            if shed > self._last_shed:
                self._shed_children["overload"].inc(shed - self._last_shed)
            self._last_shed = shed
        now = self._clock()
        if self._index is not None:
            self._update_index(now)
        for breaker in self._breakers:
            self.breaker_state.labels(breaker.name).set(int(breaker.state))
        if self._audit_counters is not None:
            values = self._audit_counters()
            self.audit_backlog.set(int(values.get("audit_pending", 0)))
            for key, counter in (
                ("audit_dropped", self.audit_dropped),
                ("audit_write_errors", self.audit_write_errors),
                ("audit_writer_restarts", self.audit_writer_restarts),
            ):
                now_value = int(values.get(key, 0))
                last = self._last_audit.get(key, 0)
                if now_value > last:
                    counter.inc(now_value - last)
                self._last_audit[key] = max(now_value, last)
        if self._readiness is not None:
            self.ready_gauge.set(1 if self._readiness.is_ready() else 0)
            self.draining_gauge.set(1 if self._readiness.draining else 0)

    def _update_index(self, now: float) -> None:
        assert self._index is not None
        index = self._index()
        status = self._status() if self._status is not None else None
        if index is None:
            self.index_loaded.set(0)
            self.index_accounts.set(0)
        else:
            self.index_loaded.set(1)
            self.index_accounts.set(len(index))
            self.index_version.set(index.version)
            self.index_built.set(index.built_at)
            if index.version != self._last_version:
                self.index_swaps_total.inc()
                if status is None:  # a file source: every new version is a full load
                    self.observe_reload(index.build_seconds)
                self._last_version = index.version
        last_change = index.built_at if index is not None else None
        if status is not None:
            last_change = status.last_change_at or last_change
            self.redis_connected.set(1 if status.connected else 0)
            self.index_stale.set(1 if status.stale else 0)
            self.index_staleness.set(status.staleness_s if status.staleness_s is not None else 0.0)
            counts = (status.full_loads, status.gaps, status.errors)
            previous = self._last_status or (0, 0, 0)
            loads, gaps, errors = (max(0, c - p) for c, p in zip(counts, previous, strict=True))
            if loads:
                self.index_reloads_total.labels("ok").inc(loads)
                if index is not None:
                    self.index_reload_duration.observe(index.build_seconds)
            if gaps:
                self.index_gaps_total.inc(gaps)
            if errors:
                self.redis_errors_total.inc(errors)
            self._last_status = counts
        else:
            self.index_stale.set(0)
            self.index_staleness.set(0.0)
        if last_change is not None:
            self.index_last_change.set(last_change)
            self.index_last_change_age.set(max(0.0, now - last_change))

    # ---- flushing ---------------------------------------------------------------------------
    def _latency_slot(self, route: str, status: int) -> _Latency:
        label_route = route if route in self.routes else OTHER
        label_status = str(status) if 100 <= status <= 599 else OTHER
        shared = self._latency.get((label_route, status))
        if shared is None:
            child = self.request_duration.labels(label_route, label_status)
            shared = _Latency(child, len(self._bounds))
            self._latency[(label_route, status)] = shared
        self._latency[(route, status)] = shared
        return shared

    def _check_child(self, key: tuple[str, str, str]) -> Any:
        child = self._check_children.get(key)
        if child is None:
            kind, code, reason = key
            kind = kind if kind in KINDS else OTHER
            code = code if code in CODES else OTHER
            if not _REASON_SHAPE.fullmatch(reason) or (
                reason not in self._reasons and len(self._reasons) >= MAX_REASONS
            ):
                reason = OTHER
            self._reasons.add(reason)
            child = self.checks_total.labels(kind, code, reason)
            self._check_children[key] = child
        return child

    def flush(self) -> None:
        """Move the request-path counters into prometheus_client (and the files)."""
        with self._flush_lock:
            latency: list[tuple[_Latency, list[int], float]] = []
            with self._lock:
                for slot in set(self._latency.values()):
                    if slot.total or any(slot.pending):
                        latency.append((slot, slot.pending, slot.total))
                        slot.pending = [0] * len(self._bounds)
                        slot.total = 0.0
                checks, self._checks = self._checks, {}
                bulk, self._bulk = self._bulk, [0] * len(self._bulk_bounds)
                bulk_sum, self._bulk_sum = self._bulk_sum, 0
                shed, self._shed = self._shed, dict.fromkeys(SHED_REASONS, 0)
                rate, self._rate = self._rate, dict.fromkeys(RATE_LIMIT_SCOPES, 0)
                guard, self._guard = self._guard, dict.fromkeys(GUARD_ACTIONS, 0)
            for slot, pending, total in latency:
                _add_to_histogram(slot.child, pending, total)
            for key, n in checks.items():
                self._check_child(key).inc(n)
            if any(bulk):
                _add_to_histogram(self.bulk_size, bulk, float(bulk_sum))
            for counts, children in (
                (shed, self._shed_children),
                (rate, self._rate_children),
                (guard, self._guard_children),
            ):
                for k, n in counts.items():
                    if n:
                        children[k].inc(n)

    def flush_all(self) -> None:
        self.flush()
        try:
            self.update_sampled()
        except Exception:  # a broken provider must not stop the flusher
            log.exception("metrics: sampling failed")

    def start(self) -> None:
        """Start the flusher thread (Litestar ``on_startup``; idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(self.flush_interval):
                self.flush_all()

        self._thread = threading.Thread(target=run, name="metrics-flusher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the flusher and flush what is pending (Litestar ``on_shutdown``); then, in
        multi-process mode, drop this process's live gauges."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.flush_all()

    # ---- exposition -------------------------------------------------------------------------
    def render(self) -> bytes:
        """The text exposition: all workers' values in multi-process mode, else this registry."""
        self.flush_all()
        if not self.multiprocess:
            return generate_latest(self.registry)
        path = os.environ[MULTIPROC_ENV]
        reap_dead_processes(path)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


def _add_to_histogram(hist: Any, pending: Sequence[int], total: float) -> None:
    """Add batched observations to a histogram child (non-cumulative bucket counts, then sum).

    Uses the child's value objects (``_buckets`` / ``_sum``), stable since prometheus_client 0.4;
    tests/test_metrics.py checks the exposition against the observations, so a change shows."""
    buckets = hist._buckets
    for i, n in enumerate(pending):
        if n:
            buckets[i].inc(n)
    hist._sum.inc(total)


_LIVE_FILE: Final = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def reap_dead_processes(path: str | os.PathLike[str]) -> list[int]:
    """``mark_process_dead`` for every PID with live-gauge files that no longer runs."""
    pids = set()
    for name in glob.glob(os.path.join(os.fspath(path), "gauge_live*_*.db")):
        m = _LIVE_FILE.search(Path(name).name)
        if m:
            pids.add(int(m.group(1)))
    dead = []
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, os.fspath(path))  # type: ignore[no-untyped-call]
            dead.append(pid)
        except PermissionError:
            continue
    return dead


def metrics_app_route(metrics: Metrics, path: str = "/metrics") -> ASGIRouteHandler:
    """``GET /metrics`` as an ASGI route: the exposition is built in a thread (file reads in
    multi-process mode), so the event loop keeps answering requests meanwhile."""
    headers = [(b"content-type", CONTENT_TYPE_LATEST.encode()), (b"cache-control", b"no-store")]

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        if method not in ("GET", "HEAD"):
            await send({"type": "http.response.start", "status": 405, "headers": [(b"allow", b"GET")]})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        body = await asyncio.to_thread(metrics.render)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": body if method == "GET" else b"", "more_body": False}
        )

    return asgi(path, is_mount=False, copy_scope=False, name="metrics", include_in_schema=False)(handle)
