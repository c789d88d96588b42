"""The account index: an immutable Arrow table plus a vectorised IBAN lookup.

Built once from a snapshot table (DESIGN.md §3 contract), never mutated: a refresh builds a new
``AccountIndex`` beside the current one and the holder swaps one reference.

Layout (chosen by measurement, see ``bench/bench_index.py`` and bench/RESULTS.md):
- rows sorted by IBAN; the IBANs as one fixed-width numpy bytes array (~35 bytes per account, no
  Python object per key);
- for lookups, an open-addressing table of rows keyed by Python's hash of each key (linear probing,
  at most half full: 8 bytes per account at 1M, built in ~0.3 s): one or two probes and one key
  comparison per IBAN, where a binary search over the sorted keys walks ~20 cache lines (a lone
  IBAN in 1M keys: 1.2-1.6 against 2.0-2.4 µs, 16 IBANs 14-16 against 30-37 µs, tenth session);
  large batches probe as array operations (10,000 IBANs: as fast as the sorted key hashes this
  table replaced, which took 12 bytes per account);
- names and their normalised forms (``matching.normalize.prepare_registered``, computed once here)
  as Arrow list columns, fetched for a whole batch with one ``take``, and for a lone row through
  views of the same buffers (``matching.list_rows``: the characters held once, as a ``bytes``
  object the column is rebuilt over);
- type and status as uint8 codes.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching.list_rows import ListRows, list_rows
from matching.model import AccountStatus, AccountType
from matching.normalize import prepare_registered

TYPES: tuple[AccountType, ...] = ("person", "organisation")
STATUSES: tuple[AccountStatus, ...] = ("active", "closed", "blocked")
REQUIRED_COLUMNS = ("iban", "names", "type", "status")
OPTIONAL_STRING_COLUMNS = ("lei", "any_bic")
_version_counter = itertools.count(1)


def next_version() -> int:
    """A process-wide increasing version for every index object (full or overlay)."""
    return next(_version_counter)


class IndexBuildError(ValueError):
    """The snapshot breaks the data contract; nothing was built."""


# Below this many rows ``registered`` reads row by row (``matching.list_rows``): pyarrow's take() +
# to_pylist() has a fixed dispatch cost. Measured (1M accounts, random rows, min of 5, eleventh
# session, a slow VM state): 8 rows 29.9 against 59.1 µs, 12 rows 42.2 against 62.4, 16 rows 81.5
# against 83.6, 24 rows 125.9 against 121.7, 32 rows 123 against 93.
_TAKE_FROM_ROWS = 16
# Below this many IBANs ``lookup`` probes key by key (~0.85 µs a key): the array rounds' fixed cost
# is ~25 µs. Measured (1M keys, random held IBANs, min of 3, tenth session): 16 IBANs 13.7 against
# 38.0 µs, 128: 105 against 117, 256: 225 against 207, 512: 445 against 335.
_ARRAY_FROM = 192
# The array rounds stop when fewer keys than this are left; those finish probing one by one.
_ROUNDS_DOWN_TO = 64
#: The key hash of the slot table: Python's own (SipHash, keyed per interpreter start; the table is
#: built in the process that uses it). Module-level so that tests can force collisions.
_key_hash: Callable[[bytes], int] = hash


def slot_table(keys: np.ndarray) -> np.ndarray:
    """Row of each key by ``_key_hash`` (``keys`` as numpy gives them: trailing NULs stripped), -1
    in an empty slot: linear probing in a power-of-two table at most half full, so every probe
    sequence ends at an empty slot. Built as array operations: each round places, for every slot
    still free, the first key that wants it; the others move on one slot."""
    n = len(keys)
    size = 1 << max(4, (2 * n - 1).bit_length())
    mask = size - 1
    table = np.full(size, -1, dtype=np.int32 if n < 2**31 else np.int64)
    if n == 0:
        return table
    hashes = np.fromiter(map(_key_hash, keys.tolist()), dtype=np.int64, count=n)
    pending = np.arange(n, dtype=np.int64)
    slots = hashes & mask
    while pending.size:
        wanted = slots[pending]
        free = np.flatnonzero(table[wanted] == -1)
        won, first = np.unique(wanted[free], return_index=True)
        table[won] = pending[free[first]]
        placed = np.zeros(len(pending), dtype=bool)
        placed[free[first]] = True
        pending = pending[~placed]
        slots[pending] = (slots[pending] + 1) & mask
    return table


def _code_view(codes: np.ndarray) -> memoryview:
    """uint8 codes as a memoryview whose items are Python ints (no numpy scalar per read)."""
    return np.ascontiguousarray(codes, dtype=np.uint8).data


class Registered(msgspec.Struct, frozen=True, gc=False):
    """What the matcher needs of one account (plain Python values). A Struct, not a frozen
    dataclass: a bulk of 10,000 builds 10,000 of them (measured 0.09 µs each against 0.79 µs)."""

    type: AccountType
    status: AccountStatus
    names: list[str]
    prepared: list[str]


@dataclass(frozen=True, slots=True, eq=False)
class AccountIndex:
    version: int
    source: str
    built_at: float
    build_seconds: float
    keys: np.ndarray = field(repr=False)
    names: pa.ListArray = field(repr=False)
    prepared: pa.ListArray = field(repr=False)
    types: np.ndarray = field(repr=False)
    statuses: np.ndarray = field(repr=False)
    lei: pa.Array = field(repr=False)
    any_bic: pa.Array = field(repr=False)
    org_ids: pa.ListArray = field(repr=False)
    #: ``slot_table(keys)`` (derived from ``keys`` at construction), and a view of it whose items
    #: are Python ints (a lone lookup 1.03 against 1.14 µs through the numpy array and ``int()``,
    #: 1M keys, min of 5 x 100,000, tenth session)
    slot_rows: np.ndarray = field(init=False, repr=False)
    _slot_view: memoryview = field(init=False, repr=False)
    #: Lone-row reads (``matching.list_rows``): ``names`` and ``prepared`` are rebuilt over one
    #: ``bytes`` object each that these views read; type and status codes as Python ints.
    _name_rows: ListRows = field(init=False, repr=False)
    _prepared_rows: ListRows = field(init=False, repr=False)
    _type_codes: memoryview = field(init=False, repr=False)
    _status_codes: memoryview = field(init=False, repr=False)

    def __post_init__(self) -> None:
        table = slot_table(self.keys)
        object.__setattr__(self, "slot_rows", table)
        object.__setattr__(self, "_slot_view", table.data)
        names, name_rows = list_rows(self.names)
        prepared, prepared_rows = list_rows(self.prepared)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "prepared", prepared)
        object.__setattr__(self, "_name_rows", name_rows)
        object.__setattr__(self, "_prepared_rows", prepared_rows)
        object.__setattr__(self, "_type_codes", _code_view(self.types))
        object.__setattr__(self, "_status_codes", _code_view(self.statuses))

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    # ---- lookups ---------------------------------------------------------------------------
    def lookup(self, ibans: Sequence[str]) -> np.ndarray:
        """Row of each IBAN, -1 where the IBAN is not held. One vectorised search per batch."""
        if len(ibans) < _ARRAY_FROM:
            return np.array(self.lookup_rows(ibans), dtype=np.int64)
        return self._lookup_array(ibans)

    def lookup_rows(self, ibans: Sequence[str]) -> list[int]:
        """``lookup`` as a list (what ``verify`` reads). A lone check or a small micro-batch probes
        key by key and never becomes an array."""
        if len(ibans) >= _ARRAY_FROM:
            return self._lookup_array(ibans).tolist()  # type: ignore[no-any-return]
        keys, table, key_hash = self.keys, self._slot_view, _key_hash
        width, mask, found = keys.dtype.itemsize, len(table) - 1, []
        # (``_probe_from``'s loop, inlined: a lone lookup 1.03 against 1.19 µs through the method,
        # same measurement as ``_slot_view``'s)
        for iban in ibans:
            # (a key longer than any IBAN becomes one that matches none)
            key = iban.encode("ascii", "replace") if len(iban) <= width else b"\x00"
            slot = key_hash(key) & mask
            while True:
                row = table[slot]
                if row < 0 or keys[row] == key:
                    found.append(row)
                    break
                slot = (slot + 1) & mask
        return found

    def _lookup_array(self, ibans: Sequence[str]) -> np.ndarray:
        """The slot probes of a whole batch as array operations: a round compares every unresolved
        IBAN with the key in its slot; an empty slot (not held) or the same key ends it, another key
        sends it one slot on."""
        width = self.keys.dtype.itemsize
        # (a trailing NUL would vanish in the fixed-width array and the key match its prefix)
        encoded = [
            s.encode("ascii", "replace") if len(s) <= width and not s.endswith("\x00") else b"\x00"
            for s in ibans
        ]
        m = len(encoded)
        query = np.array(encoded, dtype=self.keys.dtype)
        mask = len(self.slot_rows) - 1
        slots = np.fromiter(map(_key_hash, encoded), dtype=np.int64, count=m) & mask
        rows = np.full(m, -1, dtype=np.int64)
        pending = np.arange(m)
        while pending.size:
            cand = self.slot_rows[slots].astype(np.int64)
            held = cand >= 0
            same = np.zeros(len(pending), dtype=bool)
            same[held] = self.keys[cand[held]] == query[pending[held]]
            rows[pending[same]] = cand[same]
            moving = held & ~same
            pending = pending[moving]
            slots = (slots[moving] + 1) & mask
            if len(pending) < _ROUNDS_DOWN_TO:  # the long probe runs' few keys: one by one
                for k, start in zip(pending.tolist(), slots.tolist(), strict=True):
                    rows[k] = self._probe_from(encoded[k], start)
                break
        return rows

    def _probe_from(self, key: bytes, slot: int) -> int:
        """The row of ``key``, probing from ``slot`` on; -1 at an empty slot."""
        keys, table, mask = self.keys, self._slot_view, len(self._slot_view) - 1
        while (row := table[slot]) >= 0 and keys[row] != key:
            slot = (slot + 1) & mask
        return int(row)

    def registered(self, rows: Sequence[int] | np.ndarray) -> list[Registered]:
        """Type, status, names and prepared names of each row (rows must be >= 0)."""
        if len(rows) < _TAKE_FROM_ROWS:  # a lone check or a micro-batch: read row by row
            return [self._registered_at(r) for r in map(int, rows)]
        idx = pa.array(np.asarray(rows, dtype=np.int64))
        names = self.names.take(idx).to_pylist()
        prepared = self.prepared.take(idx).to_pylist()
        types = self.types[np.asarray(rows, dtype=np.int64)]
        statuses = self.statuses[np.asarray(rows, dtype=np.int64)]
        return [
            Registered(TYPES[t], STATUSES[s], n, p)
            for t, s, n, p in zip(types.tolist(), statuses.tolist(), names, prepared, strict=True)
        ]

    def _registered_at(self, r: int) -> Registered:
        """One row through the buffers (``matching.list_rows``)."""
        return Registered(
            TYPES[self._type_codes[r]],
            STATUSES[self._status_codes[r]],
            self._name_rows.row(r),
            self._prepared_rows.row(r),
        )

    def identifiers(self, row: int) -> tuple[str | None, str | None, list[str]]:
        """(LEI, BIC, ["SCHEME:VALUE", …]) on record for one row."""
        return self.lei[row].as_py(), self.any_bic[row].as_py(), self.org_ids[row].as_py() or []

    def iban_at(self, row: int) -> str:
        return bytes(self.keys[row]).decode("ascii")

    # ---- build -----------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        table: pa.Table,
        *,
        source: str = "",
        progress: Callable[[str], None] | None = None,
    ) -> AccountIndex:
        """Validate ``table`` against the snapshot contract and build an index from it.

        Raises IndexBuildError naming the first offending rows; nothing is half-built.
        """
        started = time.perf_counter()
        say = progress or (lambda _msg: None)
        _check_columns(table)
        n = table.num_rows
        iban_col = table.column("iban").combine_chunks()
        if iban_col.null_count:
            raise IndexBuildError(f"{iban_col.null_count} rows have no iban")
        keys_unsorted = np.array(iban_col.to_pylist(), dtype="S34") if n else np.empty(0, "S34")
        width = max(int(pc.max(pc.utf8_length(iban_col)).as_py() or 1), 1) if n else 1
        keys_unsorted = keys_unsorted.astype(f"S{width}")
        order = np.argsort(keys_unsorted, kind="stable")
        keys = keys_unsorted[order]
        if n > 1:
            dup = np.flatnonzero(keys[1:] == keys[:-1])
            if dup.size:
                raise IndexBuildError(
                    f"{dup.size} duplicate IBANs, e.g. {bytes(keys[dup[0]]).decode(errors='replace')}"
                )
        say(f"sorted {n:,} IBANs")
        table = table.take(pa.array(order))

        types = _codes(table.column("type"), TYPES, "type")
        statuses = _codes(table.column("status"), STATUSES, "status")
        names = _names_column(table.column("names"))
        flat = names.values.to_pylist()
        lengths = pc.list_value_length(names).to_numpy(zero_copy_only=False)
        flat_kinds = np.repeat(np.array(TYPES, dtype=object)[types], lengths).tolist()
        say(f"normalising {len(flat):,} registered names")
        prepared_flat = pa.array(prepare_registered(flat, flat_kinds), type=pa.string())
        prepared = pa.ListArray.from_arrays(names.offsets, prepared_flat)
        lei, any_bic = (_optional_strings(table, c) for c in OPTIONAL_STRING_COLUMNS)
        org_ids = _optional_list(table, "org_ids")
        say(f"indexed {n:,} accounts")
        return cls(
            version=next_version(),
            source=source,
            built_at=time.time(),
            build_seconds=time.perf_counter() - started,
            keys=keys,
            names=names,
            prepared=prepared,
            types=types,
            statuses=statuses,
            lei=lei,
            any_bic=any_bic,
            org_ids=org_ids,
        )


def _check_columns(table: pa.Table) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise IndexBuildError(f"snapshot lacks required column(s): {', '.join(missing)}")
    for column in ("iban", "type", "status"):
        typ = table.schema.field(column).type
        if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
            raise IndexBuildError(f"column {column} must be string, got {typ}")
    typ = table.schema.field("names").type
    if not (pa.types.is_list(typ) or pa.types.is_large_list(typ)) or not (
        pa.types.is_string(typ.value_type) or pa.types.is_large_string(typ.value_type)
    ):
        raise IndexBuildError(f"column names must be list<string>, got {typ}")


def _codes(column: pa.ChunkedArray, allowed: tuple[str, ...], what: str) -> np.ndarray:
    arr = column.combine_chunks()
    codes = pc.index_in(arr, value_set=pa.array(allowed))
    bad = pc.is_null(codes)
    if pc.any(bad).as_py():
        first = pc.indices_nonzero(bad)[0].as_py()
        count = pc.sum(bad).as_py()
        raise IndexBuildError(
            f"{count} rows have an invalid {what} "
            f"(e.g. {arr[first].as_py()!r}; allowed: {', '.join(allowed)})"
        )
    out: np.ndarray = codes.to_numpy(zero_copy_only=False).astype(np.uint8)
    return out


def _names_column(column: pa.ChunkedArray) -> pa.ListArray:
    arr = column.combine_chunks()
    if pa.types.is_large_list(arr.type) or pa.types.is_large_string(arr.type.value_type):
        arr = arr.cast(pa.list_(pa.string()))
    if arr.null_count:
        raise IndexBuildError(f"{arr.null_count} rows have no names")
    lengths = pc.list_value_length(arr)
    empty = pc.sum(pc.equal(lengths, 0)).as_py() or 0
    if empty:
        raise IndexBuildError(f"{empty} rows have an empty names list")
    flat = arr.flatten()
    blank = pc.or_kleene(pc.is_null(flat), pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(flat)), 0))
    if pc.any(blank).as_py():
        raise IndexBuildError(f"{pc.sum(blank).as_py()} registered names are null or blank")
    # Rebuild with zero-based offsets so that names.values lines up with the offsets we store.
    return pa.ListArray.from_arrays(pc.subtract(arr.offsets, arr.offsets[0]), flat)


def _optional_strings(table: pa.Table, name: str) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    return table.column(name).combine_chunks().cast(pa.string())


def _optional_list(table: pa.Table, name: str) -> pa.ListArray:
    if name not in table.column_names:
        return pa.array([[]] * table.num_rows, type=pa.list_(pa.string()))
    return table.column(name).combine_chunks().cast(pa.list_(pa.string()))
