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


def _searched(index: AccountIndex, ibans: list[str]) -> list[int]:
    """The rows by binary search over the sorted keys (the rows are sorted by IBAN): the oracle."""
    keys, width, out = index.keys, index.keys.dtype.itemsize, []
    for iban in ibans:
        key = iban.encode("ascii", "replace")
        at = int(np.searchsorted(keys, key)) if len(key) <= width else len(keys)
        out.append(at if at < len(keys) and bytes(keys[at]) == key else -1)
    return out


_POOL = [
    *(a["iban"] for a in ACCOUNTS),
    IBAN_UNKNOWN,
    "",
    "ÄÖÜ",
    IBAN_PERSON + "0000000000000",
    IBAN_PERSON[:-1],
    IBAN_PERSON.lower(),
    IBAN_PERSON + "\x00",
]


def test_large_lookup_keeps_request_order(index: AccountIndex) -> None:
    batch = _POOL * 60
    expected = _searched(index, batch)
    assert index.lookup(batch).tolist() == expected
    assert index.lookup(batch[::-1]).tolist() == expected[::-1]


@pytest.mark.parametrize("size", [1, 2, mi._ARRAY_FROM - 1, mi._ARRAY_FROM, 100, 1000])
def test_every_lookup_path_gives_the_rows_of_the_binary_search(index: AccountIndex, size: int) -> None:
    """Key by key (below _ARRAY_FROM) and as array rounds: the rows a binary search finds."""
    batch = (_POOL * (size // len(_POOL) + 1))[:size]
    expected = _searched(index, batch)
    assert index.lookup(batch).tolist() == expected
    assert index.lookup(batch[::-1]).tolist() == expected[::-1]
    assert index.lookup_rows(batch) == expected  # (what verify reads)
    assert all(type(r) is int for r in index.lookup_rows(batch))
    assert [index.lookup_rows([iban])[0] for iban in batch] == expected
    if size >= len(_POOL):
        assert sorted(set(expected) - {-1}) == list(range(len(ACCOUNTS)))


def test_registered_by_take_equals_row_by_row(index: AccountIndex) -> None:
    """From _TAKE_FROM_ROWS rows one take() reads the batch; below, row by row: the same values."""
    rows = (list(range(len(ACCOUNTS))) * (mi._TAKE_FROM_ROWS // len(ACCOUNTS) + 2))[: mi._TAKE_FROM_ROWS + 5]
    assert index.registered(rows) == [index.registered([r])[0] for r in rows]


@pytest.mark.parametrize("rounds_down_to", [0, mi._ROUNDS_DOWN_TO, 10**9])
@pytest.mark.parametrize("buckets", [1, 3, None])
def test_hash_collisions_never_give_a_wrong_row(
    monkeypatch: pytest.MonkeyPatch, buckets: int | None, rounds_down_to: int
) -> None:
    """With a key hash of 1 or 3 values every key collides (one or three long probe runs, wrapping
    round the table's end): each lookup compares keys until its own or an empty slot; with the real
    hash (None), the same answers, key by key and as arrays (array rounds to the end, the default
    hand-over to key-by-key probing, or that hand-over after the first round)."""
    monkeypatch.setattr(mi, "_ROUNDS_DOWN_TO", rounds_down_to)
    if buckets is not None:
        n = buckets
        monkeypatch.setattr(mi, "_key_hash", lambda key: (hash(key) % n) - 1)  # slot -1: the last one
    index = AccountIndex.build(accounts_table())
    table = index.slot_rows
    assert sorted(table[table >= 0].tolist()) == list(range(len(ACCOUNTS)))  # every row in one slot
    assert (table < 0).sum() >= len(table) // 2  # at most half full: every probe run ends
    batch = _POOL * 60
    assert len(batch) >= mi._ARRAY_FROM  # (the array rounds)
    expected = _searched(index, batch)
    assert expected.count(-1) == 7 * 60
    assert index.lookup(batch).tolist() == expected
    assert [index.lookup_rows([iban])[0] for iban in _POOL] == expected[: len(_POOL)]


def test_slot_table_of_no_keys_answers_none() -> None:
    index = AccountIndex.build(accounts_table().slice(0, 0))
    assert len(index) == 0
    assert index.lookup([IBAN_PERSON]).tolist() == [-1]
    assert index.lookup([IBAN_PERSON] * 40).tolist() == [-1] * 40


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
