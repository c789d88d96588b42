"""Token-bucket rate limit: trigger and recovery with an injected clock; the Redis-shared bucket against a
real redis-server started on a free port (never 6379), and the per-process fallback when it dies."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.security.gate import Principal, SecurityGate
from app.security.ratelimit import LocalTokenBucket, RateLimiter
from app.security.redis_backend import RedisBackend
from app.security.settings import SecuritySettings
from bench.netutil import free_port


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RedisServer:
    """A throw-away redis-server on a free port, no persistence."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (make redis-server installs it)")
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        pytest.fail("redis-server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


@contextmanager
def redis_server(port: int | None = None) -> Iterator[RedisServer]:
    server = RedisServer(port)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


# -- per process -----------------------------------------------------------------------------------
def test_bucket_triggers_and_recovers() -> None:
    clock = Clock()
    limiter = RateLimiter(10.0, 5, clock=clock)
    assert [limiter.acquire("a") for _ in range(5)] == [None] * 5
    wait = limiter.acquire("a")
    assert wait == pytest.approx(0.1)
    assert limiter.acquire("b") is None  # other clients are unaffected
    clock.now += 0.1
    assert limiter.acquire("a") is None
    assert limiter.acquire("a") is not None
    clock.now += 10  # refills to the burst, not beyond
    assert [limiter.acquire("a") for _ in range(6)].count(None) == 5
    assert limiter.limited == 3


def test_cost_larger_than_burst_runs_once_then_waits() -> None:
    clock = Clock()
    limiter = RateLimiter(100.0, 50, clock=clock)
    assert limiter.acquire("bulk", cost=500) is None  # a full bucket admits one oversize request
    wait = limiter.acquire("bulk", cost=1)
    assert wait == pytest.approx((450 + 1) / 100)
    clock.now += wait or 0
    assert limiter.acquire("bulk", cost=1) is None


def test_disabled_limiter_allows_everything() -> None:
    limiter = RateLimiter(0.0, 1)
    assert all(limiter.acquire("x", 1000) is None for _ in range(100))


def test_local_bucket_memory_is_bounded() -> None:
    bucket = LocalTokenBucket(1.0, 1, max_clients=3)
    for i in range(10):
        bucket.acquire(f"c{i}", 1, 0.0)
    assert len(bucket._buckets) == 3
    assert set(bucket._buckets) == {"c7", "c8", "c9"}


def test_gate_rate_limit(tmp_path: Path) -> None:
    clock = Clock()
    settings = SecuritySettings(
        auth=False, audit=False, data_dir=str(tmp_path), rate_limit_rps=2.0, rate_limit_burst=2
    )
    gate = SecurityGate.from_settings(settings, clock=clock)
    p = Principal("client", None, frozenset())
    assert gate.rate_limit(p) is None
    assert gate.rate_limit(p) is None
    retry = gate.rate_limit(p)
    assert retry == pytest.approx(0.5)
    assert gate.metrics()["rate_limited"] == 1
    clock.now += 0.5
    assert gate.rate_limit(p) is None
    gate.close()


# -- shared through Redis --------------------------------------------------------------------------
def test_redis_bucket_is_shared_across_workers(redis: RedisServer) -> None:
    clock = Clock(time.time())
    workers = [
        RateLimiter(10.0, 6, redis_backend=RedisBackend(redis.url), prefix="t1:", clock=clock)
        for _ in range(3)
    ]
    answers = [workers[i % 3].acquire("psp") for i in range(9)]
    assert answers[:6] == [None] * 6
    assert all(a is not None and a > 0 for a in answers[6:])
    clock.now += 0.1
    assert workers[2].acquire("psp") is None  # one token refilled, seen by every worker
    assert workers[0].acquire("psp") is not None
    assert workers[1].acquire("other") is None


def test_redis_oversize_cost(redis: RedisServer) -> None:
    clock = Clock(time.time())
    limiter = RateLimiter(100.0, 50, redis_backend=RedisBackend(redis.url), prefix="t2:", clock=clock)
    assert limiter.acquire("bulk", 500) is None
    assert limiter.acquire("bulk", 1) == pytest.approx(4.51, abs=0.01)


def test_falls_back_to_per_process_when_redis_dies_and_resumes() -> None:
    clock = Clock(time.time())
    breaker_clock = Clock(0.0)
    with redis_server() as server:
        port = server.port
        backend = RedisBackend(server.url, timeout_s=0.2, retry_s=5.0, clock=breaker_clock)
        limiter = RateLimiter(1.0, 3, redis_backend=backend, prefix="t3:", clock=clock)
        other = RateLimiter(1.0, 3, redis_backend=RedisBackend(server.url), prefix="t3:", clock=clock)
        assert other.acquire("psp") is None
        assert other.acquire("psp") is None
        assert limiter.acquire("psp") is None  # third shared token
        assert limiter.acquire("psp") is not None
    # Redis is gone: answers come from the per-process bucket at once, never an exception.
    started = time.monotonic()
    answers = [limiter.acquire("psp") for _ in range(5)]
    assert time.monotonic() - started < 1.0
    assert answers[:3] == [None] * 3
    assert answers[3] is not None
    assert not backend.healthy
    assert backend.failures == 1  # the breaker stopped further attempts
    with redis_server(port):
        assert limiter.acquire("psp") is not None  # still on the local bucket until retry_s passes
        breaker_clock.now += 5.0
        assert limiter.acquire("psp") is None  # back on a fresh shared bucket
        assert backend.healthy


@pytest.mark.parametrize("shared", [False, True], ids=["per-process", "redis"])
def test_acquire_many_answers_as_one_by_one(redis: RedisServer, shared: bool) -> None:
    """The batch script (and the per-process batch) against single acquisitions at the same moments,
    through refills, debt (a cost over the burst) and refusals."""
    clock = Clock()
    steps = [[1, 1, 1], [2, 1], [9], [1], [1, 1, 1, 1, 1], [0, 3]]
    advances = [0.0, 0.05, 0.3, 2.0, 0.1, 1.5]

    def limiter(prefix: str) -> RateLimiter:
        backend = RedisBackend(redis.url) if shared else None
        return RateLimiter(4.0, 5, redis_backend=backend, prefix=prefix, clock=clock)

    one, many = limiter("one:"), limiter("many:")
    for costs, advance in zip(steps, advances, strict=True):
        clock.now += advance
        expected = [one.acquire("c", c) for c in costs]
        got = many.acquire_many("c", costs)
        assert [w is None for w in got] == [w is None for w in expected], costs
        assert got == pytest.approx(expected, abs=1e-5)
    assert many.limited == one.limited > 0
