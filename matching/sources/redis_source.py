"""Redis as the index source: full load of the account hashes, then follow the change stream.

Layout and writers: :mod:`matching.sources.redis_layout` (DESIGN.md §3).

Lifecycle (one daemon *follower* thread per :class:`RedisIndexSource`)::

    start(on_index) ─► [local cache? load it, on_index(cached)] ─► connect
        ─► full load (unless the cache's stream position is still good)
              note the stream position (XINFO STREAM: last-generated-id + entries-added)
              SCAN + pipelined HMGET of every account hash ─► pyarrow table ─► AccountIndex.build
              on_index(index); write the local cache (background)
        ─► follow: XREAD BLOCK from the noted id; changes applied in batches as OverlayIndex
              (matching.overlay), compacted into a new base AccountIndex in a background thread.

Consistency. A writer changes a hash and appends its stream entry in one MULTI/EXEC. The position
is noted *before* the hashes are read, so every change the scan may have missed is after it in
the stream and gets replayed; replaying re-reads the hash (the hash is the truth, the entry only
says which account changed; a missing hash means the account is gone), so replay is idempotent and
two changes to one account apply in order. Changes are applied in *settle rounds*: each round is
one MULTI/EXEC holding XINFO STREAM (gap check), the hashes of the accounts named by the previous
round's entries, and a non-blocking XREAD for the entries after them. When a round returns no new
entries, every account read reflects Redis at that round's instant, so the published index is a
state Redis really had: a writer's multi-account transaction becomes visible all at once. Under a
backlog (rounds still returning entries after ``max_settle_s``) an intermediate state is published to keep
progress visible (counted in ``status().unsettled_publishes``).

Gaps. The follower keeps (last id L, E = entries ever added up to L). In every round it checks, in
the same transaction as the read: stream missing (while L > 0) · last-generated-id < L (recreated)
· entries-added < E (recreated) · max-deleted-entry-id > L (entries after us deleted) · and, when
the entry L itself is gone, entries-added − length > E (trimmed past L). Any of these forces a full
reload (logged, counted in ``gaps``); the current index keeps serving meanwhile. A full reload that
would shrink the index below ``reload_min_ratio`` of the current one is refused (the last good
index keeps serving, ``errors`` counts it) — protection against an emptied or wrong Redis.

Faults. Every Redis call has a socket timeout. On any Redis error the follower keeps the last good
index (``on_index`` is never called with partial data), marks itself disconnected, and retries
with exponential backoff and jitter; it resumes from its last applied id, so no change is lost.
``status().staleness_s`` is the time since the index was last known to equal Redis.

Full-load speed: redis-py's per-reply overhead (~10 µs) made 1M HMGETs take 11 s; the loader sends
raw RESP over the client's authenticated socket and parses with hiredis, keeping one batch queued
on the server while decoding the previous one, so it runs at the server's speed (~4 s for 1M on
the 2-core machine, see bench/bench_redis.py).

Multiple granian workers: each worker process runs its own follower (its own connection, full
load, overlay and local-cache writes — the cache write is atomic, so workers sharing a path only
race to write equivalent files). Redis sees one reader per worker.
"""

from __future__ import annotations

import io
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import hiredis
import msgspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import redis

from matching.index import STATUSES, TYPES, AccountIndex, IndexBuildError
from matching.memory import release_memory
from matching.overlay import IndexLike, OverlayIndex, compact, index_to_table, rebase
from matching.sources.parquet import SNAPSHOT_SCHEMA, read_snapshot, write_snapshot
from matching.sources.redis_layout import (
    DEFAULT_PREFIX,
    FIELDS_B,
    AccountRow,
    HashDecodeError,
    account_key,
    account_key_prefix,
    changes_key,
    connect,
    decode_values,
    rows_to_table,
    valid_iban_key,
)

log = logging.getLogger("vop.index.redis")

_ZERO: Final = (0, 0)
_META_ID: Final = b"vop.stream_id"
_META_ADDED: Final = b"vop.entries_added"
_META_PREFIX: Final = b"vop.prefix"
_IBAN_RE: Final = r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{1,30}$"


class RedisSourceSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Every tunable of the Redis index source, with its default."""

    #: Stream entries read per settle round (XREAD COUNT) while following.
    batch_size: int = 1000
    #: Keys per SCAN call and per pipelined HMGET batch during a full load.
    load_batch: int = 5000
    #: How long one XREAD BLOCK waits for a change before the follower checks in (ms).
    block_ms: int = 1000
    #: status().stale turns true when the index was last known current longer ago than this.
    max_staleness_s: float = 30.0
    #: How long settle rounds may go on (seconds) before a state is published even though more
    #: changes keep arriving (a backlog); bounds change-to-visible latency under heavy writes.
    max_settle_s: float = 0.25
    #: Compact the overlay into a new base index beyond this many changed accounts …
    compact_max_entries: int = 20_000
    #: … or when its oldest change is this old (seconds).
    compact_max_age_s: float = 300.0
    #: Reconnect backoff: base · 2^attempt, capped, each delay reduced by up to ``backoff_jitter``.
    backoff_base_s: float = 0.2
    backoff_max_s: float = 10.0
    backoff_jitter: float = 0.5
    #: Timeout of every Redis read/write (XREAD BLOCK gets ``block_ms`` on top).
    socket_timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    #: A full reload yielding fewer accounts than this share of the current index is refused.
    reload_min_ratio: float = 0.5
    #: Local snapshot cache (Parquet + stream position in its metadata); None disables it.
    cache_path: str | None = None

    def __post_init__(self) -> None:
        positive = {
            "batch_size": self.batch_size,
            "load_batch": self.load_batch,
            "block_ms": self.block_ms,
            "compact_max_entries": self.compact_max_entries,
            "socket_timeout_s": self.socket_timeout_s,
            "connect_timeout_s": self.connect_timeout_s,
            "backoff_base_s": self.backoff_base_s,
            "backoff_max_s": self.backoff_max_s,
        }
        if self.max_settle_s < 0:
            raise ValueError("max_settle_s must not be negative")
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0 <= self.backoff_jitter <= 1:
            raise ValueError("backoff_jitter must be within 0..1")
        if not 0 <= self.reload_min_ratio <= 1:
            raise ValueError("reload_min_ratio must be within 0..1")


class RedisSourceStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of the follower for readiness and metrics (plain values, no personal data)."""

    ready: bool  #: an index has been handed to on_index
    connected: bool
    stale: bool  #: staleness_s > max_staleness_s (or never current)
    staleness_s: float | None  #: seconds since the index was last known to equal Redis
    last_id: str | None  #: last applied stream id
    last_change_at: float | None  #: epoch seconds a change was last applied
    last_contact_at: float | None  #: epoch seconds of the last successful Redis call
    full_loads: int
    reloads_requested: int
    gaps: int
    changes_applied: int  #: stream entries applied
    errors: int
    bad_records: int  #: account hashes / stream entries skipped for breaking the contract
    compactions: int
    unsettled_publishes: int
    overlay_entries: int
    accounts: int
    index_version: int | None
    loaded_from_cache: bool
    last_error: str | None  #: exception type of the last error


class ReadResult(msgspec.Struct, frozen=True):
    table: pa.Table
    skipped: int
    seconds: float


StreamId = tuple[int, int]


def parse_id(value: bytes | str | None) -> StreamId:
    if value is None:
        return _ZERO
    s = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = s.partition("-")
    return int(ms), int(seq or 0)


