"""RedisIndexSource against a real redis-server: load, follow, gaps, faults, cache, atomic swaps."""

# ruff: noqa: F811  (pytest fixtures imported from tests.redis_server are parameter names)
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from matching.iban import with_check_digits
from matching.model import Check
from matching.overlay import IndexLike, OverlayIndex, compact
from matching.sources import redis_source
from matching.sources.redis_layout import (
    account_key,
    changes_key,
    connect,
    delete_account,
    encode_account,
    upsert_account,
    write_accounts,
)
from matching.sources.redis_source import RedisIndexSource, RedisSourceSettings
from matching.verify import verify
from tests.conftest import ACCOUNTS, IBAN_CLOSED, IBAN_JOINT, IBAN_ORG, IBAN_PERSON, accounts_table
from tests.redis_server import RedisServer, redis_server, restartable_redis  # noqa: F401

FAST = RedisSourceSettings(
    block_ms=100,
    socket_timeout_s=1.0,
    connect_timeout_s=0.5,
    backoff_base_s=0.05,
    backoff_max_s=0.3,
    max_staleness_s=2.0,
)


def iban(n: int) -> str:
    return with_check_digits("DE", f"{10_000_000 + n:08d}{n:010d}")


def person(i: str, name: str, status: str = "active") -> dict[str, Any]:
    return {
        "iban": i,
        "names": [name],
        "type": "person",
        "status": status,
        "lei": None,
        "any_bic": None,
        "org_ids": [],
    }


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def code(index: IndexLike | None, account: str, name: str) -> str:
    assert index is not None
    return verify(index, [Check(account, name)])[0].code  # type: ignore[arg-type]


class Holder:
    def __init__(self) -> None:
        self.index: IndexLike | None = None
        self.versions: list[int] = []

    def __call__(self, index: IndexLike) -> None:
        self.versions.append(index.version)
        self.index = index


@pytest.fixture
def source_factory() -> Iterator[Callable[..., tuple[RedisIndexSource, Holder]]]:
    started: list[RedisIndexSource] = []

    def make(
        url: str, settings: RedisSourceSettings = FAST, prefix: str = "vop:"
    ) -> tuple[RedisIndexSource, Holder]:
        src = RedisIndexSource(url, prefix, settings)
        holder = Holder()
        src.start(holder)
        started.append(src)
        return src, holder

    yield make
    for src in started:
        src.stop()


Factory = Callable[..., tuple[RedisIndexSource, Holder]]


def test_full_load_and_changes_visible(
    redis_server: RedisServer,
    source_factory: Factory,
) -> None:
    client = connect(redis_server.url)
    write_accounts(client, accounts_table())
    src, holder = source_factory(redis_server.url)
    assert src.wait_ready(10)
    assert len(holder.index or ()) == len(ACCOUNTS)
    assert code(holder.index, IBAN_PERSON, "Max Mustermann") == "MTCH"
    assert code(holder.index, IBAN_CLOSED, "Franziska Rossi") == "NOAP"
    st = src.status()
    assert st.ready
    assert st.full_loads == 1
    assert st.accounts == len(ACCOUNTS)
    assert "127.0.0.1" in holder.index.source  # type: ignore[union-attr]

    new = iban(1)
    upsert_account(client, person(new, "Erika Musterfrau"))  # new account
    upsert_account(client, person(IBAN_PERSON, "Moritz Mustermann"))  # rename
    delete_account(client, IBAN_JOINT)  # delete
    wait_for(lambda: src.status().changes_applied == 3, what="3 changes")
    idx = holder.index
    assert code(idx, new, "Erika Musterfrau") == "MTCH"
    assert code(idx, IBAN_PERSON, "Moritz Mustermann") == "MTCH"
    assert code(idx, IBAN_PERSON, "Max Mustermann") != "MTCH"
    assert code(idx, IBAN_JOINT, "Ioana Martínez") == "NOAP"
    assert len(idx or ()) == len(ACCOUNTS)  # +1 -1
    assert code(idx, IBAN_ORG, "Nordlicht Logistik GmbH") == "MTCH"  # untouched base row
    out = verify(idx, [Check(IBAN_ORG, lei="529900T8BM49AURSDO55"), Check(new, lei="X")])  # type: ignore[arg-type]
    assert [o.code for o in out] == ["MTCH", "NOAP"]
    st = src.status()
    assert st.connected
    assert not st.stale
    assert st.last_id is not None
    assert st.last_change_at is not None


