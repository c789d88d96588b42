"""The audit writer in a child process, so that a worker's GIL pays only for queueing a tuple.

Why: sealing one audit line is ~5 µs of Python (two keyed pseudonyms, the line MAC, the chain hash,
the JSON encoding; bench/bench_inprocess.py and the note in bench/RESULTS.md). In a writer *thread*
that time is taken from the request handlers under the GIL, and a thread that holds the GIL delays
the event loop by up to the interpreter's 5 ms switch interval: both the single-check throughput and
its p99 paid for it. Here the worker keeps the same bounded deque (``AuditQueue``) and hands each
batch to the child as one msgpack frame (one C call to encode); the child owns the ``ChainWriter``
and does all the hashing. Who ships: in a worker, the event loop itself (``attach``, at app
start-up): every 100 ms a loop callback frames what is queued and writes it to the pipe without
blocking, the rest following when the pipe has room, so no thread of the worker wakes to ship
(measured: 1.07x the checks/s of the shipper thread, bench.http, same run). Before ``attach``, and
outside an event loop (tools, tests), a shipper thread does the same every 100 ms or once 1,024
records wait. Every thread wake takes the GIL from the event loop: a shipper and acks every 10 ms
cost the worker 9 % of its single-check throughput against every 100 ms.

Protocol, over the child's stdin and stdout, 4-byte big-endian length + msgpack (msgspec Structs):
- worker → child: ``Config`` once (the key travels here, never in argv or the environment),
  then ``Batch`` frames, then ``End`` on an orderly close;
- child → worker: an ``Ack`` (records written so far, write errors, new files) at most every
  100 ms while batches arrive, at once when a file rotates, each idle second and at the end.

Lifetimes: the child lives as long as its stdin. End of input without ``End`` (the worker was
killed) closes the chain with ``worker-lost``, so the file still verifies and says what happened.
The child ignores SIGINT and SIGTERM: a Ctrl-C or a signal to the process group cannot cut the
trail before the worker has handed everything over. A child that dies is restarted by the worker
(a new chain, after ``restart_delay_s``); the records it had not acknowledged are counted as dropped
(conservatively: one written just before the crash but not yet acknowledged counts too), and the new
chain's first batch writes that count as a ``dropped`` line. While no child runs, records wait in the
deque and are dropped and counted once it is full, as with a slow disk.

Priority: the child adds ``nice`` (``VOP_AUDIT_NICE``, default 5) to its niceness before it writes.
Where it shares a core with its worker, the scheduler then runs a woken worker before the child's
bursts (100 ms of records at once) instead of after them; at +5 the child still gets about a quarter
of a core it contends for, several times what its ~10 µs a record needs beside the worker's ~100 µs
or more a request.

Run as ``python -m app.security.audit_process`` (by ``AuditProcess`` only).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import msgspec

from app.security.audit import FSYNC_EVERY_S, WORKER_LOST, AuditQueue, ChainWriter

log = logging.getLogger("vop.security.audit")

# Records per frame: 4096 records are ~0.5 MB of msgpack and ~1 ms to encode (one C call).
_SHIP_BATCH = 4096
_PIPE_BYTES = 1 << 20  # the child's stdin pipe, for shipping from the event loop
_MAX_BACKLOG_BYTES = 8 << 20  # frames the pipe has not taken; beyond, records wait in the deque
# The child acknowledges at most this often (and when a file rotates, and when idle). Every ack
# wakes the worker's reader thread, which takes the GIL from the event loop: with an ack per frame
# and a frame every 10 ms, the worker served 9 % fewer checks (bench.http, same run) than with
# frames and acks every 100 ms.
_ACK_EVERY_S = 0.1
_HEADER = struct.Struct(">I")
_MAX_FRAME = 64 * 1024 * 1024
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

Record = tuple[float, str, str, str, str | None, str, str, int, bool]


class Config(msgspec.Struct, frozen=True, tag="config"):
    directory: str
    key: bytes
    rotate_bytes: int
    chain: str
    nice: int = 0  # added to the child's niceness before it writes anything (``os.nice``)


class Batch(msgspec.Struct, frozen=True, array_like=True, tag="b"):
    dropped: int  # records dropped since the previous batch (to be written as a ``dropped`` line)
    records: list[Record]


class End(msgspec.Struct, frozen=True, array_like=True, tag="e"):
    pass


class Ack(msgspec.Struct, frozen=True, array_like=True):
    written: int  # check lines written by this child so far
    write_errors: int
    files: list[str]  # files opened since the previous ack


_encoder = msgspec.msgpack.Encoder()
_config_decoder = msgspec.msgpack.Decoder(Config)
_frame_decoder = msgspec.msgpack.Decoder(Batch | End)
_ack_decoder = msgspec.msgpack.Decoder(Ack)


class ProtocolError(Exception):
    pass


def _frame(message: msgspec.Struct) -> bytes:
    payload = _encoder.encode(message)
    return _HEADER.pack(len(payload)) + payload


def _read_exact(fd: int, n: int) -> bytes | None:
    """``n`` bytes from ``fd``; None at end of input before the first byte; ProtocolError if cut."""
    chunks: list[bytes] = []
    got = 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            if got == 0:
                return None
            raise ProtocolError(f"input ended inside a frame ({got} of {n} bytes)")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int) -> bytes | None:
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > _MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes is over the {_MAX_FRAME}-byte limit")
    body = _read_exact(fd, size)
    if body is None:
        raise ProtocolError("input ended after a frame header")
    return body


# -- worker side ----------------------------------------------------------------------------------
class _Child:
    """One writer process and the thread that reads its acknowledgements."""

    def __init__(
        self, directory: Path, key: bytes, rotate_bytes: int, on_file: Callable[[Path], None], nice: int = 0
    ) -> None:
        self.chain = secrets.token_hex(8)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        # -P: the working directory does not go first on sys.path (``-m`` would put it there), so
        # the child imports the worker's own package (_PACKAGE_ROOT: a checkout, an installed or a
        # compiled build) and never an ``app`` that happens to sit where the server was started.
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "app.security.audit_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        self._stdin: IO[bytes] = self.proc.stdin  # type: ignore[assignment]
        self._stdout: IO[bytes] = self.proc.stdout  # type: ignore[assignment]
        self._on_file = on_file
        self.sent = 0
        self.written = 0
        self.write_errors = 0
        self._out = bytearray()
        self._stdin_fd = self._stdin.fileno()  # kept: still comparable after the pipe is closed
        self.send(Config(str(directory), key, rotate_bytes, self.chain, nice))
        self._reader = threading.Thread(target=self._read_acks, name="vop-audit-acks", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, message: msgspec.Struct) -> None:
        """Write one frame (blocks, without the GIL, while the child is behind). OSError: child gone."""
        self._stdin.write(_frame(message))
        self._stdin.flush()

    # -- non-blocking writes, for shipping from the event loop ---------------------------------
    @property
    def stdin_fd(self) -> int:
        return self._stdin_fd

    @property
    def backlog(self) -> int:
        """Bytes handed to ``push`` that the pipe has not taken yet."""
        return len(self._out)

    def nonblocking(self) -> None:
        """Switch the pipe to non-blocking writes, with room for ~1 MiB of frames (Linux)."""
        self._out = bytearray()
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(self.stdin_fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        os.set_blocking(self.stdin_fd, False)

    def push(self, message: msgspec.Struct) -> bool:
        """Queue one frame and write what the pipe takes now. True: nothing is left over.
        OSError (other than a full pipe): the child is gone."""
        self._out += _frame(message)
        return self.drain()

    def drain(self) -> bool:
        out = self._out
        while out:
            try:
                n = os.write(self.stdin_fd, out)
            except BlockingIOError:
                return False
            del out[:n]
        return True

    def blocking(self) -> None:
        """Back to blocking writes (for the orderly end), writing out what ``push`` left over."""
        os.set_blocking(self.stdin_fd, True)
        out, self._out = self._out, bytearray()
        while out:
            n = os.write(self.stdin_fd, out)
            del out[:n]

    def _read_acks(self) -> None:
        fd = self._stdout.fileno()
        try:
            while (body := _read_frame(fd)) is not None:
                ack = _ack_decoder.decode(body)
                for name in ack.files:
                    self._on_file(Path(name))
                self.written, self.write_errors = ack.written, ack.write_errors
        except (OSError, ProtocolError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("audit writer process: unreadable acknowledgement (%s)", exc)

    def finish(self, timeout_s: float) -> int | None:
        """Orderly end: ``End``, close its input, wait for it. Returns its exit code (None: killed)."""
        with contextlib.suppress(OSError):
            self.send(End())
        self._close_input()
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.error("audit writer process did not finish within %.1f s; killing it", timeout_s)
            self.proc.kill()
            self.proc.wait()
            code = None
        self._reader.join(timeout_s)
        self._stdout.close()
        return code

    def reap(self) -> int | None:
        """After a failed send or an unexpected exit: make sure it is gone, read its last acks."""
        self._close_input()
        try:
            code: int | None = self.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        self._reader.join(1.0)
        self._stdout.close()
        return code

    def _close_input(self) -> None:
        with contextlib.suppress(OSError):
            self._stdin.close()


class AuditProcess(AuditQueue):
    """Same interface as ``AuditTrail`` (``record``, ``close``, ``written``, ``dropped``,
    ``write_errors``, ``pending``, ``files``), with the writing done by a child process.
    The child is started here: a worker that cannot start it does not start (OSError)."""

    WAKE_EVERY_S = 0.1

    def __init__(
        self,
        directory: str | Path,
        key: bytes | str,
        *,
        queue_size: int = 65_536,
        block_s: float = 0.005,
        rotate_bytes: int = 256 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
        restart_delay_s: float = 1.0,
        nice: int = 0,
    ) -> None:
        super().__init__(queue_size, block_s, clock)
        self._nice = nice  # the child's niceness above this process's (VOP_AUDIT_NICE)
        self.directory = Path(directory)
        self._key = key.encode() if isinstance(key, str) else key
        self._rotate_bytes = rotate_bytes
        self._restart_delay_s = restart_delay_s
        self.files: list[Path] = []
        self._written_before = 0  # by children that have ended
        self._errors_before = 0
        self._dropped_shipped = 0
        self._next_spawn = 0.0
        self._child: _Child | None = self._spawn()
        self.chain = self._child.chain
        self._loop: asyncio.AbstractEventLoop | None = None  # set by attach(): ship from the loop
        self._handover = False
        self._loop_thread = 0
        self._tick_handle: asyncio.TimerHandle | None = None
        self._writer_fd: int | None = None
        self._thread = threading.Thread(target=self._run, name="vop-audit-shipper", daemon=True)
        self._thread.start()

    # -- counters ---------------------------------------------------------------------------------
    @property
    def written(self) -> int:
        child = self._child
        return self._written_before + (child.written if child else 0)

    @property
    def write_errors(self) -> int:
        child = self._child
        return self._errors_before + (child.write_errors if child else 0)

    @property
    def pending(self) -> int:
        child = self._child
        return len(self._buffer) + (child.sent - child.written if child else 0)

    @property
    def child_pid(self) -> int | None:
        child = self._child
        return child.proc.pid if child is not None else None

    # -- shipping from the event loop -------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ship from ``loop`` (the worker's event loop; call it from inside the loop, at start-up)
        instead of the shipper thread, which ends here. Every 100 ms a loop callback frames what is
        queued and writes it to the child's pipe without blocking (the rest follows when the pipe
        has room). Why: a thread that wakes takes the GIL from the event loop; with the shipper
        thread gone a worker served more checks (bench/RESULTS.md). ``record()`` must then be
        called from the loop's thread, as the request handlers do."""
        if self._loop is not None or self._closed:
            return
        self._handover = True
        self._wake.set()
        self._thread.join()  # it ships what it took, then ends; the rest waits in the deque
        self._loop = loop
        self._loop_thread = threading.get_ident()
        if self._child is not None:
            self._child.nonblocking()
        self._tick_handle = loop.call_later(self.WAKE_EVERY_S, self._tick)

    def _tick(self) -> None:
        self._tick_handle = None
        try:
            self._ship_from_loop()
        except Exception:  # the trail must keep shipping: log, count, and try again next tick
            log.exception("audit shipping failed")
            self._errors_before += 1
        finally:
            if not self._closed and self._loop is not None:
                self._tick_handle = self._loop.call_later(self.WAKE_EVERY_S, self._tick)

    def _ship_from_loop(self) -> None:
        child = self._child
        if child is not None and child.backlog > _MAX_BACKLOG_BYTES:
            return  # the child is behind: records wait in the deque (dropped, counted, when full)
        while True:
            batch = self._take_now()
            if not batch and self.dropped == self._dropped_shipped:
                return
            self._ship(batch)
            if len(batch) < _SHIP_BATCH or (self._child is not None and self._child.backlog):
                return

    def _take_now(self) -> list[Any]:
        """Up to a frame's worth of queued records, without waiting (the loop and close ship)."""
        buffer = self._buffer
        return [buffer.popleft() for _ in range(min(len(buffer), _SHIP_BATCH))]

    def _send(self, child: _Child, message: msgspec.Struct) -> None:
        """One frame to ``child``: blocking from the shipper thread (or at close), queued and
        written as the pipe takes it when shipping from the loop. OSError: the child is gone."""
        if self._loop is None or self._closed:
            child.send(message)
            return
        if not child.push(message) and self._writer_fd is None:
            self._writer_fd = child.stdin_fd
            self._loop.add_writer(self._writer_fd, self._on_writable, child)

    def _on_writable(self, child: _Child) -> None:
        try:
            done = child.drain()
        except OSError as exc:
            done = True
            if child is self._child:
                self._retire(child, f"refused a batch ({exc})")
        if done:
            self._stop_writer()

    def _stop_writer(self) -> None:
        if self._writer_fd is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_writer(self._writer_fd)
        self._writer_fd = None

    def _wait_for_room(self, needed: int) -> None:
        """A full queue while shipping from the loop: the loop is this thread, so ship here, for up
        to ``block_s`` (the full-queue policy of ``AuditQueue``, VOP_AUDIT_BLOCK_S)."""
        if self._loop is None or self._closed or threading.get_ident() != self._loop_thread:
            super()._wait_for_room(needed)  # another thread: the loop ships meanwhile
            return
        buffer = self._buffer
        deadline = time.monotonic() + self._block_s
        while len(buffer) + needed > self._capacity:
            child = self._child
            if child is not None and child.backlog:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                select.select([], [child.stdin_fd], [], remaining)
                try:
                    child.drain()
                except OSError as exc:
                    self._retire(child, f"refused a batch ({exc})")
                continue
            before = len(buffer)
            self._ship(self._take_now())
            if len(buffer) >= before or time.monotonic() >= deadline:
                return

    def close(self, timeout_s: float = 10.0) -> None:
        """Hand over everything queued, close the chain, end the child (blocking: at shutdown)."""
        if self._loop is None:
            super().close(timeout_s)
            return
        if self._closed:
            return
        self._closed = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        self._stop_writer()
        child = self._child
        if child is not None:
            try:
                child.blocking()
            except OSError as exc:
                self._retire(child, f"refused a batch ({exc})")
        buffer = self._buffer
        while buffer or self.dropped != self._dropped_shipped:
            before = len(buffer)
            self._ship(self._take_now())
            if len(buffer) >= before:  # nothing could be shipped (no child): counted as dropped
                break
        self._finish()

    # -- shipper thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            if self._handover:
                return
            batch, stop = self._take(_SHIP_BATCH)
            if batch or self.dropped != self._dropped_shipped:
                self._ship(batch)
            if stop:
                self._finish()
                return

    def _ship(self, batch: list[Any]) -> None:
        child = self._child
        if child is not None and not child.alive:
            self._retire(child, "exited")
            child = None
        if child is None:
            child = self._respawn()
            if child is None:
                self._count_dropped(len(batch))
                return
        dropped = self.dropped - self._dropped_shipped
        try:
            self._send(child, Batch(dropped, batch))
        except OSError as exc:
            self._count_dropped(len(batch))
            self._retire(child, f"refused a batch ({exc})")
            return
        child.sent += len(batch)
        self._dropped_shipped += dropped

    def _finish(self) -> None:
        child = self._child
        if child is None:
            return
        code = child.finish(timeout_s=10.0)
        lost = child.sent - child.written
        if code != 0 or lost:
            log.error("audit writer process ended with code %s; %d records not confirmed", code, lost)
            self._count_dropped(lost)
            self._errors_before += 1

    def _spawn(self) -> _Child:
        return _Child(self.directory, self._key, self._rotate_bytes, self.files.append, self._nice)

    def _respawn(self) -> _Child | None:
        if time.monotonic() < self._next_spawn:
            return None
        try:
            child = self._spawn()
        except OSError as exc:
            log.error("audit writer process could not be started: %s", exc)
            self._errors_before += 1
            self._next_spawn = time.monotonic() + self._restart_delay_s
            return None
        self.restarts += 1
        self.chain = child.chain
        self._child = child
        if self._loop is not None and not self._closed:
            child.nonblocking()
        log.warning("audit writer process restarted: new chain %s", child.chain)
        return child

    def _retire(self, child: _Child, why: str) -> None:
        if self._writer_fd == child.stdin_fd:
            self._stop_writer()
        code = child.reap()
        lost = max(child.sent - child.written, 0)
        self._count_dropped(lost)
        self._written_before += child.written
        self._errors_before += child.write_errors + 1
        self._child = None
        self._next_spawn = time.monotonic() + self._restart_delay_s
        log.error(
            "audit writer process %s (exit code %s): chain %s left open, %d records lost; "
            "restarting in %.1f s",
            why, code, child.chain, lost, self._restart_delay_s,
        )  # fmt: skip