def format_id(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"


class GapDetectedError(Exception):
    """The stream no longer holds every change after our position; a full reload is needed."""


class ReloadRequestedError(Exception):
    """An operator asked for a full reload (``request_reload``)."""


class ReloadRefusedError(Exception):
    """A full reload returned suspiciously few accounts; the last good index keeps serving."""


# ---- full load: raw RESP over the client's socket --------------------------------------------
def _pack(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def _glob_escape(s: str) -> bytes:
    out = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in s)
    return out.encode()


class _RawReader:
    """hiredis over a connected socket; socket errors become redis-py's exception types."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader = hiredis.Reader()
        self._buf = bytearray(1 << 20)

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except TimeoutError:
            raise redis.TimeoutError("timeout writing to Redis") from None
        except OSError as exc:
            raise redis.ConnectionError(f"error writing to Redis: {type(exc).__name__}") from None

    def read(self) -> Any:
        gets = self._reader.gets
        reply = gets()
        while reply is False:
            try:
                n = self._sock.recv_into(self._buf)
            except TimeoutError:
                raise redis.TimeoutError("timeout reading from Redis") from None
            except OSError as exc:
                raise redis.ConnectionError(f"error reading from Redis: {type(exc).__name__}") from None
            if not n:
                raise redis.ConnectionError("Redis closed the connection")
            self._reader.feed(self._buf, 0, n)  # type: ignore[arg-type]  # hiredis takes any buffer
            reply = gets()
        return reply

    def read_many(self, n: int) -> list[Any]:
        gets = self._reader.gets
        out: list[Any] = []
        append = out.append
        for _ in range(n):
            reply = gets()
            if reply is False:
                reply = self.read()
            append(reply)
        return out


def read_accounts(
    client: redis.Redis,
    prefix: str = DEFAULT_PREFIX,
    *,
    batch: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> ReadResult:
    """Every account hash under ``prefix`` as a snapshot table (SCAN + pipelined HMGET).

    Hashes that break the contract are skipped and counted; hashes deleted while scanning are
    simply absent. Raises redis.RedisError on any connection problem (nothing partial escapes).
    """
    started = time.perf_counter()
    key_prefix = account_key_prefix(prefix).encode()
    plen = len(key_prefix)
    match = _glob_escape(account_key_prefix(prefix)) + b"*"
    count = str(batch).encode()
    hmget_head = b"*%d\r\n$5\r\nHMGET\r\n" % (2 + len(FIELDS_B))
    hmget_tail = b"".join(b"$%d\r\n%s\r\n" % (len(f), f) for f in FIELDS_B)

    def scan(cursor: bytes) -> bytes:
        return _pack(b"SCAN", cursor, b"MATCH", match, b"COUNT", count)

    def hmgets(keys: Sequence[bytes]) -> list[bytes]:
        return [b"%s$%d\r\n%s\r\n%s" % (hmget_head, len(k), k, hmget_tail) for k in keys]

    chunks: list[pa.Table] = []
    skipped = 0
    done = 0
    conn = client.connection_pool.get_connection()
    try:
        # The pooled connection is connected, authenticated and has its database selected.
        sock = getattr(conn, "_sock", None)
        if not isinstance(sock, socket.socket):
            raise redis.ConnectionError("no socket")
        raw = _RawReader(sock)
        raw.send(scan(b"0"))
        cursor, pending = _scan_reply(raw.read())
        more = cursor != b"0"
        raw.send(b"".join([*([scan(cursor)] if more else []), *hmgets(pending)]))
        while True:
            nxt: list[bytes] | None = None
            if more:  # the SCAN reply precedes the replies for `pending`
                cursor, nxt = _scan_reply(raw.read())
                more = cursor != b"0"
                raw.send(b"".join([*([scan(cursor)] if more else []), *hmgets(nxt)]))
            replies = raw.read_many(len(pending))
            table, bad = decode_batch(pending, replies, plen)
            if table.num_rows:
                chunks.append(table)
            skipped += bad
            done += len(pending)
            if progress is not None:
                progress(done)
            if nxt is None:
                break
            pending = nxt
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]  # replies may be in flight: drop the socket
        raise
    finally:
        client.connection_pool.release(conn)
    table = pa.concat_tables(chunks) if chunks else SNAPSHOT_SCHEMA.empty_table()
    table = _dedupe(table)
    return ReadResult(table, skipped, time.perf_counter() - started)


def _scan_reply(reply: Any) -> tuple[bytes, list[bytes]]:
    if isinstance(reply, Exception) or not isinstance(reply, list) or len(reply) != 2:
        raise redis.ResponseError(f"unexpected SCAN reply ({type(reply).__name__})")
    return reply[0], list(reply[1])


def _dedupe(table: pa.Table) -> pa.Table:
    """SCAN may return a key twice (rehashing while scanning); keep the last read of each."""
    if table.num_rows < 2 or pc.count_distinct(table.column("iban")).as_py() == table.num_rows:
        return table
    seen: dict[str, int] = {}
    for i, iban in enumerate(table.column("iban").to_pylist()):
        seen[iban] = i
    return table.take(pa.array(sorted(seen.values()), type=pa.int64()))


def decode_batch(keys: Sequence[bytes], replies: Sequence[Any], plen: int) -> tuple[pa.Table, int]:
    """HMGET replies (FIELDS order) of ``keys`` → (snapshot table of the good rows, rows skipped).

    Vectorised over the batch; a batch with data the fast path cannot take (bad JSON, non-UTF-8
    …) is decoded row by row with :func:`decode_values`, skipping exactly the bad rows.
    """
    good: list[int] = []
    vanished_or_bad: list[int] = []
    for i, r in enumerate(replies):
        if type(r) is list and r[0] is not None and r[1] is not None and r[2] is not None:
            good.append(i)
        else:
            vanished_or_bad.append(i)
    bad = 0
    for i in vanished_or_bad:
        r = replies[i]
        if type(r) is not list or any(v is not None for v in r):
            bad += 1  # an error reply (e.g. not a hash) or a hash without names/type/status
    if not good:
        return SNAPSHOT_SCHEMA.empty_table(), bad
    try:
        table, rejected = _decode_fast([keys[i] for i in good], [replies[i] for i in good], plen)
    except (ValueError, TypeError, pa.ArrowException):
        table, rejected = _decode_slow([keys[i] for i in good], [replies[i] for i in good], plen)
    return table, bad + rejected


def _decode_slow(keys: Sequence[bytes], replies: Sequence[Any], plen: int) -> tuple[pa.Table, int]:
    rows: list[AccountRow] = []
    bad = 0
    for key, values in zip(keys, replies, strict=True):
        try:
            iban = key[plen:].decode("ascii")
            row = decode_values(iban, values)
        except (HashDecodeError, UnicodeDecodeError):
            bad += 1
            continue
        if row is not None:
            rows.append(row)
    return rows_to_table(rows), bad


_TYPES_PA = pa.array([t.encode() for t in TYPES], type=pa.binary())
_STATUSES_PA = pa.array([s.encode() for s in STATUSES], type=pa.binary())
_LIST_T = pa.list_(pa.string())
_JSON_READ = pa_json.ReadOptions(use_threads=False, block_size=1 << 26)
_JSON_PARSE = pa_json.ParseOptions(
    explicit_schema=pa.schema([("n", _LIST_T)]), unexpected_field_behavior="error", newlines_in_values=False
)


def _decode_fast(keys: Sequence[bytes], replies: Sequence[Any], plen: int) -> tuple[pa.Table, int]:
    names_b, type_b, status_b, lei_b, bic_b, org_b = zip(*replies, strict=True)
    n = len(keys)
    # All names JSON arrays parsed by Arrow in one go, one line per row. A raw newline in a value
    # could shift rows, so the line count must be exact; anything Arrow rejects (bad JSON, a
    # non-string item, a duplicate key, …) or an extra row sends the batch to the slow path.
    ndjson = b'{"n":' + b'}\n{"n":'.join(names_b) + b"}\n"
    if ndjson.count(b"\n") != n:
        raise ValueError("newline inside a names value")
    parsed = pa_json.read_json(io.BytesIO(ndjson), read_options=_JSON_READ, parse_options=_JSON_PARSE)
    if parsed.num_rows != n:
        raise ValueError("names values do not map one-to-one onto rows")
    names = parsed.column("n").combine_chunks()
    loads = orjson.loads
    org_py = [loads(b) if b else [] for b in org_b]
    if not all(type(x) is list for x in org_py):
        raise TypeError("org_ids not all arrays")
    org_ids = pa.array(org_py, type=_LIST_T)
    iban_bin = pa.array([k[plen:] for k in keys], type=pa.binary())
    typ = pa.array(type_b, type=pa.binary())
    status = pa.array(status_b, type=pa.binary())
    ok = pc.and_(
        pc.and_(pc.is_in(typ, value_set=_TYPES_PA), pc.is_in(status, value_set=_STATUSES_PA)),
        pc.fill_null(pc.match_substring_regex(iban_bin, _IBAN_RE), False),
    )
    ok = pc.and_(ok, pc.less_equal(pc.binary_length(iban_bin), 34))
    ok = pc.and_(ok, pc.fill_null(pc.greater(pc.list_value_length(names), 0), False))
    flat = pc.list_flatten(names)
    blank = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(flat)), 0), True)
    if pc.any(blank).as_py():
        parents = pc.list_parent_indices(names).to_numpy()[blank.to_numpy(zero_copy_only=False)]
        mask = np.ones(len(keys), dtype=bool)
        mask[parents] = False
        ok = pc.and_(ok, pa.array(mask))
    org_nulls = pc.is_null(pc.list_flatten(org_ids))
    if pc.any(org_nulls).as_py():
        parents = pc.list_parent_indices(org_ids).to_numpy()[org_nulls.to_numpy(zero_copy_only=False)]
        mask = np.ones(len(keys), dtype=bool)
        mask[parents] = False
        ok = pc.and_(ok, pa.array(mask))

    def opt(values: Sequence[bytes | None]) -> pa.Array:
        arr = pa.array(values, type=pa.binary())
        arr = pc.if_else(pc.equal(pc.binary_length(arr), 0), pa.scalar(None, pa.binary()), arr)
        return arr.cast(pa.string())  # invalid UTF-8 → ArrowInvalid → slow path

    table = pa.Table.from_arrays(
        [
            iban_bin.cast(pa.string()),
            names,
            typ.cast(pa.string()),
            status.cast(pa.string()),
            opt(lei_b),
            opt(bic_b),
            org_ids,
        ],
        schema=SNAPSHOT_SCHEMA,
    )
    kept = table.filter(ok)
    return kept, table.num_rows - kept.num_rows


# ---- the follower ------------------------------------------------------------------------------
def redact_url(url: str) -> str:
    """``redis://host:port/db`` without credentials (safe for logs and index.source)."""
    parts = urlsplit(url)
    host = parts.hostname or (parts.path if parts.scheme == "unix" else "")
    port = f":{parts.port}" if parts.port else ""
    path = parts.path if parts.scheme != "unix" else ""
    return f"{parts.scheme}://{host}{port}{path}"


class _Backoff:
    def __init__(self, base: float, cap: float, jitter: float) -> None:
        self.base, self.cap, self.jitter = base, cap, jitter
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * (2.0**self.attempt))
        self.attempt += 1
        return delay * (1.0 - self.jitter * random.random())

    def reset(self) -> None:
        self.attempt = 0


