"""CircuitBreaker and retry_with_jitter, with an injected clock (no sleeping)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from matching.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    backoff_delays,
    retry_with_jitter,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def state(b: CircuitBreaker) -> BreakerState:
    return b.state  # a call: mypy would otherwise narrow the property between asserts


def boom() -> None:
    raise ConnectionError("down")


def test_opens_after_threshold_then_half_opens_and_closes() -> None:
    clock = Clock()
    changes: list[tuple[BreakerState, BreakerState]] = []
    b = CircuitBreaker("redis", failure_threshold=3, reset_timeout=10, clock=clock)
    b.add_listener(lambda _b, old, new: changes.append((old, new)))
    for _ in range(2):
        with pytest.raises(ConnectionError):
            b.call(boom)
    assert state(b) is BreakerState.CLOSED
    with pytest.raises(ConnectionError):
        b.call(boom)
    assert state(b) is BreakerState.OPEN
    with pytest.raises(CircuitOpenError) as err:
        b.call(lambda: 1)
    assert err.value.retry_in == pytest.approx(10)
    clock.now += 9.9
    assert not b.allow()
    clock.now += 0.2
    assert state(b) is BreakerState.HALF_OPEN
    assert b.call(lambda: 42) == 42
    assert state(b) is BreakerState.CLOSED
    assert changes == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    assert b.opened_count == 1


def test_failed_probe_reopens_and_restarts_cool_down() -> None:
    clock = Clock()
    b = CircuitBreaker("redis", failure_threshold=1, reset_timeout=5, clock=clock)
    with pytest.raises(ConnectionError):
        b.call(boom)
    clock.now += 5
    with pytest.raises(ConnectionError):
        b.call(boom)  # the probe
    assert state(b) is BreakerState.OPEN
    clock.now += 4
    assert state(b) is BreakerState.OPEN
    clock.now += 1
    assert state(b) is BreakerState.HALF_OPEN


def test_half_open_admits_only_the_probe_budget() -> None:
    clock = Clock()
    b = CircuitBreaker("redis", failure_threshold=1, reset_timeout=1, half_open_probes=2, clock=clock)
    b.record_failure()
    clock.now += 1
    assert [b.allow() for _ in range(3)] == [True, True, False]


def test_success_resets_consecutive_failures() -> None:
    b = CircuitBreaker("redis", failure_threshold=2, clock=Clock())
    b.record_failure()
    b.record_success()
    b.record_failure()
    assert state(b) is BreakerState.CLOSED


def test_non_failures_do_not_count() -> None:
    b = CircuitBreaker("redis", failure_threshold=1, is_failure=lambda e: isinstance(e, ConnectionError))
    empty: dict[str, Any] = {}
    with pytest.raises(KeyError):
        b.call(lambda: empty["x"])
    assert state(b) is BreakerState.CLOSED


def test_thread_safe_counting() -> None:
    b = CircuitBreaker("redis", failure_threshold=10_000, clock=Clock())

    def hammer() -> None:
        for _ in range(1000):
            b.record_failure()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.failures == 8000
    assert state(b) is BreakerState.CLOSED


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    top = list(zip(range(8), backoff_delays(0.1, 1.0, rng=lambda: 0.999999), strict=False))
    assert [round(d, 3) for _, d in top] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    assert all(d == 0 for _, d in zip(range(5), backoff_delays(0.1, 1.0, rng=lambda: 0.0), strict=False))


def test_retry_with_jitter_retries_then_succeeds() -> None:
    calls = {"n": 0}
    slept: list[float] = []
    seen: list[int] = []

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise TimeoutError
        return "ok"

    out = retry_with_jitter(
        flaky, attempts=5, base=1, cap=8, sleep=slept.append, rng=lambda: 0.5,
        on_retry=lambda attempt, _exc, _d: seen.append(attempt),
    )  # fmt: skip
    assert out == "ok"
    assert slept == [0.5, 1.0]
    assert seen == [1, 2]


def test_retry_gives_up_and_reraises_last() -> None:
    slept: list[float] = []
    with pytest.raises(TimeoutError):
        retry_with_jitter(lambda: (_ for _ in ()).throw(TimeoutError()), attempts=3, sleep=slept.append)
    assert len(slept) == 2


def test_retry_does_not_retry_other_errors_or_open_circuits() -> None:
    slept: list[float] = []
    with pytest.raises(ValueError, match="bad"):
        retry_with_jitter(
            lambda: (_ for _ in ()).throw(ValueError("bad")), retry_on=(OSError,), sleep=slept.append
        )
    b = CircuitBreaker("redis", failure_threshold=1)
    b.record_failure()
    with pytest.raises(CircuitOpenError):
        retry_with_jitter(lambda: b.call(lambda: 1), sleep=slept.append)
    assert slept == []
