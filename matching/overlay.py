"""OverlayIndex: an immutable base AccountIndex plus a small frozen map of recent changes.

Why an overlay and not a rebuild per change batch (measured on the 2-core dev machine, 1M accounts,
``python -m bench.bench_redis``): ``AccountIndex.build`` of 1M rows takes about 4 s (normalising
~1.1M registered names is most of it), so a change could not be visible within the 1 s target if
every batch rebuilt the index. Building an overlay for a batch of changes normalises only the
changed names and copies the small change map: well under a millisecond for a handful of
changes, a few ms for thousands, independent of the base size. Lookups pay one dict probe per
IBAN of the batch on top of the base's vectorised search (~0.05 µs each), so the overlay is kept
small by *compaction*: :func:`compact` merges base + overlay into a new ``AccountIndex`` without
re-normalising anything (the prepared names travel with the rows) — a linear merge of two sorted
key arrays plus Arrow ``take``s, about 0.3 s at 1M — and runs in a background thread when the
overlay exceeds N entries or T seconds (``RedisSourceSettings.compact_*``).

Copy-on-write: :meth:`OverlayIndex.with_changes` returns a NEW overlay; nothing a request may be
reading is ever mutated. Row numbers: ``0 … len(base)-1`` are base rows, ``len(base) + i`` is the
i-th live changed account of this overlay. A row number is only meaningful for the index object
that produced it (verify() takes ``holder.current`` once per batch, so that holds).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

# Versions continue the index module's counter so every index object has a distinct version.
from matching.index import STATUSES, TYPES, AccountIndex, Registered, next_version
from matching.normalize import prepare_registered

_TYPE_CODE = {t: i for i, t in enumerate(TYPES)}
_STATUS_CODE = {s: i for i, s in enumerate(STATUSES)}


@runtime_checkable
class IndexLike(Protocol):
    """What ``matching.verify.verify`` and the app use of an index (AccountIndex or OverlayIndex)."""

    @property
    def version(self) -> int: ...
    @property
    def source(self) -> str: ...
    @property
    def built_at(self) -> float: ...
    @property
    def build_seconds(self) -> float: ...
    def __len__(self) -> int: ...
    def lookup(self, ibans: Sequence[str]) -> np.ndarray: ...
    def lookup_rows(self, ibans: Sequence[str]) -> list[int]: ...
    def registered(self, rows: Sequence[int] | np.ndarray) -> list[Registered]: ...
    def identifiers(self, row: int) -> tuple[str | None, str | None, list[str]]: ...


@dataclass(frozen=True, slots=True, eq=False)
class ChangedAccount:
    """One upserted account, normalised (what the overlay answers for its IBAN)."""

    iban: str
    registered: Registered
    lei: str | None
    any_bic: str | None
    org_ids: tuple[str, ...]
    in_base: bool


@dataclass(frozen=True, slots=True, eq=False)
class _Deleted:
    in_base: bool


_Entry = ChangedAccount | _Deleted


def prepare_changes(
    rows: Iterable[tuple[str, Mapping[str, Any] | None]], base: AccountIndex
) -> dict[str, _Entry]:
    """Normalise upserted rows (one ``prepare_registered`` call for all of them) into entries.

    ``rows`` holds (iban, row dict or None for gone); a later pair for one IBAN wins.
    """
    latest: dict[str, Mapping[str, Any] | None] = {}
    for iban, row in rows:
        latest[iban] = row
    if not latest:
        return {}
    ibans = list(latest)
    in_base = (base.lookup(ibans) >= 0).tolist()
    live = [(i, latest[iban]) for i, iban in enumerate(ibans) if latest[iban] is not None]
    flat: list[str] = []
    kinds: list[str] = []
    for _, row in live:
        assert row is not None
        flat.extend(row["names"])
        kinds.extend([row["type"]] * len(row["names"]))
    prepared = prepare_registered(flat, kinds) if flat else []
    out: dict[str, _Entry] = {iban: _Deleted(in_base[i]) for i, iban in enumerate(ibans)}
    pos = 0
    for i, row in live:
        assert row is not None
        names = list(row["names"])
        out[ibans[i]] = ChangedAccount(
            iban=ibans[i],
            registered=Registered(row["type"], row["status"], names, prepared[pos : pos + len(names)]),
            lei=row.get("lei") or None,
            any_bic=row.get("any_bic") or None,
            org_ids=tuple(row.get("org_ids") or ()),
            in_base=in_base[i],
        )
        pos += len(names)
    return out


@dataclass(frozen=True, slots=True, eq=False)
class OverlayIndex:
    """Immutable: base index + frozen changes. Implements the methods verify() uses."""

    base: AccountIndex
    changes: Mapping[str, _Entry] = field(repr=False)
    version: int
    source: str
    built_at: float
    build_seconds: float
    #: When the oldest change in this overlay was applied (drives age-based compaction).
    oldest_change_at: float
    _rowmap: Mapping[str, int] = field(repr=False)
    _live: tuple[ChangedAccount, ...] = field(repr=False)
    _len: int

    @classmethod
    def over(cls, base: AccountIndex) -> OverlayIndex:
        """An empty overlay on ``base``."""
        return cls._make(base, {}, time.time(), time.perf_counter())

    @classmethod
    def _make(
        cls, base: AccountIndex, changes: dict[str, _Entry], oldest: float, started: float
    ) -> OverlayIndex:
        nb = len(base)
        live: list[ChangedAccount] = []
        rowmap: dict[str, int] = {}
        in_base = 0
        for iban, entry in changes.items():
            in_base += entry.in_base
            if isinstance(entry, ChangedAccount):
                rowmap[iban] = nb + len(live)
                live.append(entry)
            else:
                rowmap[iban] = -1
        return cls(
            base=base,
            changes=MappingProxyType(changes),
            version=next_version(),
            source=base.source,
            built_at=time.time(),
            build_seconds=time.perf_counter() - started,
            oldest_change_at=oldest,
            _rowmap=rowmap,
            _live=tuple(live),
            _len=nb - in_base + len(live),
        )

    def with_changes(self, entries: Mapping[str, _Entry]) -> OverlayIndex:
        """A new overlay with ``entries`` (from :func:`prepare_changes` on this base) applied on top."""
        started = time.perf_counter()
        merged = dict(self.changes)
        merged.update(entries)
        oldest = self.oldest_change_at if self.changes else time.time()
        return OverlayIndex._make(self.base, merged, oldest, started)

    def apply(self, rows: Iterable[tuple[str, Mapping[str, Any] | None]]) -> OverlayIndex:
        """Normalise and apply (iban, row or None) pairs; returns a new overlay."""
        return self.with_changes(prepare_changes(rows, self.base))

    # ---- the index interface -----------------------------------------------------------------
    def __len__(self) -> int:
        return self._len

    @property
    def overlay_size(self) -> int:
        return len(self.changes)

    def lookup(self, ibans: Sequence[str]) -> np.ndarray:
        rows = self.base.lookup(ibans)
        self._patch(ibans, rows)
        return rows

    def lookup_rows(self, ibans: Sequence[str]) -> list[int]:
        rows = self.base.lookup_rows(ibans)
        self._patch(ibans, rows)
        return rows

    def _patch(self, ibans: Sequence[str], rows: np.ndarray | list[int]) -> None:
        """The overlay's own row for each IBAN it changed (-1 where it deleted one)."""
        rowmap = self._rowmap
        if rowmap:
            get = rowmap.get
            for i, iban in enumerate(ibans):
                r = get(iban)
                if r is not None:
                    rows[i] = r

    def registered(self, rows: Sequence[int] | np.ndarray) -> list[Registered]:
        nb = len(self.base)
        arr = np.asarray(rows, dtype=np.int64)
        over = arr >= nb
        if not over.any():
            return self.base.registered(arr)
        out: list[Registered | None] = [None] * len(arr)
        base_pos = np.flatnonzero(~over)
        if base_pos.size:
            for p, reg in zip(base_pos.tolist(), self.base.registered(arr[base_pos]), strict=True):
                out[p] = reg
        live = self._live
        for p in np.flatnonzero(over).tolist():
            out[p] = live[int(arr[p]) - nb].registered
        return out  # type: ignore[return-value]

    def identifiers(self, row: int) -> tuple[str | None, str | None, list[str]]:
        nb = len(self.base)
        if row < nb:
            return self.base.identifiers(row)
        acct = self._live[row - nb]
        return acct.lei, acct.any_bic, list(acct.org_ids)


