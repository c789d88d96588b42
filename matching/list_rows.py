"""Row reads of an Arrow ``list<string>`` column straight from its buffers, for the lone check.

``ListArray[r].as_py()`` builds a scalar object, a list scalar and a string scalar per read: ~2 µs
a column (the py-spy profile of the in-process fast lane had the lone-row comprehension of
``AccountIndex.registered`` at 11.6 % of a single check, eleventh session). Through the buffers a
row is two offset reads per string, a slice of a ``bytes`` object and a decode. ``registered`` of one
row (both columns, type and status; 1M accounts, min of 7, interleaved, a slow VM state): random
rows 5.1-5.3 against 6.6-8.0 µs, one hot row 2.1-3.4 against 3.3-5.9 µs.

The characters are copied once into one ``bytes`` object and the column is rebuilt over it
(``pa.py_buffer`` wraps the bytes without copying), so the Arrow column and the views share that
memory: no second copy is held. The Arrow column stays the one batches ``take`` from.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa


class ListRows(NamedTuple):
    """Row ``r``'s strings are ``data[starts[j]:starts[j + 1]]`` (UTF-8) for ``j`` in
    ``range(lists[r], lists[r + 1])``; the views' items are Python ints."""

    lists: memoryview
    starts: memoryview
    data: bytes

    def row(self, r: int) -> list[str]:
        """Row ``r``'s strings (``ListArray[r].as_py()`` for a row without nulls). The usual row of
        the index, one name, skips the comprehension's call."""
        lists, starts, data = self
        a, b = lists[r], lists[r + 1]
        if b - a == 1:
            return [data[starts[a] : starts[b]].decode()]
        return [data[starts[j] : starts[j + 1]].decode() for j in range(a, b)]


def _offsets(buffer: pa.Buffer | None, large: bool, offset: int, length: int) -> memoryview:
    """The ``length + 1`` offsets of an array from ``offset`` on, as a memoryview of Python ints."""
    dtype = np.int64 if large else np.int32
    if buffer is None or length == 0:  # (an empty array may have no offsets buffer)
        return np.zeros(1, dtype=dtype).data
    return np.frombuffer(buffer, dtype=dtype)[offset : offset + length + 1].data


def list_rows(column: pa.ListArray | pa.LargeListArray) -> tuple[pa.Array, ListRows]:
    """``column`` rebuilt over a ``bytes`` copy of its characters, and the views into it.

    For list (or large list) columns of (large) strings without nulls, as the index holds them;
    raises ValueError for any other."""
    typ = column.type
    if not (pa.types.is_list(typ) or pa.types.is_large_list(typ)) or not (
        pa.types.is_string(typ.value_type) or pa.types.is_large_string(typ.value_type)
    ):
        raise ValueError(f"list_rows reads list<string> columns, not {typ}")
    child = column.values
    if column.null_count or child.null_count:
        raise ValueError("list_rows reads columns without nulls")
    validity, child_offsets, chars = child.buffers()
    data = chars.to_pybytes() if chars is not None else b""
    shared_child = pa.Array.from_buffers(
        child.type, len(child), [validity, child_offsets, pa.py_buffer(data)], 0, child.offset
    )
    list_validity, list_offsets = column.buffers()[:2]
    shared = pa.Array.from_buffers(
        typ, len(column), [list_validity, list_offsets], 0, column.offset, children=[shared_child]
    )
    views = ListRows(
        _offsets(list_offsets, pa.types.is_large_list(typ), column.offset, len(column)),
        _offsets(child_offsets, pa.types.is_large_string(typ.value_type), child.offset, len(child)),
        data,
    )
    return shared, views
