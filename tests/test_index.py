"""Account index: contract checks, lookups, immutability; snapshot files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import matching.index as mi
from matching.index import AccountIndex, IndexBuildError
from matching.sources.parquet import load_index, read_snapshot, write_snapshot
from tests.conftest import (
    ACCOUNTS,
    IBAN_CLOSED,
    IBAN_JOINT,
    IBAN_ORG,
    IBAN_PERSON,
    IBAN_UNKNOWN,
    accounts_table,
)


def test_lookup_finds_every_account_and_misses_unknown(index: AccountIndex) -> None:
    ibans = [a["iban"] for a in ACCOUNTS]
    rows = index.lookup([*ibans, IBAN_UNKNOWN]).tolist()
    assert rows[-1] == -1
    assert sorted(rows[:-1]) == list(range(len(ACCOUNTS)))
    assert [index.iban_at(r) for r in rows[:-1]] == ibans


def test_large_lookup_through_the_hashes_keeps_request_order(index: AccountIndex) -> None:
    # Batches from _HASH_FROM up search the sorted key hashes; answers stay in request order.
    ibans = [a["iban"] for a in ACCOUNTS]
    batch = [*ibans, IBAN_UNKNOWN, "", IBAN_PERSON + "0000000000000", IBAN_PERSON[:-1]] * 60
    assert len(batch) >= mi._HASH_FROM
    expected = [index.lookup([iban]).tolist()[0] for iban in batch]
    assert index.lookup(batch).tolist() == expected
    assert index.lookup(batch[::-1]).tolist() == expected[::-1]


@pytest.mark.parametrize("size", [2, mi._ARRAY_FROM - 1, mi._ARRAY_FROM, 100, mi._HASH_FROM])
def test_every_lookup_path_gives_the_rows_of_one_by_one(index: AccountIndex, size: int) -> None:
    """Key by key (below _ARRAY_FROM), one array search, and the hashes (from _HASH_FROM) agree."""
    ibans = [a["iban"] for a in ACCOUNTS]
    pool = [
        *ibans,
        IBAN_UNKNOWN,
        "",
        "ÄÖÜ",
        IBAN_PERSON + "0000000000000",
        IBAN_PERSON[:-1],
        IBAN_PERSON.lower(),
    ]
    batch = (pool * (size // len(pool) + 1))[:size]
    expected = [index.lookup([iban]).tolist()[0] for iban in batch]
    assert len(set(expected)) > 1
    assert index.lookup(batch).tolist() == expected
    assert index.lookup(batch[::-1]).tolist() == expected[::-1]
    assert index.lookup_rows(batch) == expected  # (what verify reads)
    assert all(type(r) is int for r in index.lookup_rows(batch))
    assert [index.lookup_rows([iban])[0] for iban in batch] == expected


def test_registered_by_take_equals_row_by_row(index: AccountIndex) -> None:
    """From _TAKE_FROM_ROWS rows one take() reads the batch; below, row by row: the same values."""
    rows = (list(range(len(ACCOUNTS))) * (mi._TAKE_FROM_ROWS // len(ACCOUNTS) + 2))[: mi._TAKE_FROM_ROWS + 5]
    assert index.registered(rows) == [index.registered([r])[0] for r in rows]


@pytest.mark.parametrize("buckets", [1, 3, None])
def test_hash_collisions_never_give_a_wrong_row(monkeypatch: pytest.MonkeyPatch, buckets: int | None) -> None:
    """With a hash of 1 or 3 values every lookup collides: the entries of its hash are compared
    until the key is found; with the real hash (None), the same answers."""
    real = mi.key_hashes
    if buckets is not None:
        monkeypatch.setattr(mi, "key_hashes", lambda keys: real(keys) % np.uint64(buckets))
    index = AccountIndex.build(accounts_table())
    ibans = [a["iban"] for a in ACCOUNTS]
    batch = [*ibans, IBAN_UNKNOWN, "", IBAN_PERSON[:-1]] * 60
    assert len(batch) >= mi._HASH_FROM
    expected = [index.lookup([iban]).tolist()[0] for iban in batch]
    assert expected.count(-1) == 180
    assert index.lookup(batch).tolist() == expected


def test_key_hashes_depend_on_every_byte() -> None:
    keys = np.array(
        [b"DE89370400440532013000", b"DE89370400440532013001", b"DE8937040044053201300"], dtype="S28"
    )
    assert len(set(mi.key_hashes(keys).tolist())) == 3
    assert mi.key_hashes(keys[:1]).tolist() == mi.key_hashes(keys).tolist()[:1]


def test_lookup_rejects_keys_longer_than_any_iban(index: AccountIndex) -> None:
    # A longer key must not match a stored IBAN that is its prefix after truncation.
    assert index.lookup([IBAN_PERSON + "0000000000000"]).tolist() == [-1]
    assert index.lookup(["", "ÄÖÜ"]).tolist() == [-1, -1]
    assert index.lookup([""]).tolist() == [-1]
    assert index.lookup(["ÄÖÜ"]).tolist() == [-1]


def test_registered_single_and_batch_agree(index: AccountIndex) -> None:
    rows = index.lookup([IBAN_JOINT, IBAN_ORG, IBAN_CLOSED]).tolist()
    batch = index.registered(rows)
    singles = [index.registered([r])[0] for r in rows]
    assert batch == singles
    assert batch[0].names == ["Ioana Martínez", "Henrik Martínez"]
    assert batch[0].type == "person"
    assert batch[1].type == "organisation"
    assert batch[2].status == "closed"
    assert len(batch[0].prepared) == 2


def test_identifiers(index: AccountIndex) -> None:
    row = int(index.lookup([IBAN_ORG])[0])
    lei, bic, others = index.identifiers(row)
    assert lei == "529900T8BM49AURSDO55"
    assert bic == "NORDNL2AXXX"
    assert others == ["TXID:DE123456789"]


def test_index_is_immutable(index: AccountIndex) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        index.version = 99  # type: ignore[misc]


def test_each_build_gets_a_new_version() -> None:
    a = AccountIndex.build(accounts_table())
    b = AccountIndex.build(accounts_table())
    assert b.version > a.version


def test_empty_snapshot_builds_an_empty_index() -> None:
    idx = AccountIndex.build(accounts_table([]))
    assert len(idx) == 0
    assert idx.lookup([IBAN_PERSON]).tolist() == [-1]


def _with(**changes: object) -> pa.Table:
    row = dict(ACCOUNTS[0])
    row.update(changes)
    return accounts_table([row, ACCOUNTS[1]])


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (_with(type="company"), "invalid type"),
        (_with(status="frozen"), "invalid status"),
        (_with(names=[]), "empty names"),
        (_with(names=["  "]), "null or blank"),
        (_with(iban=ACCOUNTS[1]["iban"]), "duplicate IBAN"),
        (_with(iban=None), "no iban"),
        (accounts_table().drop_columns(["names"]), "required column"),
        (accounts_table().set_column(1, "names", pa.array(["x"] * len(ACCOUNTS))), "list<string>"),
    ],
    ids=["type", "status", "empty-names", "blank-name", "duplicate", "null-iban", "no-names", "names-type"],
)
def test_contract_violations_are_rejected(table: pa.Table, message: str) -> None:
    with pytest.raises(IndexBuildError, match=message):
        AccountIndex.build(table)


def test_snapshot_round_trip_ignores_unknown_columns(tmp_path: Path) -> None:
    table = accounts_table().append_column("branch", pa.array(["x"] * len(ACCOUNTS)))
    path = tmp_path / "snap.parquet"
    write_snapshot(table, path)
    assert "branch" not in read_snapshot(path).column_names
    idx = load_index(path)
    assert len(idx) == len(ACCOUNTS)
    assert idx.source.endswith("snap.parquet")


def test_snapshot_without_optional_columns(tmp_path: Path) -> None:
    path = tmp_path / "minimal.parquet"
    pq.write_table(accounts_table().select(["iban", "names", "type", "status"]), path)
    idx = load_index(path)
    row = int(idx.lookup([IBAN_PERSON])[0])
    assert idx.identifiers(row) == (None, None, [])


def test_missing_and_corrupt_snapshot_files(tmp_path: Path) -> None:
    with pytest.raises(IndexBuildError, match="not found"):
        load_index(tmp_path / "absent.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(IndexBuildError, match="cannot read"):
        load_index(bad)