# -- child side -----------------------------------------------------------------------------------
def _send_ack(fd: int, writer: ChainWriter, errors: int, announced: int) -> int:
    files = [str(p) for p in writer.files[announced:]]
    with contextlib.suppress(OSError):  # the worker is gone: keep writing until end of input
        os.write(fd, _frame(Ack(writer.written, errors, files)))
    return len(writer.files)


def serve(in_fd: int, out_fd: int) -> int:
    """The child's loop: read frames from ``in_fd`` until ``End`` or end of input."""
    first = _read_frame(in_fd)
    if first is None:
        return 0
    config = _config_decoder.decode(first)
    if config.nice:
        os.nice(config.nice)  # (raising it needs no privilege; past 19 it stays at 19)
    writer = ChainWriter(config.directory, config.key, rotate_bytes=config.rotate_bytes, chain=config.chain)
    dropped = errors = announced = 0
    next_ack = 0.0
    reason = WORKER_LOST
    try:
        while True:
            ready, _, _ = select.select([in_fd], [], [], FSYNC_EVERY_S)
            if not ready:
                writer.sync()  # idle: what was flushed in the last second reaches the disk
                announced = _send_ack(out_fd, writer, errors, announced)
                continue
            body = _read_frame(in_fd)
            if body is None:
                break
            frame = _frame_decoder.decode(body)
            if isinstance(frame, End):
                reason = "shutdown"
                break
            dropped += frame.dropped
            try:
                writer.write(frame.records, dropped)
            except Exception:
                errors += 1
                log.exception("writing %d audit records failed", len(frame.records))
            now = time.monotonic()
            if now >= next_ack or len(writer.files) != announced:
                announced = _send_ack(out_fd, writer, errors, announced)
                next_ack = now + _ACK_EVERY_S
    except (ProtocolError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.error("unreadable frame from the worker: %s", exc)
        reason = "protocol-error"
    try:
        writer.close(reason)
    except Exception:
        log.exception("closing the audit chain failed")
        return 1
    _send_ack(out_fd, writer, errors, announced)
    return 0 if reason != "protocol-error" else 2


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="vop-audit-writer %(levelname)s %(message)s"
    )
    return serve(sys.stdin.fileno(), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
