"""Resilience helpers for index sources: a circuit breaker and retries with full-jitter backoff.

Pure Python, no I/O and no metrics library: the app observes a breaker through its
``on_change`` listeners (``app.observability.metrics.Metrics.track_breaker`` exports the state as
``vop_circuit_breaker_state``). Clocks and sleeps are injectable so tests run without waiting.

Circuit breaker states (the numbers are the exported gauge values)::

    CLOSED (0) ──N consecutive failures──► OPEN (2) ──cool-down elapsed──► HALF_OPEN (1)
       ▲                                                                     │
       └────────────── probe succeeds ◄──────────────────────────────────────┤
                       probe fails ──► OPEN again (cool-down restarts) ◄─────┘

In HALF_OPEN at most ``half_open_probes`` calls are let through at a time; the others are refused
at once (:class:`CircuitOpenError`), so a recovering dependency sees a trickle, not a stampede.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpenError",
    "backoff_delays",
    "retry_with_jitter",
]


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitOpenError(RuntimeError):
    """Raised instead of calling the protected operation while the breaker refuses calls."""

    def __init__(self, name: str, retry_in: float) -> None:
        super().__init__(f"circuit {name!r} is open; next probe in {max(retry_in, 0.0):.2f} s")
        self.name = name
        self.retry_in = max(retry_in, 0.0)


Listener = Callable[["CircuitBreaker", BreakerState, BreakerState], None]


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failures; after ``reset_timeout`` seconds it
    lets ``half_open_probes`` probe calls through; a probe success closes it, a failure reopens it.

    Thread-safe: one lock guards the state; listeners run outside it, in the thread whose call
    caused the transition. ``name`` is a fixed identifier chosen by code (it becomes a metric label).
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 5.0,
        half_open_probes: int = 1,
        clock: Callable[[], float] = time.monotonic,
        is_failure: Callable[[BaseException], bool] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_timeout <= 0:
            raise ValueError("reset_timeout must be positive")
        if half_open_probes < 1:
            raise ValueError("half_open_probes must be at least 1")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.half_open_probes = half_open_probes
        self._clock = clock
        self._is_failure = is_failure or (lambda exc: isinstance(exc, Exception))
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0
        self._listeners: list[Listener] = []
        self.opened_count = 0

    # ---- observation ------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """``listener(breaker, old, new)`` after every state change."""
        self._listeners.append(listener)

    @property
    def state(self) -> BreakerState:
        """The current state; an OPEN breaker whose cool-down has passed reads as HALF_OPEN."""
        with self._lock:
            changed = self._maybe_half_open_locked()
            state = self._state
        self._notify(changed)
        return state

    @property
    def failures(self) -> int:
        return self._failures

    # ---- protocol ---------------------------------------------------------------------------
    def allow(self) -> bool:
        """Reserve a call: True if the caller may proceed (it must then report success/failure)."""
        with self._lock:
            changed = self._maybe_half_open_locked()
            if self._state is BreakerState.CLOSED:
                allowed = True
            elif self._state is BreakerState.HALF_OPEN and self._probes < self.half_open_probes:
                self._probes += 1
                allowed = True
            else:
                allowed = False
        self._notify(changed)
        return allowed

    def record_success(self) -> None:
        with self._lock:
            changed = None
            if self._state is BreakerState.HALF_OPEN:
                changed = self._transition_locked(BreakerState.CLOSED)
            self._failures = 0
            self._probes = max(0, self._probes - 1)
        self._notify(changed)

    def record_failure(self) -> None:
        with self._lock:
            changed = None
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or (
                self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold
            ):
                changed = self._transition_locked(BreakerState.OPEN)
        self._notify(changed)

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        with self._lock:
            if self._state is not BreakerState.OPEN:
                return 0.0
            return max(0.0, self._opened_at + self.reset_timeout - self._clock())

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` under the breaker; raises :class:`CircuitOpenError` while it refuses calls."""
        with self.guard():
            return fn()

    @contextmanager
    def guard(self) -> Iterator[None]:
        """``with breaker.guard(): do_io()`` — the block's exception counts as a failure when
        ``is_failure(exc)`` holds (default: any ``Exception``) and is re-raised."""
        if not self.allow():
            raise CircuitOpenError(self.name, self.retry_in())
        try:
            yield
        except BaseException as exc:
            if self._is_failure(exc):
                self.record_failure()
            else:
                self._release_probe()
            raise
        self.record_success()

    def reset(self) -> None:
        with self._lock:
            changed = self._transition_locked(BreakerState.CLOSED)
            self._failures = 0
        self._notify(changed)

    # ---- internals --------------------------------------------------------------------------
    def _release_probe(self) -> None:
        with self._lock:
            self._probes = max(0, self._probes - 1)

    def _maybe_half_open_locked(self) -> tuple[BreakerState, BreakerState] | None:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_timeout:
            return self._transition_locked(BreakerState.HALF_OPEN)
        return None

    def _transition_locked(self, new: BreakerState) -> tuple[BreakerState, BreakerState] | None:
        old = self._state
        if old is new:
            return None
        self._state = new
        self._probes = 0
        if new is BreakerState.OPEN:
            self._opened_at = self._clock()
            self.opened_count += 1
        return old, new

    def _notify(self, changed: tuple[BreakerState, BreakerState] | None) -> None:
        if changed is None:
            return
        for listener in list(self._listeners):
            listener(self, changed[0], changed[1])


def backoff_delays(
    base: float,
    cap: float,
    *,
    rng: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Full-jitter exponential backoff: the n-th delay is uniform in ``[0, min(cap, base·2ⁿ)]``
    (AWS Architecture Blog, "Exponential Backoff And Jitter"). Infinite; ``rng()`` ∈ [0, 1)."""
    if base <= 0 or cap <= 0:
        raise ValueError("base and cap must be positive")
    attempt = 0
    while True:
        ceiling = min(cap, base * (2.0 ** min(attempt, 62)))
        yield ceiling * rng()
        attempt += 1


def retry_with_jitter(
    fn: Callable[[], T],
    *,
    attempts: int = 5,
    base: float = 0.1,
    cap: float = 5.0,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Call ``fn`` up to ``attempts`` times, sleeping a full-jitter backoff delay between tries.

    Only exceptions in ``retry_on`` are retried (``CircuitOpenError`` never is: an open breaker
    means "stop asking"); the last one is re-raised. ``on_retry(attempt, exc, delay)`` is called
    before each sleep (log the exception *type* there, not its text, if it may carry data)."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    delays = backoff_delays(base, cap, rng=rng)
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except CircuitOpenError:
            raise
        except retry_on as exc:
            if attempt == attempts:
                raise
            delay = next(delays)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
