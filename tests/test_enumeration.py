"""Name-enumeration guard: trigger, recovery and bounded memory with an injected clock; shared through a
real redis-server (free port), with the per-process fallback when it dies."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.security.enumeration import EnumerationGuard, LocalEnumerationGuard
from app.security.gate import Principal, SecurityGate
from app.security.pseudonym import Pseudonymiser, canonical_name, canonical_names
from app.security.redis_backend import RedisBackend
from app.security.settings import SecuritySettings
from tests.test_ratelimit import Clock, RedisServer, redis_server

IBAN = "DE89370400440532013000"
OTHER_IBAN = "DE02120300000000202051"
KEY = b"k" * 32
NAMES = ["Max Mustermann", "Erika Mustermann", "Hans Meier", "Anna Schmidt", "Peter Weber"]


def make_guard(clock: Clock, **kw: object) -> EnumerationGuard:
    return EnumerationGuard(Pseudonymiser(KEY), 5, 600.0, clock=clock, **kw)  # type: ignore[arg-type]


def test_cap_triggers_and_window_recovers() -> None:
    clock = Clock()
    guard = make_guard(clock)
    assert [guard.over_cap("c", IBAN, n) for n in NAMES] == [False] * 5
    assert guard.over_cap("c", IBAN, "Sixth Person") is True
    assert guard.over_cap("c", IBAN, "Seventh Person") is True
    # Names already tried keep their real answer; other IBANs and other clients are separate.
    assert guard.over_cap("c", IBAN, "Max Mustermann") is False
    assert guard.over_cap("c", OTHER_IBAN, "Sixth Person") is False
    assert guard.over_cap("d", IBAN, "Sixth Person") is False
    assert guard.forced == 2
    clock.now += 599
    assert guard.over_cap("c", IBAN, "Sixth Person") is True
    clock.now += 1  # the first five names leave the window
    assert guard.over_cap("c", IBAN, "Sixth Person") is False


def test_sliding_window_counts_from_first_try() -> None:
    clock = Clock()
    guard = make_guard(clock)
    for i, name in enumerate(NAMES):
        clock.now = 1_000_000.0 + i * 100
        assert not guard.over_cap("c", IBAN, name)
    clock.now = 1_000_000.0 + 600  # only the first name has expired
    assert not guard.over_cap("c", IBAN, "New One")
    assert guard.over_cap("c", IBAN, "New Two")


def test_spelling_variants_are_one_name() -> None:
    assert canonical_name("Max  Mustermann") == canonical_name("mustermann, MAX")
    clock = Clock()
    guard = make_guard(clock)
    variants = ["Max Mustermann", "max mustermann", "Mustermann, Max", "MAX-MUSTERMANN", " max mustermann "]
    for variant in variants * 3:
        assert not guard.over_cap("c", IBAN, variant)
    assert guard.over_cap("c", IBAN.lower(), "Someone Else") is False  # 2nd distinct name, same IBAN


def test_memory_is_bounded() -> None:
    local = LocalEnumerationGuard(2, 600.0, max_keys=10)
    for i in range(100):  # the keys are the per-process pseudonyms (ints), as _local_keys makes them
        local.over_cap("c", 1000 + i, 1, 0.0)
    assert len(local._seen) == 10
    for i in range(50):
        local.over_cap("c", 1099, 2000 + i, 1.0)
    assert len(local._seen[("c", 1099)]) == 2  # at most max_names per key


def test_only_pseudonyms_are_held() -> None:
    guard = make_guard(Clock())
    guard.over_cap("client", IBAN, "Max Mustermann")
    held = repr(guard._local._seen)
    assert IBAN not in held
    assert "Mustermann" not in held


def test_gate_enumeration_guard(tmp_path: Path) -> None:
    clock = Clock()
    settings = SecuritySettings(
        auth=False, audit=False, data_dir=str(tmp_path), enum_max_names=2, enum_window_s=60.0
    )
    gate = SecurityGate.from_settings(settings, clock=clock)
    p = Principal("c", None, frozenset())
    assert not gate.enumeration_guard(p, IBAN, "A Name")
    assert not gate.enumeration_guard(p, IBAN, "B Name")
    assert gate.enumeration_guard(p, IBAN, "C Name")
    assert gate.metrics()["enumeration_forced"] == 1
    clock.now += 60
    assert not gate.enumeration_guard(p, IBAN, "C Name")
    gate.close()


def _shared(server: RedisServer, clock: Clock, **kw: object) -> EnumerationGuard:
    return make_guard(clock, redis_backend=RedisBackend(server.url, **kw), prefix="e:")  # type: ignore[arg-type]


def test_shared_through_redis_and_fallback() -> None:
    clock = Clock(time.time())
    with redis_server() as server:
        a, b = _shared(server, clock), _shared(server, clock)
        for i, name in enumerate(NAMES):
            assert not (a if i % 2 else b).over_cap("c", IBAN, name)
        assert a.over_cap("c", IBAN, "Sixth Person")  # both workers count toward one cap
        assert b.over_cap("c", IBAN, "Sixth Person")
        assert not b.over_cap("c", IBAN, "Hans Meier")
        clock.now += 600
        assert not a.over_cap("c", IBAN, "Sixth Person")
    # Redis died: the per-process guard answers at once and never raises.
    started = time.monotonic()
    assert not a.over_cap("c", OTHER_IBAN, "Fallback Name")
    assert time.monotonic() - started < 1.0
    assert [a.over_cap("c", OTHER_IBAN, f"Name {i}") for i in range(5)] == [False] * 4 + [True]


def _bulk_pairs() -> list[tuple[str, str]]:
    """A bulk request's (iban, name) pairs: seven names on one IBAN (two over the cap), a repeat of an
    allowed name, a case/spacing variant of one, and names on a second IBAN."""
    names = [*NAMES, "Sixth Person", "Seventh Person"]
    pairs = [(IBAN, n) for n in names] + [(IBAN, NAMES[0]), (IBAN.lower(), "  max  MUSTERMANN ")]
    return pairs + [(OTHER_IBAN, n) for n in names[:3]]


EXPECTED_BULK = [False] * 5 + [True, True] + [False, False] + [False] * 3


def test_many_answers_as_one_by_one() -> None:
    one_by_one = make_guard(Clock())
    assert [one_by_one.over_cap("c", i, n) for i, n in _bulk_pairs()] == EXPECTED_BULK
    batch = make_guard(Clock())
    assert batch.over_cap_many("c", _bulk_pairs()) == EXPECTED_BULK
    assert batch.forced == 2
    assert batch.over_cap_many("c", [(IBAN, "Eighth Person"), (IBAN, NAMES[1])]) == [True, False]


def test_many_through_redis_shares_the_cap_and_falls_back() -> None:
    clock = Clock(time.time())
    with redis_server() as server:
        a, b = _shared(server, clock), _shared(server, clock)
        assert a.over_cap_many("c", _bulk_pairs()) == EXPECTED_BULK
        assert b.over_cap("c", IBAN, "Sixth Person")  # the batch counted toward the shared cap
        assert not b.over_cap("c", IBAN, NAMES[4])
        many = [(f"DE{i:020d}", "Some Name") for i in range(2500)]  # three chunks
        assert a.over_cap_many("c", many) == [False] * 2500
    started = time.monotonic()
    assert a.over_cap_many("c", _bulk_pairs()) == EXPECTED_BULK  # Redis gone: per-process guard
    assert time.monotonic() - started < 1.0


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([IBAN, OTHER_IBAN, IBAN.lower()]),
            st.sampled_from([*NAMES, "max  MUSTERMANN", "Mustermann, Max", "Ö Ü", "Straße"]),
            st.sampled_from([0.0, 0.0, 1.0, 300.0]),
        ),
        max_size=40,
    ),
    st.integers(1, 4),
)
def test_batches_answer_as_one_by_one_over_time(steps: list[tuple[str, str, float]], cap: int) -> None:
    """Batches at several moments (the window sliding between them) answer as single checks do."""
    one_clock, many_clock = Clock(), Clock()
    one = EnumerationGuard(Pseudonymiser(KEY), cap, 600.0, clock=one_clock)
    many = EnumerationGuard(Pseudonymiser(KEY), cap, 600.0, clock=many_clock)
    expected: list[bool] = []
    got: list[bool] = []
    batch: list[tuple[str, str]] = []
    for iban, name, advance in steps:
        if advance:  # a batch is answered at one moment; the next one comes later
            got += many.over_cap_many("c", batch)
            batch = []
            one_clock.now += advance
            many_clock.now += advance
        expected.append(one.over_cap("c", iban, name))
        batch.append((iban, name))
    got += many.over_cap_many("c", batch)
    assert got == expected
    assert many.forced == one.forced


class ReferenceGuard:
    """The per-process rule written out: (client, IBAN) entries, least recently used first."""

    def __init__(self, max_names: int, window_s: float, max_keys: int) -> None:
        self.max_names, self.window_s, self.max_keys = max_names, window_s, max_keys
        self.entries: list[tuple[tuple[str, int], dict[int, float]]] = []

    def over_cap(self, client: str, iban: int, name: int, now: float) -> bool:
        for i, (key, names) in enumerate(self.entries):
            if key == (client, iban):
                self.entries.append(self.entries.pop(i))  # now the most recently used
                for old in [n for n, first in names.items() if first <= now - self.window_s]:
                    del names[old]
                if name in names:
                    return False
                if len(names) >= self.max_names:
                    return True
                names[name] = now
                return False
        self.entries.append(((client, iban), {name: now}))
        if len(self.entries) > self.max_keys:
            del self.entries[0]
        return False


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["c", "d"]),
            st.integers(0, 3),  # IBAN keys
            st.integers(0, 2),  # name keys
            st.sampled_from([0.0, 0.0, 0.0, 1.0, 599.0, 601.0]),
            st.booleans(),  # this step goes through over_cap_many (else over_cap)
        ),
        max_size=60,
    ),
    st.integers(1, 3),
    st.integers(1, 4),
)
@example(  # a name tried again after its window counts afresh, and then it is the one counted
    steps=[("c", 0, 0, 0.0, False), ("c", 0, 0, 601.0, False), ("c", 0, 1, 0.0, False)], cap=1, max_keys=2
)
def test_per_process_guard_follows_its_rule(
    steps: list[tuple[str, int, int, float, bool]], cap: int, max_keys: int
) -> None:
    """The LRU gives the rule's answers through expiry, the cap, repeats and evictions, one by one
    and in batches (over_cap_many's inline branch for a fresh IBAN included)."""
    guard, reference = LocalEnumerationGuard(cap, 600.0, max_keys), ReferenceGuard(cap, 600.0, max_keys)
    now = 0.0
    batch: list[tuple[int, int]] = []
    batch_client = "c"
    got: list[bool] = []
    want: list[bool] = []
    for client, iban, name, advance, in_batch in steps:
        if batch and (advance or not in_batch or client != batch_client):  # a batch is one moment
            got += guard.over_cap_many(batch_client, batch, now)
            batch = []
        now += advance
        want.append(reference.over_cap(client, iban, name, now))
        if in_batch:
            batch_client = client
            batch.append((iban, name))
        else:
            got.append(guard.over_cap(client, iban, name, now))
        assert len(guard._seen) <= max_keys
    got += guard.over_cap_many(batch_client, batch, now) if batch else []
    assert got == want
    assert len(guard._seen) == len(reference.entries)


NAME_CHARS = st.sampled_from(list("aZ9_ .,'-&/\t\x1féÉßøŁçñ\u0308\u00a0\u2019\u2013ﬁ½²ǅ\x00"))


@given(st.lists(st.text(max_size=20), max_size=20) | st.lists(st.text(NAME_CHARS, max_size=12), max_size=20))
@settings(max_examples=400)
def test_canonical_names_equal_one_by_one(names: list[str]) -> None:
    """Any text, and name-like text (letters with and without diacritics, ASCII punctuation, the
    non-word characters that send a batch one by one, NUL) comes out as ``canonical_name``'s."""
    assert canonical_names(names) == [canonical_name(n) for n in names]


@given(st.lists(st.text(NAME_CHARS, max_size=12), max_size=10))
def test_name_pseudonyms_of_a_batch_equal_one_by_one(names: list[str]) -> None:
    pseudonyms = Pseudonymiser(b"k" * 32)
    assert pseudonyms.names(names) == [pseudonyms.name(n) for n in names]


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.sampled_from([IBAN, OTHER_IBAN, IBAN.lower()]),
            st.sampled_from([*NAMES[:3], "Max  MUSTERMANN", "Sixth Person"]),
            st.sampled_from([0.0, 0.0, 0.0, 1.0, 599.0, 601.0]),
            st.booleans(),  # this step goes through the batch script (else the single-check one)
        ),
        max_size=30,
    ),
    st.integers(1, 3),
)
def test_redis_scripts_answer_as_the_per_process_guard(
    shared_redis: RedisServer, steps: list[tuple[str, str, float, bool]], cap: int
) -> None:
    """Both Lua scripts (with their shortcut for an IBAN holding no names) against the per-process
    rule, through pruning, repeats and the cap, with batches answered at one moment."""
    clock = Clock(time.time())
    prefix = f"p{uuid.uuid4().hex}:"
    backend = RedisBackend(shared_redis.url)
    pseudonyms = Pseudonymiser(KEY)
    shared = EnumerationGuard(pseudonyms, cap, 600.0, clock=clock, redis_backend=backend, prefix=prefix)
    local = EnumerationGuard(pseudonyms, cap, 600.0, clock=clock)
    batch: list[tuple[str, str]] = []
    got: list[bool] = []
    want: list[bool] = []
    for iban, name, advance, in_batch in steps:
        if advance or not in_batch:
            got += shared.over_cap_many("c", batch) if batch else []
            want += local.over_cap_many("c", batch) if batch else []
            batch = []
        clock.now += advance
        if in_batch:
            batch.append((iban, name))
        else:
            got.append(shared.over_cap("c", iban, name))
            want.append(local.over_cap("c", iban, name))
    got += shared.over_cap_many("c", batch) if batch else []
    want += local.over_cap_many("c", batch) if batch else []
    assert got == want
    assert backend.healthy  # answered by Redis, not by its fallback