class _Compacted(msgspec.Struct):
    base: AccountIndex
    snapshot: OverlayIndex
    position: tuple[StreamId, int]
    generation: int


class RedisIndexSource:
    """Keeps an index in step with Redis and hands every new version to ``on_index``.

    ``on_index`` runs in the follower thread with an immutable index (an ``AccountIndex`` after a
    full load or compaction, else an ``OverlayIndex``); it should just swap a reference.
    """

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        settings: RedisSourceSettings | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.settings = settings or RedisSourceSettings()
        self.source_name = f"{redact_url(url)} prefix={prefix}"
        self._stream = changes_key(prefix).encode()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._reload = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_index: Callable[[IndexLike], None] = lambda _index: None
        self._client: redis.Redis | None = None
        self._overlay: OverlayIndex | None = None
        self._published: IndexLike | None = None
        self._pos: tuple[StreamId, int] | None = None  # (last id, entries added up to it)
        self._generation = 0
        self._compacting: threading.Thread | None = None
        self._compacted: _Compacted | None = None
        self._cache_lock = threading.Lock()
        self._cache_written: StreamId = _ZERO
        self._lock = threading.Lock()
        self._connected = False
        self._fresh_at: float | None = None
        self._last_change_at: float | None = None
        self._last_contact_at: float | None = None
        self._counts = dict.fromkeys(
            ("full_loads", "gaps", "changes", "errors", "bad", "compactions", "unsettled", "requested"), 0
        )
        self._loaded_from_cache = False
        self._last_error: str | None = None

    # ---- public API ------------------------------------------------------------------------------
    def start(self, on_index: Callable[[IndexLike], None]) -> None:
        """Start the follower thread; ``on_index`` receives each new index version."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._on_index = on_index
        self._thread = threading.Thread(target=self._run, name="redis-index-follower", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop following (the last index stays with whoever holds it)."""
        self._stop.set()
        if self._thread is not None:
            limit = timeout if timeout is not None else self._read_timeout() + 1.0
            self._thread.join(limit)
        if self._compacting is not None:
            self._compacting.join(timeout or 5.0)
        self._close_client()

    def request_reload(self) -> None:
        """Ask the follower for a full reload (operator control); it starts within ``block_ms``.
        The current index keeps serving until the new one is built."""
        self._reload.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the first index was handed over (True) or ``timeout`` passed (False)."""
        return self._ready.wait(timeout)

    @property
    def current(self) -> IndexLike | None:
        return self._published

    def status(self) -> RedisSourceStatus:
        now = time.time()
        with self._lock:
            fresh = self._fresh_at
            staleness = None if fresh is None else max(0.0, now - fresh)
            pos = self._pos
            index = self._published
            overlay = self._overlay
            c = dict(self._counts)
            return RedisSourceStatus(
                ready=index is not None,
                connected=self._connected,
                stale=staleness is None or staleness > self.settings.max_staleness_s,
                staleness_s=staleness,
                last_id=None if pos is None else format_id(pos[0]),
                last_change_at=self._last_change_at,
                last_contact_at=self._last_contact_at,
                full_loads=c["full_loads"],
                reloads_requested=c["requested"],
                gaps=c["gaps"],
                changes_applied=c["changes"],
                errors=c["errors"],
                bad_records=c["bad"],
                compactions=c["compactions"],
                unsettled_publishes=c["unsettled"],
                overlay_entries=0 if overlay is None else overlay.overlay_size,
                accounts=0 if index is None else len(index),
                index_version=None if index is None else index.version,
                loaded_from_cache=self._loaded_from_cache,
                last_error=self._last_error,
            )

    # ---- thread body -----------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = _Backoff(
            self.settings.backoff_base_s, self.settings.backoff_max_s, self.settings.backoff_jitter
        )
        if self.settings.cache_path:
            self._load_cache(Path(self.settings.cache_path))
        while not self._stop.is_set():
            try:
                client = self._get_client()
                if self._pos is None:
                    self._full_load(client)
                self._follow(client, backoff)
            except GapDetectedError as exc:
                self._count("gaps")
                log.warning("change stream gap (%s): full reload", exc)
                with self._lock:
                    self._pos = None
            except ReloadRequestedError:
                self._count("requested")
                log.info("full reload requested by an operator")
                with self._lock:
                    self._pos = None
            except ReloadRefusedError as exc:
                self._error(exc)
                log.error("full reload refused: %s; serving the last good index", exc)
                self._stop.wait(backoff.next())
            except (redis.RedisError, OSError) as exc:
                self._error(exc)
                with self._lock:
                    self._connected = False
                self._close_client()
                delay = backoff.next()
                log.warning("Redis unavailable (%s); retrying in %.2f s", type(exc).__name__, delay)
                self._stop.wait(delay)
            except Exception as exc:  # never let the follower die: the last index keeps serving
                self._error(exc)
                log.error("index follower error (%s); retrying", type(exc).__name__)
                log.debug("follower error detail", exc_info=True)
                self._stop.wait(backoff.next())

    def _follow(self, client: redis.Redis, backoff: _Backoff) -> None:
        while not self._stop.is_set():
            if self._reload.is_set():
                self._reload.clear()
                raise ReloadRequestedError
            self._finish_compaction()
            self._start_compaction()
            applied = self._settle(client)
            backoff.reset()
            if applied:
                continue
            assert self._pos is not None
            reply = client.xread(
                {self._stream: format_id(self._pos[0])}, count=1, block=self.settings.block_ms
            )
            now = time.time()
            with self._lock:
                self._last_contact_at = now
                self._connected = True
                if not reply:
                    self._fresh_at = now

    def _settle(self, client: redis.Redis) -> int:
        """Settle rounds (see module doc); publishes what changed. Returns entries applied."""
        assert self._pos is not None
        last, added = self._pos
        values: dict[str, AccountRow | None] = {}
        pending: list[str] = []
        entries_total = 0
        rounds = 0
        bad = 0
        settle_started = time.monotonic()
        while True:
            pipe = client.pipeline(transaction=True)
            pipe.xinfo_stream(self._stream)
            if last != _ZERO:
                pipe.xrange(self._stream, format_id(last), format_id(last), count=1)
            for iban in pending:
                pipe.hmget(account_key(self.prefix, iban), FIELDS_B)
            pipe.xread({self._stream: format_id(last)}, count=self.settings.batch_size)
            res = pipe.execute(raise_on_error=False)
            now = time.time()
            with self._lock:
                self._last_contact_at = now
                self._connected = True
            info = res[0]
            present = bool(res[1]) if last != _ZERO else False
            _check_gap(info, present, last, added)
            offset = 2 if last != _ZERO else 1
            for iban, reply in zip(pending, res[offset : offset + len(pending)], strict=True):
                if isinstance(reply, Exception):
                    bad += 1
                    values[iban] = None
                    continue
                try:
                    values[iban] = decode_values(iban, reply)
                except HashDecodeError:
                    bad += 1
                    values[iban] = None
            stream_reply = res[-1]
            if isinstance(stream_reply, Exception):
                raise stream_reply
            entries = stream_reply[0][1] if stream_reply else []
            if not entries:
                with self._lock:
                    self._fresh_at = now
                break
            seen: dict[str, None] = {}
            for _eid, fields in entries:
                raw = fields.get(b"iban")
                iban = raw.decode("ascii", "replace") if isinstance(raw, bytes) else ""
                if valid_iban_key(iban):
                    seen[iban] = None
                else:
                    bad += 1
            pending = list(seen)
            last = parse_id(entries[-1][0])
            added += len(entries)
            entries_total += len(entries)
            rounds += 1
            if pending and rounds >= 2 and time.monotonic() - settle_started >= self.settings.max_settle_s:
                # Backlog: publish what settled rounds read; the accounts named by this round's
                # entries were not read yet, so step back before these entries (re-read next time).
                last, added = _before(parse_id(entries[0][0])), added - len(entries)
                entries_total -= len(entries)
                self._count("unsettled")
                break
        if bad:
            self._count("bad", bad)
        if entries_total == 0:
            return 0
        self._publish_changes(values, (last, added), entries_total)
        return entries_total

    def _publish_changes(
        self, values: Mapping[str, AccountRow | None], pos: tuple[StreamId, int], entries: int
    ) -> None:
        assert self._overlay is not None
        overlay = self._overlay.apply(values.items())
        now = time.time()
        with self._lock:
            self._overlay = overlay
            self._pos = pos
            self._last_change_at = now
            self._counts["changes"] += entries
        self._hand_over(overlay)

    def _hand_over(self, index: IndexLike) -> None:
        with self._lock:
            self._published = index
        self._on_index(index)
        self._ready.set()

    # ---- full load ---------------------------------------------------------------------------------
    def _full_load(self, client: redis.Redis) -> None:
        started = time.perf_counter()
        log.info("full load from %s", self.source_name)
        try:
            info = client.xinfo_stream(self._stream)
            position = (parse_id(info.get("last-generated-id")), int(info.get("entries-added") or 0))
        except redis.ResponseError as exc:
            if "no such key" not in str(exc).lower():
                raise
            position = (_ZERO, 0)
        result = read_accounts(client, self.prefix, batch=self.settings.load_batch)
        read_s = time.perf_counter() - started
        if result.skipped:
            self._count("bad", result.skipped)
            log.warning("full load skipped %d account hashes that break the data contract", result.skipped)
        index = AccountIndex.build(result.table, source=self.source_name)
        current = self._published
        if current is not None and len(index) < self.settings.reload_min_ratio * len(current):
            raise ReloadRefusedError(
                f"reload has {len(index)} accounts, current index {len(current)} "
                f"(reload_min_ratio={self.settings.reload_min_ratio})"
            )
        with self._lock:
            self._generation += 1
            self._compacted = None
            self._overlay = OverlayIndex.over(index)
            self._pos = position
            self._fresh_at = None
            self._counts["full_loads"] += 1
        log.info(
            "full load: %d accounts, stream at %s (read %.2f s, build %.2f s)",
            len(index),
            format_id(position[0]),
            read_s,
            index.build_seconds,
        )
        self._hand_over(index)
        self._write_cache_async(result.table, position)
        del result
        release_memory()

    # ---- compaction --------------------------------------------------------------------------------
    def _start_compaction(self) -> None:
        overlay = self._overlay
        if overlay is None or not overlay.changes or self._compacting is not None:
            return
        s = self.settings
        age = time.time() - overlay.oldest_change_at
        if len(overlay.changes) < s.compact_max_entries and age < s.compact_max_age_s:
            return
        assert self._pos is not None
        job = (overlay, self._pos, self._generation)

        def run() -> None:
            try:
                base = compact(job[0])
                self._compacted = _Compacted(base, job[0], job[1], job[2])
            except Exception as exc:
                self._error(exc)
                log.error("overlay compaction failed (%s)", type(exc).__name__)

        self._compacting = threading.Thread(target=run, name="redis-index-compaction", daemon=True)
        self._compacting.start()

    def _finish_compaction(self) -> None:
        thread = self._compacting
        if thread is None or thread.is_alive():
            return
        self._compacting = None
        done, self._compacted = self._compacted, None
        if done is None or done.generation != self._generation or self._overlay is None:
            return
        overlay = rebase(done.base, self._overlay, done.snapshot)
        with self._lock:
            self._overlay = overlay
            self._counts["compactions"] += 1
        log.info(
            "compacted %d changes into a new base of %d accounts (%.2f s)",
            len(done.snapshot.changes),
            len(done.base),
            done.base.build_seconds,
        )
        self._hand_over(overlay if overlay.changes else done.base)
        if self.settings.cache_path:
            self._write_cache_async(index_to_table(done.base), done.position)

    # ---- local cache ---------------------------------------------------------------------------------
    def _load_cache(self, path: Path) -> None:
        if not path.is_file():
            return
        try:
            meta = pq.read_schema(path).metadata or {}
            if meta.get(_META_PREFIX, b"").decode() != self.prefix or _META_ID not in meta:
                log.warning("local cache %s is for another prefix or lacks a stream id; ignored", path)
                return
            position = (parse_id(meta[_META_ID]), int(meta.get(_META_ADDED, b"0")))
            index = AccountIndex.build(read_snapshot(path), source=f"{self.source_name} (cache)")
        except (IndexBuildError, OSError, ValueError, pa.ArrowException) as exc:
            self._error(exc)
            log.warning("local cache %s unusable (%s); full load instead", path, type(exc).__name__)
            return
        with self._lock:
            self._overlay = OverlayIndex.over(index)
            self._pos = position
            self._loaded_from_cache = True
            self._cache_written = position[0]
        log.info("loaded %d accounts from local cache, stream at %s", len(index), format_id(position[0]))
        self._hand_over(index)

    def _write_cache_async(self, table: pa.Table, position: tuple[StreamId, int]) -> None:
        path = self.settings.cache_path
        if not path:
            return

        def run() -> None:
            meta = dict(table.schema.metadata or {})
            meta.update(
                {
                    _META_ID: format_id(position[0]).encode(),
                    _META_ADDED: str(position[1]).encode(),
                    _META_PREFIX: self.prefix.encode(),
                }
            )
            with self._cache_lock:
                if position[0] < self._cache_written:
                    return  # a newer cache is already on disk
                try:
                    write_snapshot(table.replace_schema_metadata(meta), path)
                    self._cache_written = position[0]
                except (OSError, pa.ArrowException) as exc:
                    self._error(exc)
                    log.warning("writing the local cache failed (%s)", type(exc).__name__)

        threading.Thread(target=run, name="redis-index-cache", daemon=True).start()

    # ---- helpers -----------------------------------------------------------------------------------
    def _read_timeout(self) -> float:
        return self.settings.socket_timeout_s + self.settings.block_ms / 1000.0

    def _get_client(self) -> redis.Redis:
        if self._client is None:
            self._client = connect(
                self.url, socket_timeout=self._read_timeout(), connect_timeout=self.settings.connect_timeout_s
            )
        return self._client

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except (redis.RedisError, OSError):
                log.debug("closing the Redis client failed", exc_info=True)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _error(self, exc: BaseException) -> None:
        with self._lock:
            self._counts["errors"] += 1
            self._last_error = type(exc).__name__


def _before(sid: StreamId) -> StreamId:
    """The greatest id smaller than ``sid``."""
    return (sid[0], sid[1] - 1) if sid[1] > 0 else (sid[0] - 1, 2**64 - 1)


def _check_gap(info: Any, present: bool, last: StreamId, added: int) -> None:
    """Raise GapDetectedError when entries after ``last`` may have been lost (see module doc)."""
    if isinstance(info, Exception):
        if "no such key" not in str(info).lower():
            raise info
        if last != _ZERO or added:
            raise GapDetectedError("stream missing")
        return
    generated = parse_id(info.get("last-generated-id"))
    if last > generated:
        raise GapDetectedError("stream ids went back: recreated")
    entries_added = info.get("entries-added")
    length = int(info.get("length") or 0)
    if entries_added is not None and int(entries_added) < added:
        raise GapDetectedError("entries-added went back: recreated")
    deleted = info.get("max-deleted-entry-id")
    if deleted is not None and parse_id(deleted) > last:
        raise GapDetectedError("entries after our position were deleted")
    if present:
        return
    if entries_added is not None:
        if int(entries_added) - length > added:
            raise GapDetectedError("trimmed past our position")
        return
    first = info.get("first-entry")  # Redis < 7: no entries-added; be conservative
    if first and parse_id(first[0]) > last and last != generated:
        raise GapDetectedError("first entry after our position (Redis < 7)")
