"""ClientBatcher: single checks' rate-limit and enumeration questions to Redis, gathered per loop
iteration (one script per client) and answered off the event loop; the same answers as one by one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from app.security.client_batch import redis_batchers
from app.security.gate import Principal, SecurityGate
from app.security.settings import SecuritySettings
from tests.test_ratelimit import redis_server

IBAN = "DE89370400440532013000"
OTHER = "DE02120300000000202051"
NAMES = ["Anna Nowak", "Jan Nowak", "Eva Nowak", "Anna  NOWAK", "Piotr Nowak", "Jan Nowak"]
ALICE, BOB = Principal("alice", None, frozenset()), Principal("bob", None, frozenset())


def _gate(tmp: Path, **kw: object) -> SecurityGate:
    settings = SecuritySettings(
        data_dir=str(tmp), audit=False, enum_max_names=2, rate_limit_rps=1.0, rate_limit_burst=3, **kw
    )  # type: ignore[arg-type]
    return SecurityGate.from_settings(settings, start_threads=False)


def test_one_batch_per_loop_iteration_with_the_answers_of_one_by_one(tmp_path: Path) -> None:
    asks = [(ALICE, IBAN, n) for n in NAMES] + [(BOB, IBAN, n) for n in NAMES[:3]]
    asks.append((ALICE, OTHER, NAMES[2]))
    local = _gate(tmp_path / "local")
    guard_expected = [local.enumeration_guard(p, iban, name) for p, iban, name in asks]
    assert guard_expected == [False, False, True, False, True, False, False, False, True, False]
    clients = [ALICE, BOB, ALICE, ALICE, BOB, ALICE, ALICE]
    rate_expected = [local.rate_limit(p) is None for p in clients]
    assert rate_expected == [True, True, True, True, True, False, False]  # burst 3 per client
    with redis_server() as server:
        gate = _gate(tmp_path / "shared", redis_url=server.url)
        batchers = redis_batchers(gate)
        assert batchers is not None
        assert batchers.rate_limit is not None
        guard, rate = batchers.guard, batchers.rate_limit

        async def bursts() -> tuple[list[bool], list[float | None]]:
            # one event loop (the worker's): the asyncio Redis connections belong to it
            guarded = await asyncio.gather(*(guard.ask(p, (i, n)) for p, i, n in asks))
            waits = await asyncio.gather(*(rate.ask(p, 1) for p in clients))
            await gate.aclose()
            return list(guarded), list(waits)

        started = time.monotonic()
        guarded, waits = asyncio.run(bursts())
        assert guarded == guard_expected
        assert guard.batches == 1  # one batch: a script per client
        assert [w is None for w in waits] == rate_expected
        assert rate.batches == 1
        assert waits[-1] is not None
        assert 0 < waits[-1] <= 1.0
        assert time.monotonic() - started < 5
        metrics = gate.metrics()
        assert metrics["redis_healthy"] == 1
        assert metrics["redis_failures"] == 0
        assert metrics["enumeration_forced"] == guard_expected.count(True)
        assert metrics["rate_limited"] == 2
    local.close()


def test_without_redis_nothing_is_batched(tmp_path: Path) -> None:
    gate = _gate(tmp_path)
    assert redis_batchers(gate) is None
    gate.close()


def test_rate_limit_off_is_not_batched_with_redis(tmp_path: Path) -> None:
    with redis_server() as server:
        settings = SecuritySettings(
            data_dir=str(tmp_path), audit=False, rate_limit_rps=0.0, redis_url=server.url
        )
        gate = SecurityGate.from_settings(settings, start_threads=False)
        batchers = redis_batchers(gate)
        assert batchers is not None
        assert batchers.rate_limit is None
        gate.close()


def test_a_redis_failure_falls_back_to_the_per_process_limits(tmp_path: Path) -> None:
    with redis_server() as server:
        url = server.url
    gate = _gate(tmp_path, redis_url=url, redis_timeout_s=0.05)  # the server is gone
    batchers = redis_batchers(gate)
    assert batchers is not None
    assert batchers.rate_limit is not None
    guard, rate = batchers.guard, batchers.rate_limit

    async def bursts() -> tuple[list[bool], list[float | None]]:
        guarded = await asyncio.gather(*(guard.ask(ALICE, (IBAN, n)) for n in NAMES[:3]))
        waits = await asyncio.gather(*(rate.ask(ALICE, 1) for _ in range(4)))
        return list(guarded), list(waits)

    guarded, waits = asyncio.run(bursts())
    assert guarded == [False, False, True]
    assert [w is None for w in waits] == [True] * 3 + [False]
    assert gate.metrics()["redis_failures"] >= 1
    gate.close()