class _SwitchingLRU(OrderedDict[tuple[str, int], dict[int, float]]):
    """An LRU table that lets another thread run inside ``move_to_end``: where, without a lock, an
    eviction could take the entry being touched (a Redis outage sends the bulk route's fallback
    through its helper thread while single checks fall back on the event loop's)."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.Event()

    def move_to_end(self, key: tuple[str, int], last: bool = True) -> None:
        self.inside.set()
        time.sleep(0.05)  # (the other thread evicts this entry now, unless a lock keeps it out)
        super().move_to_end(key, last)


def test_per_process_guard_is_one_caller_at_a_time() -> None:
    local = LocalEnumerationGuard(5, 600.0, max_keys=1)
    local._seen = table = _SwitchingLRU()
    assert not local.over_cap("c", 1, 1, 0.0)
    failures: list[BaseException] = []

    def touch() -> None:  # a second name on the held IBAN: over_cap's move_to_end branch
        try:
            local.over_cap("c", 1, 2, 0.0)
        except Exception as exc:  # (the failure is the finding)
            failures.append(exc)

    toucher = threading.Thread(target=touch)
    toucher.start()
    assert table.inside.wait(5)  # the toucher is inside move_to_end
    assert local.over_cap_many("d", [(7, 1)], 0.0) == [False]  # a fresh IBAN: evicts the oldest
    toucher.join()
    assert failures == []
    assert list(local._seen) == [("d", 7)]