def test_two_changes_to_one_account_apply_in_order(
    redis_server: RedisServer, source_factory: Factory
) -> None:
    client = connect(redis_server.url)
    write_accounts(client, accounts_table())
    src, holder = source_factory(redis_server.url)
    assert src.wait_ready(10)
    a = iban(2)
    pipe = client.pipeline(transaction=False)  # both changes queued back to back
    for name in ("First Name", "Second Name"):
        pipe.delete(account_key("vop:", a))
        pipe.hset(account_key("vop:", a), mapping=encode_account(person(a, name)))  # type: ignore[arg-type]
        pipe.xadd(changes_key("vop:"), {"op": "upsert", "iban": a})
    pipe.execute()
    upsert_account(client, person(IBAN_PERSON, "Anna Alt"))
    delete_account(client, IBAN_PERSON)
    wait_for(lambda: src.status().changes_applied == 4, what="4 changes")
    assert code(holder.index, a, "Second Name") == "MTCH"
    assert code(holder.index, IBAN_PERSON, "Anna Alt") == "NOAP"


def test_trimmed_while_stopped_forces_full_reload(
    redis_server: RedisServer, source_factory: Factory, tmp_path: Path
) -> None:
    client = connect(redis_server.url)
    write_accounts(client, accounts_table())
    settings = msgspec_replace(FAST, cache_path=str(tmp_path / "cache.parquet"))
    src, _ = source_factory(redis_server.url, settings)
    assert src.wait_ready(10)
    wait_for((tmp_path / "cache.parquet").exists, what="cache file")
    src.stop()
    upsert_account(client, person(IBAN_PERSON, "Paul Neu"))
    client.xtrim(changes_key("vop:"), maxlen=0, approximate=False)
    src2, holder2 = source_factory(redis_server.url, settings)
    wait_for(lambda: src2.status().full_loads == 1, what="full reload")
    st = src2.status()
    assert st.loaded_from_cache
    assert st.gaps == 1
    assert code(holder2.index, IBAN_PERSON, "Paul Neu") == "MTCH"


def test_trimmed_while_following_forces_full_reload(
    redis_server: RedisServer, source_factory: Factory
) -> None:
    client = connect(redis_server.url)
    write_accounts(client, accounts_table())
    src, holder = source_factory(redis_server.url)
    assert src.wait_ready(10)
    pipe = client.pipeline(transaction=True)  # the change and a trim past it land together
    pipe.hset(account_key("vop:", IBAN_PERSON), mapping=encode_account(person(IBAN_PERSON, "Paul Neu")))  # type: ignore[arg-type]
    pipe.xadd(changes_key("vop:"), {"op": "upsert", "iban": IBAN_PERSON})
    pipe.xadd(changes_key("vop:"), {"op": "upsert", "iban": IBAN_ORG})
    pipe.xtrim(changes_key("vop:"), maxlen=1, approximate=False)
    pipe.execute()
    wait_for(lambda: src.status().full_loads == 2, what="full reload")
    assert src.status().gaps == 1
    assert code(holder.index, IBAN_PERSON, "Paul Neu") == "MTCH"
    # a trim that only drops entries we already applied is not a gap
    upsert_account(client, person(IBAN_PERSON, "Paula Neu"))
    wait_for(lambda: code(holder.index, IBAN_PERSON, "Paula Neu") == "MTCH", what="change")
    client.xtrim(changes_key("vop:"), maxlen=0, approximate=False)
    upsert_account(client, person(IBAN_PERSON, "Paulina Neu"))
    wait_for(lambda: code(holder.index, IBAN_PERSON, "Paulina Neu") == "MTCH", what="change")
    assert src.status().gaps == 1


