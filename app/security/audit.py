"""Tamper-evident, GDPR-safe audit trail: one JSON line per answered check.

Each line holds pseudonyms only (keyed hashes of IBAN and name, pseudonym.py), never clear values.
Lines form a hash chain: ``prev`` is the SHA-256 (hex) of the previous line's bytes and ``mac`` is an
HMAC-SHA256, with a key derived from the audit key, over the line's bytes up to the mac field. So
editing a line breaks its MAC, and deleting, inserting or reordering lines breaks a ``prev`` link;
without the key nobody can re-chain a doctored file.

Files: ``audit-<UTC start>-<chain id>-<part>.jsonl``, mode 0600. Every file opens with a ``header`` line
(chain id, part number, previous file's name and the hash of its last line) and ends with a ``close``
line (``rotate``, naming the next file, or ``shutdown``), so a file cut short, a missing file and a
missing tail are all detected. Every process writes its own chain (workers never share a file).

Line kinds (``t``): ``header``, ``check`` (one answered check), ``dropped`` (records lost because the
queue was full; written, and chained, as soon as the writer catches up), ``close``.

Writing is asynchronous: ``record()`` puts a tuple on a bounded queue (``AuditQueue``) and returns; a
``ChainWriter`` does hashing, encoding, chaining and file I/O, flushing each batch and fsync-ing at
most once a second (and at rotation and shutdown). It runs in a thread (``AuditTrail``, here) or in a
child process (``app.security.audit_process.AuditProcess``, the default: off the worker's GIL).
Queue full: wait up to ``block_s``, then drop the record and count it
(``dropped``); the count also goes into the chain as a ``dropped`` line.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import msgspec

from app.security.pseudonym import Pseudonymiser, derive_key
from app.timestamps import rfc3339_ms

log = logging.getLogger("vop.security.audit")


class _Mac(Protocol):
    def copy(self) -> _Mac: ...
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


try:  # OpenSSL's HMAC object, the one ``hmac.new`` wraps (``_keyed_hmac``)
    from _hashlib import hmac_new as _openssl_hmac
except ImportError:  # (an interpreter built without OpenSSL)
    _openssl_hmac = None  # type: ignore[assignment]

FORMAT_VERSION = 1
GENESIS = "0" * 64
_MAC_PREFIX = b',"mac":"'
_MAC_HEX = 64
_TAIL = len(_MAC_PREFIX) + _MAC_HEX + 2  # ,"mac":"<64 hex>"}
_BATCH = 1024
FSYNC_EVERY_S = 1.0
_STOP = object()
# Close reason of a chain whose worker process vanished (the audit_process child saw end of input).
WORKER_LOST = "worker-lost"
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(dict[str, Any])


class _CheckLine(msgspec.Struct, gc=False):
    """A ``check`` line before its MAC: the same JSON, key for key and in the same order, as the
    dict form of the other line kinds (a Struct encodes in ~half the time of a dict and needs no
    dict built per record). With the HMAC and pseudonym hashes keyed once and the timestamp text
    reused while it repeats, a line costs 6.3-7.2 µs instead of 11.9 (bench/RESULTS.md)."""

    t: str
    seq: int
    ts: str
    rid: str
    client: str
    iban: str
    name: str | None
    code: str
    reason: str
    index: int
    enum: bool
    prev: str


def audit_keys(key: bytes | str) -> tuple[bytes, Pseudonymiser]:
    """(MAC key, pseudonymiser) derived from the configured audit key."""
    master = key.encode() if isinstance(key, str) else key
    return derive_key(master, "audit-mac"), Pseudonymiser(master)


def _iso(ts: float) -> str:
    return rfc3339_ms(ts)


def seal(fields: dict[str, Any] | msgspec.Struct, mac_key: bytes) -> bytes:
    """The line for ``fields`` (encoded in insertion order) with its MAC appended, without newline."""
    body = _encoder.encode(fields)
    return _with_mac(body, hmac.digest(mac_key, body, "sha256"))


def _with_mac(body: bytes, mac: bytes) -> bytes:
    return body[:-1] + _MAC_PREFIX + mac.hex().encode() + b'"}'


def unseal(line: bytes, mac_key: bytes) -> dict[str, Any] | None:
    """The fields of a line whose MAC is right, else None."""
    if (
        len(line) <= _TAIL
        or not line.endswith(b'"}')
        or line[-_TAIL : -_TAIL + len(_MAC_PREFIX)] != _MAC_PREFIX
    ):
        return None
    body = line[:-_TAIL] + b"}"
    mac = line[-_MAC_HEX - 2 : -2]
    if not hmac.compare_digest(hmac.digest(mac_key, body, "sha256").hex().encode(), mac):
        return None
    try:
        fields = _decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return fields


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _keyed_hmac(key: bytes) -> _Mac:
    """HMAC-SHA256 keyed once, to be copied per line. OpenSSL's own HMAC object where this
    interpreter has it (``_hashlib.hmac_new``, what ``hmac.new`` wraps): its ``copy``, ``update``
    and ``digest`` are C calls, 0.87 against 1.21 µs a line through the ``hmac.HMAC`` wrapper's
    Python methods. The same MAC either way (``tests/test_audit.py``)."""
    if _openssl_hmac is not None:
        return cast(_Mac, _openssl_hmac(key, digestmod="sha256"))
    return hmac.new(key, digestmod=hashlib.sha256)


class ChainWriter:
    """One hash chain on disk: turns check records into sealed lines, rotates files, fsyncs.

    Not thread-safe: one writer (the ``AuditTrail`` thread, or the ``audit_process`` child) owns it.
    A record is the tuple ``AuditTrail.record`` queues:
    ``(ts, request_id, client_id, iban, name, code, reason, index_version, forced)``.
    """

    def __init__(
        self,
        directory: str | Path,
        key: bytes | str,
        *,
        rotate_bytes: int = 256 * 1024 * 1024,
        chain: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self._mac_key, self._pseudonyms = audit_keys(key)
        # keyed once: a copy per line skips HMAC's two key-pad blocks (1.55 against 2.59 µs a line)
        self._mac = _keyed_hmac(self._mac_key)
        self._rotate_bytes = rotate_bytes
        self._clock = clock
        self.chain = chain or secrets.token_hex(8)
        self._started = _iso(clock()).replace("-", "").replace(":", "").split(".")[0] + "Z"
        self._part = 0
        self._seq = 0
        self._prev = GENESIS
        self._fh: Any = None
        self._path: Path | None = None
        self._size = 0
        self._last_fsync = 0.0
        self._unsynced = False
        self._drops_written = 0
        self._last_ts, self._last_iso = -1.0, ""
        self.written = 0  # check lines written
        self.files: list[Path] = []

    def write(self, records: Sequence[tuple[Any, ...]], dropped_total: int = 0) -> None:
        """Append the records (and a ``dropped`` line when ``dropped_total`` grew), flush, and fsync
        if the last fsync is a second old. An OSError leaves the file abandoned (the next write opens a
        new part, whose header links to the last line written).

        The batch's pseudonyms are computed first, the names canonicalised as one batch
        (``Pseudonymiser.optional_names``); then each line is sealed in one loop, in order, since
        each links to the one before (``_seal_checks``)."""
        try:
            if records:
                iban = self._pseudonyms.iban  # (a method call per IBAN: the hashing is the cost)
                ibans = [iban(r[3]) for r in records]
                names = self._pseudonyms.optional_names([r[4] for r in records])
                self._seal_checks(records, ibans, names)
            drops = dropped_total - self._drops_written
            if drops > 0:
                if self._fh is None:
                    self._open()
                self._emit(self._next_line("dropped", {"ts": _iso(self._clock()), "count": drops}))
                self._drops_written += drops
            elif not records:
                return
            if self._fh is None:
                return
            self._fh.flush()
            self._unsynced = True
            if time.monotonic() - self._last_fsync >= FSYNC_EVERY_S:
                self.sync()
        except Exception:
            self._abandon_file()
            raise

    def _seal_checks(
        self, records: Sequence[tuple[Any, ...]], ibans: Sequence[str], names: Sequence[str | None]
    ) -> None:
        """A ``check`` line for each record (with its IBAN and name pseudonyms), chained and written,
        rotating the file when it is full. ``_chained`` and ``_emit``, inlined: this loop is the
        writer's time, and calling them measured 0.1-0.4 µs more a line (5.27-5.91 against
        5.45-6.02 µs, bench/RESULTS.md)."""
        encode, new_mac, chain_hash = _encoder.encode, self._mac.copy, line_hash
        for (ts, rid, client, _, _, code, reason, index_version, forced), iban, name in zip(
            records, ibans, names, strict=True
        ):
            if self._fh is None:
                self._open()
            elif self._size >= self._rotate_bytes:
                next_name = f"audit-{self._started}-{self.chain}-{self._part + 1:06d}.jsonl"
                self._finish("rotate", next_name)
                self._open()
            if ts != self._last_ts:  # a bulk request's records share one timestamp
                self._last_ts, self._last_iso = ts, _iso(ts)
            self._seq += 1
            body = encode(
                _CheckLine(
                    "check", self._seq, self._last_iso, rid, client, iban, name, code, reason,
                    index_version, forced, self._prev,
                )
            )  # fmt: skip
            mac = new_mac()
            mac.update(body)
            line = _with_mac(body, mac.digest())
            self._prev = chain_hash(line)
            self._fh.write(line + b"\n")
            self._size += len(line) + 1
            self.written += 1

    def sync(self) -> None:
        """fsync the current file if anything was written since the last fsync."""
        if self._fh is not None and self._unsynced:
            os.fsync(self._fh.fileno())
            self._unsynced = False
            self._last_fsync = time.monotonic()

    def close(self, reason: str = "shutdown") -> None:
        """End the chain with a ``close`` line (``shutdown``, or ``worker-lost`` when the process the
        records came from went away without closing it)."""
        if self._fh is not None:
            self._finish(reason, None)

    def _next_line(self, kind: str, fields: dict[str, Any]) -> bytes:
        self._seq += 1
        return self._chained({"t": kind, "seq": self._seq, **fields, "prev": self._prev})

    def _chained(self, record: dict[str, Any] | msgspec.Struct) -> bytes:
        """``seal(record, mac key)`` with the HMAC keyed once; the line becomes the chain's last
        (``record`` carries its ``seq`` and ``prev`` already)."""
        body = _encoder.encode(record)
        mac = self._mac.copy()
        mac.update(body)
        line = _with_mac(body, mac.digest())
        self._prev = line_hash(line)
        return line

    def _emit(self, line: bytes) -> None:
        self._fh.write(line + b"\n")
        self._size += len(line) + 1

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        previous = self._path.name if self._path is not None else None
        self._part += 1
        path = self.directory / f"audit-{self._started}-{self.chain}-{self._part:06d}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._fh = os.fdopen(fd, "ab", buffering=1 << 16)
        self._path = path
        self._size = 0
        self.files.append(path)
        header = {
            "v": FORMAT_VERSION,
            "ts": _iso(self._clock()),
            "chain": self.chain,
            "part": self._part,
            "prev_file": previous,
        }
        self._emit(self._next_line("header", header))

    def _finish(self, reason: str, next_file: str | None) -> None:
        self._emit(self._next_line("close", {"ts": _iso(self._clock()), "reason": reason, "next": next_file}))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        self._unsynced = False

    def _abandon_file(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None


class AuditQueue:
    """The request side shared by both writers: ``record()`` appends a tuple to a bounded deque (no
    lock, no thread hand-off per record); when it is full, wait up to ``block_s``, then drop and count.

    The writer (or shipper) thread wakes every ``WAKE_EVERY_S``, when ``_BATCH`` records wait, when
    the buffer is half full, or on close. Measured: a queue.Queue put that notified the writer on
    every request cost ~11 µs per request (a thread hand-off each time, under the GIL); an append
    to a deque drained in batches costs ~0.1 µs. Every wake takes the GIL from the event loop."""

    WAKE_EVERY_S = 0.01

    def __init__(self, queue_size: int, block_s: float, clock: Callable[[], float]) -> None:
        self._buffer: deque[Any] = deque()
        self._capacity = queue_size
        self._wake = threading.Event()
        self._block_s = block_s
        self._clock = clock
        self._drop_lock = threading.Lock()
        self.dropped = 0  # records lost (full queue, or a writer that died with them)
        self.restarts = 0  # writer processes restarted after dying (always 0 for the thread writer)
        self._closed = False
        self._thread: threading.Thread  # the writer (or shipper) thread, started by the subclass

    def close(self, timeout_s: float = 10.0) -> None:
        """Hand over everything queued, close the chain with a ``close`` line, stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._request_stop()
        self._thread.join(timeout=timeout_s)

    def record(
        self,
        *,
        request_id: str,
        client_id: str,
        iban: str,
        name: str | None,
        code: str,
        reason: str,
        index_version: int,
        forced: bool,
    ) -> None:
        item = (self._clock(), request_id, client_id, iban, name, code, reason, index_version, forced)
        buffer = self._buffer
        if len(buffer) >= self._capacity // 2:
            self._wake.set()
            if len(buffer) >= self._capacity:
                self._wait_for_room(1)
                if len(buffer) >= self._capacity:
                    self._count_dropped(1)
                    return
        buffer.append(item)  # deque.append is atomic: no lock, no hand-off per record

    def record_many(
        self,
        *,
        request_id: str,
        client_id: str,
        index_version: int,
        entries: Sequence[tuple[str, str | None, str, str, bool]],
    ) -> None:
        """``record`` for every (iban, name, code, reason, forced) of one bulk request, as one
        ``deque.extend`` (measured: ~1 µs per item less than 10,000 keyword calls). The full-queue
        policy applies to the whole batch: wait up to ``block_s`` for room, drop (and count) the rest."""
        ts = self._clock()
        items = [
            (ts, request_id, client_id, iban, name, code, reason, index_version, forced)
            for iban, name, code, reason, forced in entries
        ]
        buffer = self._buffer
        if len(buffer) + len(items) >= self._capacity // 2:
            self._wake.set()
            if len(buffer) + len(items) > self._capacity:
                self._wait_for_room(len(items))
            room = max(self._capacity - len(buffer), 0)
            if room < len(items):
                self._count_dropped(len(items) - room)
                items = items[:room]
        buffer.extend(items)

    def _wait_for_room(self, needed: int) -> None:
        """Wait up to ``block_s`` until ``needed`` more records fit (the writer drains the deque)."""
        buffer = self._buffer
        deadline = time.monotonic() + self._block_s
        while len(buffer) + needed > self._capacity and time.monotonic() < deadline:
            time.sleep(0.0005)

    def _count_dropped(self, n: int) -> None:
        with self._drop_lock:
            self.dropped += n

    def _take(self, limit: int) -> tuple[list[Any], bool]:
        """Wait for records (a batch, the wake interval, or a wake-up), then take up to ``limit``.
        Returns (records, stop requested)."""
        buffer = self._buffer
        if len(buffer) < _BATCH:  # let records gather: one write and flush per batch
            self._wake.wait(self.WAKE_EVERY_S)
            self._wake.clear()
        batch: list[Any] = []
        stop = False
        while buffer and len(batch) < limit:
            item = buffer.popleft()
            if item is _STOP:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _request_stop(self) -> None:
        self._buffer.append(_STOP)
        self._wake.set()


