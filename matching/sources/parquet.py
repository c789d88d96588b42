"""Snapshot files: Parquet, one row per account (DESIGN.md §3 data contract)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from matching.index import OPTIONAL_STRING_COLUMNS, REQUIRED_COLUMNS, AccountIndex, IndexBuildError

KNOWN_COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_STRING_COLUMNS, "org_ids")


def read_snapshot(path: str | os.PathLike[str]) -> pa.Table:
    """Read the contract's columns of a snapshot file; unknown extra columns are ignored."""
    p = Path(path)
    if not p.is_file():
        raise IndexBuildError(f"snapshot file not found: {p}")
    try:
        schema = pq.read_schema(p)
        columns = [c for c in KNOWN_COLUMNS if c in schema.names]
        return pq.read_table(p, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IndexBuildError(f"cannot read snapshot {p}: {exc}") from None


def load_index(path: str | os.PathLike[str], progress: Callable[[str], None] | None = None) -> AccountIndex:
    table = read_snapshot(path)
    if progress:
        progress(f"read {table.num_rows:,} accounts from {path}")
    return AccountIndex.build(table, source=f"parquet:{path}", progress=progress)


def write_snapshot(table: pa.Table, path: str | os.PathLike[str]) -> None:
    """Write atomically: a temporary file beside the target, then rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=128 * 1024)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
