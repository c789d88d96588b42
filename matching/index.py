"""The account index: an immutable Arrow table plus a vectorised IBAN lookup.

Built once from a snapshot table (DESIGN.md §3 contract), never mutated: a refresh builds a new
``AccountIndex`` beside the current one and the holder swaps one reference.

Layout (chosen by measurement, see ``bench/bench_index.py`` and bench/RESULTS.md):
- rows sorted by IBAN; the IBANs as one fixed-width numpy bytes array, so a lookup is an
  ``np.searchsorted`` (O(log n) per key, ~35 bytes per account, no Python object per key);
- for batches, a 64-bit hash of each key, sorted, with the row it stands for (12 bytes per
  account): a binary search over integers instead of byte strings, then one key comparison per
  hit (10,000 lookups in 1M keys: 5.8 against 14.1 ms for the byte-string search, 0.46 against
  0.56 ms for 1,000; built in ~0.25 s per 1M keys);
- names and their normalised forms (``matching.normalize.prepare_registered``, computed once here)
  as Arrow list columns, fetched for a whole batch with one ``take``;
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


# Below this many rows ``registered`` reads row by row: pyarrow's take() + to_pylist() has a fixed
# dispatch cost, a row read ~2.3 µs. Measured (1M accounts, sixth session): 8 rows 19.4 against
# 26.0 µs, 12 rows 27.9 against 28.2, 16 rows 37.6 against 31.2, 32 rows 81 against 43.
_TAKE_FROM_ROWS = 12
_HASH_FROM = 256  # batches at least this large search the key hashes (measured crossover: 128-256)
# Below this many IBANs ``lookup`` searches key by key: building the needle array costs more than it
# saves (1M keys, per batch: 2 IBANs 2.9 against 7.3 µs, 8: 9.5 against 12.6, 16: 18.7 against 19.9,
# 32: 35.4 against 32.0).
_ARRAY_FROM = 16
_HASH_SEED = np.uint64(0x9E3779B97F4A7C15)
_HASH_MUL = np.uint64(0xBF58476D1CE4E5B9)
_HASH_SHIFT = np.uint64(31)


def key_hashes(keys: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each fixed-width byte key (zero-padded to whole 8-byte words): per word,
    xor it in, multiply by an odd constant, xor-shift (each step a bijection of the state, so keys
    that differ in one word never collide). Not keyed: it only orders the index's own keys, and a
    collision costs one more comparison, never a wrong row."""
    n, width = len(keys), keys.dtype.itemsize
    matrix = np.zeros((n, -(-width // 8) * 8), dtype=np.uint8)
    matrix[:, :width] = np.ascontiguousarray(keys).view(np.uint8).reshape(n, width)
    words = matrix.view(np.uint64)
    h = np.full(n, _HASH_SEED, dtype=np.uint64)
    for j in range(words.shape[1]):
        h ^= words[:, j]
        h *= _HASH_MUL
        h ^= h >> _HASH_SHIFT
    return h


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
    #: ``key_hashes(keys)`` sorted, and the row of each (derived from ``keys`` at construction)
    hash_sorted: np.ndarray = field(init=False, repr=False)
    hash_rows: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        hashes = key_hashes(self.keys)
        order = np.argsort(hashes, kind="stable").astype(np.int32 if len(hashes) < 2**31 else np.int64)
        object.__setattr__(self, "hash_sorted", hashes[order])
        object.__setattr__(self, "hash_rows", order)

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    # ---- lookups ---------------------------------------------------------------------------
    def lookup(self, ibans: Sequence[str]) -> np.ndarray:
        """Row of each IBAN, -1 where the IBAN is not held. One vectorised search per batch."""
        if len(ibans) < _ARRAY_FROM:
            return np.array(self.lookup_rows(ibans), dtype=np.int64)
        return self._lookup_array(ibans)

    def lookup_rows(self, ibans: Sequence[str]) -> list[int]:
        """``lookup`` as a list (what ``verify`` reads). A lone check or a small micro-batch is
        searched key by key and never becomes an array: a lone IBAN 2.1 against 2.75 µs through
        ``lookup(...).tolist()`` (1M accounts, random IBANs, min of 3 x 20,000). The rest of its
        cost is the binary search itself (~1.7 µs: ~20 probes of the 28-byte keys)."""
        if len(ibans) >= _ARRAY_FROM:
            return self._lookup_array(ibans).tolist()  # type: ignore[no-any-return]
        keys = self.keys
        n = len(keys)
        if n == 0:
            return [-1] * len(ibans)
        # (a key longer than any IBAN becomes one that matches none; encoded inline here and in
        # ``_lookup_array``: one list for both cost a lone check ~0.2 µs more)
        width, found = keys.dtype.itemsize, []
        for iban in ibans:
            key = iban.encode("ascii", "replace") if len(iban) <= width else b"\x00"
            at = int(keys.searchsorted(key))
            found.append(at if at < n and keys[at] == key else -1)
        return found

    def _lookup_array(self, ibans: Sequence[str]) -> np.ndarray:
        n = len(self)
        width = self.keys.dtype.itemsize
        if n == 0:
            return np.full(len(ibans), -1, dtype=np.int64)
        encoded = [s.encode("ascii", "replace") if len(s) <= width else b"\x00" for s in ibans]
        query = np.array(encoded, dtype=self.keys.dtype)
        if len(query) >= _HASH_FROM:
            return self._lookup_hashed(query)
        pos = np.searchsorted(self.keys, query)
        pos_clipped = np.minimum(pos, n - 1)
        found = (pos < n) & (self.keys[pos_clipped] == query)
        return np.where(found, pos_clipped, -1).astype(np.int64)

    def _lookup_hashed(self, query: np.ndarray) -> np.ndarray:
        """``lookup`` through the sorted key hashes. Sorted needles (10,000: 1.8 against 2.8 ms
        unsorted) find the first entry of their hash; where that entry's key is another one (a
        collision) the entries of the same hash that follow are compared one by one."""
        n = len(self)
        qh = key_hashes(query)
        order = np.argsort(qh)
        pos = np.empty(len(query), dtype=np.intp)
        pos[order] = np.searchsorted(self.hash_sorted, qh[order])
        at = np.minimum(pos, n - 1)
        same_hash = (pos < n) & (self.hash_sorted[at] == qh)
        cand = self.hash_rows[at].astype(np.int64)
        found = same_hash & (self.keys[cand] == query)
        rows = np.where(found, cand, -1)
        for k in np.flatnonzero(same_hash & ~found).tolist():  # collisions: rare
            p = int(pos[k]) + 1
            while p < n and self.hash_sorted[p] == qh[k]:
                row = int(self.hash_rows[p])
                if self.keys[row] == query[k]:
                    rows[k] = row
                    break
                p += 1
        return rows

    def registered(self, rows: Sequence[int] | np.ndarray) -> list[Registered]:
        """Type, status, names and prepared names of each row (rows must be >= 0)."""
        if len(rows) < _TAKE_FROM_ROWS:  # a lone check or a micro-batch: scalar access per row
            # (int(): a dict lookup keyed by a numpy scalar costs ~0.3 µs more; 2.4 against 1.9 µs a row)
            types, statuses, names, prepared = self.types, self.statuses, self.names, self.prepared
            return [
                Registered(
                    TYPES[int(types[r])],
                    STATUSES[int(statuses[r])],
                    names[r].as_py(),
                    prepared[r].as_py(),
                )
                for r in map(int, rows)
            ]
        idx = pa.array(np.asarray(rows, dtype=np.int64))
        names = self.names.take(idx).to_pylist()
        prepared = self.prepared.take(idx).to_pylist()
        types = self.types[np.asarray(rows, dtype=np.int64)]
        statuses = self.statuses[np.asarray(rows, dtype=np.int64)]
        return [
            Registered(TYPES[t], STATUSES[s], n, p)
            for t, s, n, p in zip(types.tolist(), statuses.tolist(), names, prepared, strict=True)
        ]

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