class AuditTrail(AuditQueue):
    """Writer in a thread of this process: ``record()`` from request handlers, ``close()`` on shutdown
    (flushes everything). Costs ~10 µs of this process's GIL per record (pseudonyms, MAC, hash);
    ``app.security.audit_process.AuditProcess`` does the same work in a child process."""

    def __init__(
        self,
        directory: str | Path,
        key: bytes | str,
        *,
        queue_size: int = 65_536,
        block_s: float = 0.005,
        rotate_bytes: int = 256 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(queue_size, block_s, clock)
        self.directory = Path(directory)
        self._writer = ChainWriter(directory, key, rotate_bytes=rotate_bytes, clock=clock)
        self.chain = self._writer.chain
        self.write_errors = 0
        self._thread = threading.Thread(target=self._run, name="vop-audit-writer", daemon=True)
        self._thread.start()

    @property
    def written(self) -> int:
        return self._writer.written

    @property
    def files(self) -> list[Path]:
        return self._writer.files

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def _run(self) -> None:
        while True:
            batch, stop = self._take(_BATCH)
            if batch or stop or self.dropped:
                self._write(batch, stop)
            if stop:
                return

    def _write(self, batch: list[tuple[Any, ...]], stop: bool) -> None:
        try:
            self._writer.write(batch, self.dropped)
            if stop:
                self._writer.close("shutdown")
        except Exception:
            self.write_errors += 1
            log.exception("audit writer failed; up to %d records of this batch not written", len(batch))


# -- verification ---------------------------------------------------------------------------------
class BadLine(msgspec.Struct, frozen=True):
    path: str
    line: int  # 1-based
    reason: str


class VerifyReport(msgspec.Struct):
    ok: bool
    files: int = 0
    checks: int = 0
    dropped: int = 0
    chains: int = 0
    first_bad: BadLine | None = None
    notes: list[str] = msgspec.field(default_factory=list)

    def render(self) -> str:
        head = "PASS" if self.ok else "FAIL"
        text = [
            f"{head}: {self.files} files, {self.chains} chains, {self.checks} checks, {self.dropped} dropped"
        ]
        if self.first_bad is not None:
            bad = self.first_bad
            text.append(f"first bad line: {bad.path}:{bad.line}: {bad.reason}")
        text.extend(f"note: {n}" for n in self.notes)
        return "\n".join(text)


class _File(msgspec.Struct):
    path: Path
    lines: list[bytes]
    header: dict[str, Any]


class _BadFileError(Exception):
    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(reason)
        self.bad = BadLine(str(path), line, reason)


_KINDS = frozenset({"header", "check", "dropped", "close"})


def _load(path: Path, mac_key: bytes) -> _File:
    data = path.read_bytes()
    if not data:
        raise _BadFileError(path, 1, "file is empty")
    lines = data.split(b"\n")
    if lines[-1]:
        raise _BadFileError(path, len(lines), "last line is cut short (no newline): the file was truncated")
    lines.pop()
    header = unseal(lines[0], mac_key)
    if header is None:
        raise _BadFileError(path, 1, "header MAC does not match (edited, or the wrong audit key)")
    if header.get("t") != "header" or header.get("v") != FORMAT_VERSION:
        raise _BadFileError(path, 1, "first line is not an audit header of a known version")
    return _File(path, lines, header)


def verify_audit_files(
    paths: Iterable[str | Path], key: bytes | str, *, allow_open_tail: bool = False
) -> VerifyReport:
    """Check MACs, hash links, sequence numbers and file continuity of the given files.

    Files may be given in any order; they are grouped by chain and ordered by part. ``allow_open_tail``
    accepts a last file without its ``close`` line (a file still being written, or a writer that died).
    """
    mac_key, _ = audit_keys(key)
    report = VerifyReport(ok=True)
    try:
        loaded = [_load(Path(p), mac_key) for p in paths]
        if not loaded:
            raise _BadFileError(Path("-"), 0, "no files given")
        chains: dict[str, list[_File]] = {}
        for f in loaded:
            chains.setdefault(str(f.header.get("chain")), []).append(f)
        report.files = len(loaded)
        report.chains = len(chains)
        for chain, files in chains.items():
            files.sort(key=lambda f: int(f.header.get("part", 0)))
            _verify_chain(chain, files, mac_key, report, allow_open_tail)
    except _BadFileError as fail:
        report.ok = False
        report.first_bad = fail.bad
    return report


def _verify_chain(
    chain: str, files: list[_File], mac_key: bytes, report: VerifyReport, allow_open_tail: bool
) -> None:
    prev_hash: str | None = None
    prev_seq: int | None = None
    prev_file: _File | None = None
    first_part = int(files[0].header.get("part", 0))
    if first_part != 1:
        report.notes.append(f"chain {chain} starts at part {first_part}: earlier files were not given")
    for f in files:
        part = int(f.header.get("part", 0))
        if prev_file is None:
            if part == 1 and (f.header.get("prev") != GENESIS or f.header.get("prev_file") is not None):
                raise _BadFileError(f.path, 1, "first file of a chain does not start from the genesis hash")
        else:
            expected_part = int(prev_file.header["part"]) + 1
            if part != expected_part:
                raise _BadFileError(
                    f.path, 1, f"chain {chain}: part {expected_part} is missing before part {part}"
                )
            if f.header.get("prev_file") != prev_file.path.name and f.header.get("prev_file") is not None:
                report.notes.append(
                    f"{f.path.name}: previous file was renamed from {f.header.get('prev_file')}"
                )
            if f.header.get("prev") != prev_hash:
                raise _BadFileError(f.path, 1, "header does not link to the last line of the previous file")
            if f.header.get("seq") != (prev_seq or 0) + 1:
                raise _BadFileError(f.path, 1, "sequence number does not follow the previous file")
        prev_hash, prev_seq = _verify_lines(f, mac_key, report, prev_seq)
        last = unseal(f.lines[-1], mac_key) or {}
        is_last_file = f is files[-1]
        if last.get("t") != "close":
            if not (is_last_file and allow_open_tail):
                raise _BadFileError(
                    f.path,
                    len(f.lines),
                    "file ends without a close line: lines were cut from its end (or its writer crashed)",
                )
            report.notes.append(f"{f.path.name}: open tail accepted (no close line)")
        elif last.get("reason") == "rotate" and is_last_file:
            report.notes.append(f"chain {chain} continues in {last.get('next')}, which was not given")
        elif last.get("reason") != "rotate" and not is_last_file:
            raise _BadFileError(f.path, len(f.lines), "a file follows the chain's final close line")
        elif last.get("reason") == WORKER_LOST:
            report.notes.append(
                f"chain {chain} ends with {WORKER_LOST}: its worker exited without closing the trail"
                " (records it had not handed over are lost and not counted)"
            )
        prev_file = f


def _verify_lines(f: _File, mac_key: bytes, report: VerifyReport, prev_seq: int | None) -> tuple[str, int]:
    header_seq = f.header.get("seq")
    if not isinstance(header_seq, int) or (prev_seq is None and header_seq < 1):
        raise _BadFileError(f.path, 1, "header has no valid sequence number")
    prev_hash = line_hash(f.lines[0])
    seq = header_seq
    for number, line in enumerate(f.lines[1:], start=2):
        fields = unseal(line, mac_key)
        if fields is None:
            raise _BadFileError(f.path, number, "MAC does not match: the line was edited or inserted")
        kind = fields.get("t")
        if kind not in _KINDS or kind == "header":
            raise _BadFileError(f.path, number, f"unexpected line kind {kind!r}")
        if fields.get("prev") != prev_hash:
            raise _BadFileError(
                f.path, number, "hash link broken: a line before it was deleted, inserted or reordered"
            )
        if fields.get("seq") != seq + 1:
            raise _BadFileError(f.path, number, "sequence number out of order")
        if kind == "close" and number != len(f.lines):
            raise _BadFileError(f.path, number + 1, "lines after the close line")
        if kind == "check":
            report.checks += 1
        elif kind == "dropped":
            report.dropped += int(fields.get("count", 0))
        seq += 1
        prev_hash = line_hash(line)
    return prev_hash, seq