def test_redis_outage_keeps_serving_and_catches_up(
    restartable_redis: RedisServer, source_factory: Factory
) -> None:
    client = connect(restartable_redis.url, socket_timeout=2, connect_timeout=1)
    write_accounts(client, accounts_table())
    src, holder = source_factory(restartable_redis.url)
    assert src.wait_ready(10)
    for n in range(5):
        upsert_account(client, person(iban(100 + n), f"Before Outage{n}"))
    wait_for(lambda: src.status().changes_applied == 5, what="5 changes")
    client.close()
    restartable_redis.kill()
    wait_for(lambda: not src.status().connected, what="disconnect")
    idx = holder.index
    assert code(idx, iban(104), "Before Outage4") == "MTCH"  # last data still answers
    assert code(idx, IBAN_PERSON, "Max Mustermann") == "MTCH"
    time.sleep(0.5)
    assert src.status().errors >= 1
    restartable_redis.start()
    client = connect(restartable_redis.url, socket_timeout=2, connect_timeout=1)
    for n in range(5):
        upsert_account(client, person(iban(200 + n), f"After Outage{n}"))
    delete_account(client, iban(100))
    wait_for(lambda: src.status().changes_applied == 11, what="11 changes")
    st = src.status()
    assert st.connected
    assert st.full_loads == 1  # resumed from the last id, no reload
    assert st.gaps == 0
    assert all(code(holder.index, iban(200 + n), f"After Outage{n}") == "MTCH" for n in range(5))
    assert all(code(holder.index, iban(100 + n), f"Before Outage{n}") == "MTCH" for n in range(1, 5))
    assert code(holder.index, iban(100), "Before Outage0") == "NOAP"


