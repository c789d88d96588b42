"""Process memory around index builds: which allocator Arrow uses, and handing transient memory back.

Measured at 1M accounts (bench/RESULTS.md): with pyarrow's default mimalloc pool a process holds
~760 MB after a build although the index's arrays are ~115 MB, because the pool keeps what the
build freed; with the system allocator plus ``malloc_trim`` after the build it holds ~450 MB, and
the hot path is as fast (51 vs 52 µs per request in process)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

import pyarrow as pa


def use_system_allocator() -> None:
    """Make Arrow allocate with malloc (call once per process, before loading an index)."""
    pa.set_memory_pool(pa.system_memory_pool())


def release_memory() -> None:
    """Hand a build's transient memory (Python objects, Arrow buffers) back to the OS."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the allocator keeps its arenas
