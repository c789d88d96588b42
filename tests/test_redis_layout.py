"""Redis data contract: encode/decode, writers (MULTI/EXEC + stream), bulk read, operator load."""

# ruff: noqa: F811  (pytest fixtures imported from tests.redis_server are parameter names)
from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from matching.sources.parquet import write_snapshot
from matching.sources.redis_layout import (
    FIELDS_B,
    HashDecodeError,
    HashEncodeError,
    account_key,
    changes_key,
    connect,
    decode_hash,
    decode_values,
    delete_account,
    encode_account,
    load_snapshot_into_redis,
    upsert_account,
    write_accounts,
)
from matching.sources.redis_source import decode_batch, read_accounts
from tests.conftest import ACCOUNTS, IBAN_ORG, IBAN_PERSON, accounts_table
from tests.redis_server import RedisServer, redis_server  # noqa: F401


def _sorted(table: pa.Table) -> list[dict[str, object]]:
    return sorted(table.to_pylist(), key=lambda r: str(r["iban"]))


def test_encode_decode_roundtrip() -> None:
    for row in ACCOUNTS:
        fields = encode_account(row)
        assert decode_hash(row["iban"], {k.encode(): v for k, v in fields.items()}) == row
    assert "lei" not in encode_account(ACCOUNTS[0])  # optional fields absent, not empty


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ([b"not json", b"person", b"active", None, None, None], "names"),
        ([b"[]", b"person", b"active", None, None, None], "names"),
        ([b'["  "]', b"person", b"active", None, None, None], "names"),
        ([b'["A", 3]', b"person", b"active", None, None, None], "names"),
        ([b'["A"]', b"robot", b"active", None, None, None], "type"),
        ([b'["A"]', b"person", None, None, None, None], "status"),
        ([b'["A"]', b"person", b"active", b"\xff", None, None], "lei"),
        ([b'["A"]', b"person", b"active", None, None, b"{}"], "org_ids"),
        ([None, None, None, b"LEI", None, None], "names"),
    ],
)
def test_decode_errors_are_typed(values: list[bytes | None], field: str) -> None:
    with pytest.raises(HashDecodeError, match=field):
        decode_values(IBAN_PERSON, values)


def test_decode_absent_hash_is_none() -> None:
    assert decode_values(IBAN_PERSON, [None] * len(FIELDS_B)) is None
    with pytest.raises(HashDecodeError):
        decode_values("not-an-iban", [b'["A"]', b"person", b"active", None, None, None])


def test_encode_rejects_bad_rows() -> None:
    with pytest.raises(HashEncodeError):
        encode_account({**ACCOUNTS[0], "names": []})
    with pytest.raises(HashEncodeError):
        encode_account({**ACCOUNTS[0], "status": "gone"})


def test_decode_batch_fast_and_slow_paths_agree() -> None:
    good = [encode_account(r) for r in ACCOUNTS]
    replies = [[f.get(k.decode()) for k in FIELDS_B] for f in good]
    keys = [account_key("vop:", r["iban"]).encode() for r in ACCOUNTS]
    table, bad = decode_batch(keys, replies, len(b"vop:acct:"))
    assert bad == 0
    assert _sorted(table) == _sorted(accounts_table())
    # one bad row of each kind forces the row-by-row path; exactly the bad rows go
    broken = [
        *replies,
        [b'["x\n"]', b"person", b"active", None, None, None],
        [b'["a"]} {"n":["b"]', b"person", b"active", None, None, None],
        [b'["ok"]', b"alien", b"active", None, None, None],
        [b'["ok", null]', b"person", b"active", None, None, None],
        [None, None, None, b"x", None, None],
        [None] * 6,  # deleted between SCAN and HMGET: not counted as bad
    ]
    more_keys = [*keys, *(account_key("vop:", f"DE{i:02d}370400440532013000").encode() for i in range(6))]
    table, bad = decode_batch(more_keys, broken, len(b"vop:acct:"))
    assert bad == 5
    assert _sorted(table) == _sorted(accounts_table())
    # a non-IBAN key is skipped on the fast path too
    table, bad = decode_batch([b"vop:acct:hello", *keys], [replies[0], *replies], len(b"vop:acct:"))
    assert (table.num_rows, bad) == (len(ACCOUNTS), 1)


def test_write_read_roundtrip_and_stream(redis_server: RedisServer) -> None:
    client = connect(redis_server.url)
    last = write_accounts(client, accounts_table(), batch=2)
    assert last is not None
    assert client.xlen(changes_key("vop:")) == len(ACCOUNTS)
    result = read_accounts(client, batch=2)
    assert result.skipped == 0
    assert _sorted(result.table) == _sorted(accounts_table())
    # upsert replaces the whole hash (an optional field that is gone disappears) and logs it
    org = next(r for r in ACCOUNTS if r["iban"] == IBAN_ORG)
    sid = upsert_account(client, {**org, "lei": None, "names": ["Nordlicht AG"]})
    assert client.hget(account_key("vop:", IBAN_ORG), "lei") is None
    assert orjson.loads(client.hget(account_key("vop:", IBAN_ORG), "names") or b"") == ["Nordlicht AG"]
    sid2 = delete_account(client, IBAN_PERSON)
    entries = client.xrange(changes_key("vop:"), sid, sid2) or []
    assert [e[1] for e in entries] == [
        {b"op": b"upsert", b"iban": IBAN_ORG.encode()},
        {b"op": b"delete", b"iban": IBAN_PERSON.encode()},
    ]
    assert not client.exists(account_key("vop:", IBAN_PERSON))
    # junk under the prefix: a string key and a hash breaking the contract are skipped, counted
    client.set(account_key("vop:", "DE02370400440532013000"), "junk")
    client.hset(account_key("vop:", "DE12370400440532013000"), mapping={"names": "[1]", "type": "x"})
    result = read_accounts(client)
    assert (result.table.num_rows, result.skipped) == (len(ACCOUNTS) - 1, 2)


def test_prefix_with_glob_characters(redis_server: RedisServer) -> None:
    client = connect(redis_server.url)
    write_accounts(client, accounts_table(), prefix="t[1]*:")
    write_accounts(client, accounts_table().slice(0, 1), prefix="t1x:")
    assert read_accounts(client, "t[1]*:").table.num_rows == len(ACCOUNTS)


def test_load_snapshot_into_redis(redis_server: RedisServer, tmp_path: Path) -> None:
    path = tmp_path / "snap.parquet"
    write_snapshot(accounts_table(), path)
    done: list[int] = []
    summary = load_snapshot_into_redis(redis_server.url, path, "vop:", done.append)
    assert summary.accounts == len(ACCOUNTS)
    assert summary.stream_length == len(ACCOUNTS)
    assert summary.last_stream_id
    assert done[-1] == len(ACCOUNTS)
    bad = accounts_table().set_column(3, "status", pa.array(["gone"] * len(ACCOUNTS)))
    write_snapshot(bad, tmp_path / "bad.parquet")
    client = connect(redis_server.url)
    client.flushdb()
    with pytest.raises(HashEncodeError, match="status"):
        load_snapshot_into_redis(redis_server.url, tmp_path / "bad.parquet")
    assert client.dbsize() == 0  # nothing written
