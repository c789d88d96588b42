"""GuardBatcher: single checks' enumeration questions to Redis, gathered per loop iteration and
answered off the event loop; the same answers as one by one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from app.security.gate import Principal, SecurityGate
from app.security.guard_batch import GuardBatcher
from app.security.settings import SecuritySettings
from tests.test_ratelimit import redis_server

IBAN = "DE89370400440532013000"
OTHER = "DE02120300000000202051"
NAMES = ["Anna Nowak", "Jan Nowak", "Eva Nowak", "Anna  NOWAK", "Piotr Nowak", "Jan Nowak"]


def _gate(tmp: Path, **kw: object) -> SecurityGate:
    settings = SecuritySettings(data_dir=str(tmp), audit=False, enum_max_names=2, **kw)  # type: ignore[arg-type]
    return SecurityGate.from_settings(settings, start_threads=False)


def test_one_batch_per_loop_iteration_with_the_answers_of_one_by_one(tmp_path: Path) -> None:
    alice, bob = Principal("alice", None, frozenset()), Principal("bob", None, frozenset())
    asks = (
        [(alice, IBAN, n) for n in NAMES] + [(bob, IBAN, n) for n in NAMES[:3]] + [(alice, OTHER, NAMES[2])]
    )
    local = _gate(tmp_path / "local")
    expected = [local.enumeration_guard(p, iban, name) for p, iban, name in asks]
    assert expected == [False, False, True, False, True, False, False, False, True, False]
    with redis_server() as server:
        gate = _gate(tmp_path / "shared", redis_url=server.url)
        batcher = GuardBatcher(gate)

        async def burst() -> list[bool]:
            return list(await asyncio.gather(*(batcher.over_cap(p, iban, name) for p, iban, name in asks)))

        started = time.monotonic()
        assert asyncio.run(burst()) == expected
        assert batcher.batches == 1  # all asked in one loop iteration: one batch (a script per client)
        assert time.monotonic() - started < 5
        assert gate.metrics()["redis_healthy"] == 1
        assert gate.metrics()["enumeration_forced"] == expected.count(True)
        gate.close()
    local.close()


def test_without_redis_the_guard_answers_in_place(tmp_path: Path) -> None:
    gate = _gate(tmp_path)
    batcher = GuardBatcher(gate)
    p = Principal("alice", None, frozenset())

    async def asks() -> list[bool]:
        return [await batcher.over_cap(p, IBAN, n) for n in NAMES[:3]]

    assert asyncio.run(asks()) == [False, False, True]
    assert batcher.batches == 0
    gate.close()


def test_a_redis_failure_falls_back_to_the_per_process_guard(tmp_path: Path) -> None:
    with redis_server() as server:
        url = server.url
    gate = _gate(tmp_path, redis_url=url, redis_timeout_s=0.05)  # the server is gone
    batcher = GuardBatcher(gate)
    p = Principal("alice", None, frozenset())

    async def asks() -> list[bool]:
        return list(await asyncio.gather(*(batcher.over_cap(p, IBAN, n) for n in NAMES[:3])))

    assert asyncio.run(asks()) == [False, False, True]
    assert gate.metrics()["redis_failures"] >= 1
    gate.close()