def rebase(new_base: AccountIndex, current: OverlayIndex, compacted: OverlayIndex) -> OverlayIndex:
    """``current``'s state on ``new_base`` = ``compact(compacted)``, where ``compacted`` was an
    earlier overlay of the same chain: the changes applied since then are carried over (entries are
    immutable objects, so "changed since" is an identity test)."""
    started = time.perf_counter()
    pending = {iban: e for iban, e in current.changes.items() if compacted.changes.get(iban) is not e}
    if not pending:
        return OverlayIndex._make(new_base, {}, time.time(), started)
    ibans = list(pending)
    in_base = (new_base.lookup(ibans) >= 0).tolist()
    fixed: dict[str, _Entry] = {}
    for iban, flag in zip(ibans, in_base, strict=True):
        e = pending[iban]
        if isinstance(e, ChangedAccount):
            fixed[iban] = ChangedAccount(e.iban, e.registered, e.lei, e.any_bic, e.org_ids, flag)
        else:
            fixed[iban] = _Deleted(flag)
    return OverlayIndex._make(new_base, fixed, current.oldest_change_at, started)


def compact(overlay: OverlayIndex) -> AccountIndex:
    """Merge base + changes into a new AccountIndex; nothing is normalised again."""
    started = time.perf_counter()
    base = overlay.base
    if not overlay.changes:
        return base
    nb = len(base)
    changed = sorted(overlay.changes)
    live = sorted(overlay._live, key=lambda a: a.iban)
    width = max(base.keys.dtype.itemsize if nb else 1, *(len(i) for i in changed))
    kdtype = f"S{width}"
    base_keys = base.keys.astype(kdtype, copy=False)
    changed_keys = np.array([c.encode("ascii") for c in changed], dtype=kdtype)
    if nb:
        pos = np.minimum(np.searchsorted(changed_keys, base_keys), len(changed_keys) - 1)
        keep = changed_keys[pos] != base_keys
    else:
        keep = np.zeros(0, dtype=bool)
    kept_idx = np.flatnonzero(keep)
    kept_keys = base_keys[kept_idx]
    new_keys = np.array([a.iban.encode("ascii") for a in live], dtype=kdtype)
    m, k = len(live), kept_idx.size
    ins = np.searchsorted(kept_keys, new_keys) + np.arange(m)
    order = np.empty(k + m, dtype=np.int64)  # final position -> index into concat(kept, new)
    is_new = np.zeros(k + m, dtype=bool)
    is_new[ins] = True
    order[ins] = k + np.arange(m)
    order[~is_new] = np.arange(k)
    take = pa.array(order)
    kept_pa = pa.array(kept_idx)

    def merged(old: pa.Array, new: pa.Array) -> pa.Array:
        return pa.concat_arrays([old.take(kept_pa), new]).take(take)

    list_t = pa.list_(pa.string())
    names = merged(base.names, pa.array([a.registered.names for a in live], type=list_t))
    prepared = merged(base.prepared, pa.array([a.registered.prepared for a in live], type=list_t))
    lei = merged(base.lei, pa.array([a.lei for a in live], type=pa.string()))
    any_bic = merged(base.any_bic, pa.array([a.any_bic for a in live], type=pa.string()))
    org_ids = merged(base.org_ids, pa.array([list(a.org_ids) for a in live], type=list_t))
    new_types = np.array([_TYPE_CODE[a.registered.type] for a in live], dtype=np.uint8)
    new_status = np.array([_STATUS_CODE[a.registered.status] for a in live], dtype=np.uint8)
    return AccountIndex(
        version=next_version(),
        source=base.source,
        built_at=time.time(),
        build_seconds=time.perf_counter() - started,
        keys=np.concatenate([kept_keys, new_keys])[order],
        names=names,
        prepared=prepared,
        types=np.concatenate([base.types[kept_idx], new_types])[order],
        statuses=np.concatenate([base.statuses[kept_idx], new_status])[order],
        lei=lei,
        any_bic=any_bic,
        org_ids=org_ids,
    )


def index_to_table(index: AccountIndex | OverlayIndex) -> pa.Table:
    """The snapshot table (DESIGN.md §3 columns) of an index, e.g. for the local cache file."""
    base = compact(index) if isinstance(index, OverlayIndex) else index
    n = len(base)
    ibans = (
        pa.array([bytes(k).decode("ascii") for k in base.keys.tolist()], type=pa.string())
        if n
        else (pa.array([], type=pa.string()))
    )
    return pa.table(
        {
            "iban": ibans,
            "names": base.names,
            "type": pa.array(np.array(TYPES, dtype=object)[base.types].tolist(), type=pa.string()),
            "status": pa.array(np.array(STATUSES, dtype=object)[base.statuses].tolist(), type=pa.string()),
            "lei": base.lei,
            "any_bic": base.any_bic,
            "org_ids": base.org_ids,
        }
    )
