"""matching.list_rows: row reads from a list<string> column's buffers equal Arrow's own."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from matching.list_rows import list_rows

_rows = st.lists(st.lists(st.text(max_size=12), min_size=0, max_size=4), max_size=30)
_types = [
    pa.list_(pa.string()),
    pa.large_list(pa.string()),
    pa.list_(pa.large_string()),
    pa.large_list(pa.large_string()),
]


@pytest.mark.parametrize("typ", _types, ids=str)
@given(rows=_rows, start=st.integers(0, 5), stop_back=st.integers(0, 5))
def test_rows_equal_as_py(typ: pa.DataType, rows: list[list[str]], start: int, stop_back: int) -> None:
    """Any row of any slice (offsets not starting at zero, on the list and on its strings) reads as
    ``as_py`` reads it, and the rebuilt column holds the same values."""
    column = pa.array(rows, type=typ)
    column = column.slice(min(start, len(column)), max(len(column) - start - stop_back, 0))
    shared, views = list_rows(column)
    assert shared.equals(column)
    assert [views.row(r) for r in range(len(column))] == column.to_pylist()


def test_sliced_strings_under_the_lists() -> None:
    """A list column whose strings array itself starts at an offset (built from a sliced child)."""
    strings = pa.array(["x", "y", "Müller", "", "Ça va", "z"]).slice(2)
    column = pa.ListArray.from_arrays(pa.array([0, 2, 2, 4], type=pa.int32()), strings)
    shared, views = list_rows(column)
    assert [views.row(r) for r in range(len(column))] == [["Müller", ""], [], ["Ça va", "z"]]
    assert shared.to_pylist() == column.to_pylist()


def test_no_second_copy() -> None:
    """The rebuilt column's characters are the views' bytes object, not a copy of it."""
    shared, views = list_rows(pa.array([["Anna Schmidt"], ["ACME GmbH", "Acme"]]))
    assert shared.values.buffers()[2].address == pa.py_buffer(views.data).address
    assert views.data == b"Anna SchmidtACME GmbHAcme"


def test_empty_column() -> None:
    shared, views = list_rows(pa.array([], type=pa.list_(pa.string())))
    assert len(shared) == 0
    assert views.data == b""


@pytest.mark.parametrize(
    "column",
    [
        pa.array([["a"], None]),
        pa.array([["a", None]]),
        pa.array([[1, 2]]),
        pa.array(["a", "b"]),
    ],
    ids=["null row", "null string", "list of ints", "plain strings"],
)
def test_refuses_what_the_index_never_holds(column: pa.Array) -> None:
    with pytest.raises(ValueError, match="list_rows reads"):
        list_rows(column)
