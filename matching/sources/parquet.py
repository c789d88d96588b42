"""Snapshot files: Parquet, one row per account (DESIGN.md §3 data contract)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from matching.index import AccountIndex, IndexBuildError

# The snapshot data contract: one definition for files, the Redis loader and the generator.
# Nulls are allowed at this level; AccountIndex.build rejects rows that break the contract.
SNAPSHOT_SCHEMA = pa.schema(
    [
        ("iban", pa.string()),
        ("names", pa.list_(pa.string())),
        ("type", pa.string()),
        ("status", pa.string()),
        ("lei", pa.string()),
        ("any_bic", pa.string()),
        ("org_ids", pa.list_(pa.string())),
    ]
)
KNOWN_COLUMNS = tuple(SNAPSHOT_SCHEMA.names)  # REQUIRED_COLUMNS + optional lei, any_bic, org_ids


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


ROW_GROUP_ROWS = 128 * 1024


def write_atomically(path: str | os.PathLike[str], write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``:
    readers see the old file or the new one, never half of one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_snapshot(table: pa.Table, path: str | os.PathLike[str]) -> None:
    """A zstd Parquet snapshot in row groups of ROW_GROUP_ROWS, written atomically."""
    write_atomically(
        path, lambda tmp: pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    )