def test_change_during_full_load_is_not_lost(
    redis_server: RedisServer,
    source_factory: Factory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = connect(redis_server.url)
    write_accounts(client, accounts_table())
    original = redis_source.read_accounts
    during = iban(7)

    def read_with_concurrent_writes(*args: Any, **kwargs: Any) -> Any:
        upsert_account(client, person(during, "Written During Load"))
        result = original(*args, **kwargs)
        upsert_account(client, person(IBAN_PERSON, "Renamed During Load"))
        return result

    monkeypatch.setattr(redis_source, "read_accounts", read_with_concurrent_writes)
    src, holder = source_factory(redis_server.url)
    assert src.wait_ready(10)
    wait_for(lambda: src.status().changes_applied >= 2, what="replayed changes")
    assert code(holder.index, during, "Written During Load") == "MTCH"
    assert code(holder.index, IBAN_PERSON, "Renamed During Load") == "MTCH"


def test_no_mixed_state_during_swaps(
    redis_server: RedisServer,
    source_factory: Factory,
) -> None:
    """Accounts are renamed in pairs, both in one MULTI/EXEC: a reader must never see them differ."""
    pairs = [(iban(1000 + 2 * p), iban(1001 + 2 * p)) for p in range(20)]
    client = connect(redis_server.url)
    rows = [person(i, "Gen Zero") for pair in pairs for i in pair]
    write_accounts(client, accounts_table(rows))
    # batch_size 1 splits the pairs across rounds; compactions swap bases under the readers; no
    # backlog publish (max_settle_s), which by design may show an intermediate state.
    settings = msgspec_replace(FAST, compact_max_entries=15, batch_size=1, max_settle_s=60.0)
    src, holder = source_factory(redis_server.url, settings)
    assert src.wait_ready(10)
    stop = threading.Event()
    problems: list[str] = []
    reads = [0]

    def hammer() -> None:
        while not stop.is_set():
            idx = holder.index
            assert idx is not None
            for a, b in pairs:
                ra, rb = idx.registered(idx.lookup([a, b]).tolist())
                if ra.names != rb.names:
                    problems.append(f"v{idx.version}")
                reads[0] += 1
                outcomes = verify(idx, [Check(a, ra.names[0]), Check(b, ra.names[0])])  # type: ignore[arg-type]
                if {o.code for o in outcomes} != {"MTCH"}:
                    problems.append(f"verify v{idx.version}")
            # A pass over the pairs is ~20 requests' worth of reads; the service's event loop lets
            # go of the GIL between requests too (else the follower waits 5 ms per GIL hand-off).
            time.sleep(0)

    readers = [threading.Thread(target=hammer) for _ in range(2)]
    for t in readers:
        t.start()
    gens = 150
    for g in range(1, gens + 1):
        a, b = pairs[g % len(pairs)]
        pipe = client.pipeline(transaction=True)
        for i in (a, b):
            pipe.delete(account_key("vop:", i))
            pipe.hset(account_key("vop:", i), mapping=encode_account(person(i, f"Gen Number{g}")))  # type: ignore[arg-type]
            pipe.xadd(changes_key("vop:"), {"op": "upsert", "iban": i})
        pipe.execute()
        if g % 3 == 0:
            time.sleep(0.002)  # let the follower publish many versions, not one
        if g % 10 == 0:  # and make sure it does, however slow it is next to the readers
            wait_for(lambda g=g: src.status().changes_applied == 2 * g, what=f"generation {g}")
    wait_for(lambda: src.status().changes_applied == 2 * gens, what="all changes")
    wait_for(lambda: src.status().compactions >= 1, what="a compaction swap")
    stop.set()
    for t in readers:
        t.join()
    assert not problems, problems[:5]
    assert reads[0] > 100
    assert len(holder.versions) > 10
    a, b = pairs[gens % len(pairs)]
    assert holder.index is not None
    assert [r.names for r in holder.index.registered(holder.index.lookup([a, b]).tolist())] == [
        [f"Gen Number{gens}"]
    ] * 2


def test_local_cache_restart(
    redis_server: RedisServer,
    source_factory: Factory,
    tmp_path: Path,
) -> None:
    client = connect(redis_server.url)
    write_accounts(client, accounts_table())
    cache = tmp_path / "cache" / "snap.parquet"
    settings = msgspec_replace(FAST, cache_path=str(cache))
    src, _ = source_factory(redis_server.url, settings)
    assert src.wait_ready(10)
    wait_for(cache.exists, what="cache file")
    src.stop()
    upsert_account(client, person(IBAN_PERSON, "Cached Then Changed"))
    src2, holder2 = source_factory(redis_server.url, settings)
    assert src2.wait_ready(10)
    wait_for(lambda: src2.status().changes_applied == 1, what="catch-up")
    st = src2.status()
    assert st.loaded_from_cache
    assert st.full_loads == 0
    assert code(holder2.index, IBAN_PERSON, "Cached Then Changed") == "MTCH"
    src2.stop()
    # Redis down at start: the cache alone makes the worker ready (flagged stale)
    redis_server.kill()
    src3, holder3 = source_factory(redis_server.url, settings)
    assert src3.wait_ready(10)
    assert code(holder3.index, IBAN_ORG, "Nordlicht Logistik GmbH") == "MTCH"
    st = src3.status()
    assert st.stale
    assert not st.connected


def test_bad_hash_data_skipped_and_counted(
    redis_server: RedisServer,
    source_factory: Factory,
) -> None:
    client = connect(redis_server.url)
    write_accounts(client, accounts_table())
    client.hset(
        account_key("vop:", iban(1)), mapping={"names": "not json", "type": "person", "status": "active"}
    )
    client.set(account_key("vop:", iban(2)), "a string, not a hash")
    src, holder = source_factory(redis_server.url)
    assert src.wait_ready(10)
    assert src.status().bad_records == 2
    assert len(holder.index or ()) == len(ACCOUNTS)
    # a change that leaves a broken hash: that account answers NOAP, counted, nothing crashes
    client.hset(account_key("vop:", IBAN_PERSON), "status", "zombie")
    client.xadd(changes_key("vop:"), {"op": "upsert", "iban": IBAN_PERSON})
    client.xadd(changes_key("vop:"), {"op": "upsert"})  # entry without an IBAN
    upsert_account(client, person(iban(3), "Still Working"))
    wait_for(lambda: src.status().changes_applied == 3, what="changes")
    assert code(holder.index, IBAN_PERSON, "Max Mustermann") == "NOAP"
    assert code(holder.index, iban(3), "Still Working") == "MTCH"
    assert src.status().bad_records == 4


def test_reload_that_would_empty_the_index_is_refused(
    redis_server: RedisServer, source_factory: Factory
) -> None:
    client = connect(redis_server.url)
    write_accounts(client, accounts_table())
    src, holder = source_factory(redis_server.url)
    assert src.wait_ready(10)
    client.flushdb()  # stream and hashes gone (e.g. failover to an empty replica)
    wait_for(lambda: src.status().gaps >= 1 and src.status().errors >= 1, what="refused reload")
    assert src.status().full_loads == 1
    assert code(holder.index, IBAN_PERSON, "Max Mustermann") == "MTCH"


def test_compaction_matches_overlay() -> None:
    from matching.index import AccountIndex

    long_iban = with_check_digits("FR", "1234567890123456789012345")
    base = AccountIndex.build(accounts_table(), source="t")
    overlay = OverlayIndex.over(base).apply(
        [
            (IBAN_PERSON, person(IBAN_PERSON, "Neu Name")),
            (IBAN_JOINT, None),
            (iban(9), person(iban(9), "Ganz Neu")),
            (long_iban, person(long_iban, "Long Iban")),
        ]
    )
    merged = compact(overlay)
    probe = [r["iban"] for r in ACCOUNTS] + [iban(9), long_iban, iban(10)]
    assert len(merged) == len(overlay) == len(ACCOUNTS) + 1
    for acct in probe:
        ro, rm = overlay.lookup([acct])[0], merged.lookup([acct])[0]
        assert (ro < 0) == (rm < 0)
        if ro >= 0:
            assert overlay.registered([ro]) == merged.registered([rm])
            assert overlay.identifiers(int(ro)) == merged.identifiers(int(rm))
    for batch in (probe, probe * 20):  # key by key, and one array search (from 16 IBANs)
        rows = overlay.lookup(batch).tolist()
        assert overlay.lookup_rows(batch) == rows
        assert [r >= 0 for r in rows] == [r >= 0 for r in merged.lookup_rows(batch)]
        assert rows[probe.index(IBAN_JOINT)] == -1  # deleted in the overlay


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        RedisSourceSettings(batch_size=0)
    with pytest.raises(ValueError, match="jitter"):
        RedisSourceSettings(backoff_jitter=2)


def test_unreachable_redis_never_ready_and_counts_errors(source_factory: Factory) -> None:
    from tests.redis_server import free_port

    src, holder = source_factory(f"redis://127.0.0.1:{free_port()}/0")
    assert not src.wait_ready(0.5)
    st = src.status()
    assert not st.ready
    assert st.errors >= 1
    assert holder.index is None
    assert isinstance(st.last_error, str)
    assert issubclass(redis.ConnectionError, redis.RedisError)


def msgspec_replace(settings: RedisSourceSettings, **changes: Any) -> RedisSourceSettings:
    import msgspec

    return msgspec.structs.replace(settings, **changes)
