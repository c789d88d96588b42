"""Open-loop, fixed-rate HTTP/1.1 load generator (what wrk2 does; Debian ships no wrk2).

``python -m bench.fixed_rate --url http://127.0.0.1:8080/vop/v1/payee-verifications
--requests FILE --rate 15000 --duration 10``

Request *i* is scheduled at ``t0 + i / rate`` whatever happened to earlier requests. A pool of
keep-alive connections (raw asyncio streams, one request in flight per connection, no pipelining)
takes the next scheduled slot whenever a connection is free. Latency is measured from the
*scheduled* send time, so a server (or generator) that falls behind shows up as latency instead
of silently lowering the offered rate (no coordinated omission). Only when a slot is sent a little
*early* (the event loop's timers have millisecond resolution) is latency measured from the actual
send, so it is never under-reported. ``send_lag_ms`` is how far behind schedule requests went
out; most of it is normally waiting for a free connection (all of them busy on a slow server).
``timer_lag_ms`` is the part where a connection was free but the generator's own timers or event
loop were late: if that is large, the generator (which shares the CPUs with the server on a small
machine) was the bottleneck, not the server.

The first ``--warmup`` seconds (default 1) run at the same rate but are not measured, so
connection and interpreter warm-up do not show as latency; errors in them are still counted.
The file holds one JSON body per line (as for ``bench/wrk/mix.lua``); every request gets a fresh
``X-Request-ID`` (UUID) and an ``X-Request-Timestamp`` (current second, UTC), and, with ``--token``
(default: the ``VOP_BENCH_TOKEN`` variable), ``Authorization: Bearer <token>``. The run is bounded:
after the schedule ends, in-flight requests get ``--drain`` seconds, then count as timeouts.
The result is printed as one line ``FIXED_RATE_RESULT {json}`` (and as a readable summary unless
``--quiet``). Its ``timeline`` gives n, p50, p99 and max latency per ``--window`` seconds of
scheduled time, so a tail spread through the run can be told from a few stalls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

try:
    import uvloop
except ImportError:  # the plain asyncio loop works too, only slower
    uvloop = None  # type: ignore[assignment]

RESULT_MARKER = "FIXED_RATE_RESULT "
# Send a slot this much before its scheduled time rather than sleep for less than a timer tick.
EARLY_TOLERANCE_S = 0.0005
MAX_SAMPLE_BYTES = 400


@dataclass
class FixedRateResult:
    url: str
    target_rate: float
    duration_s: float
    warmup_s: float
    connections: int
    scheduled: int
    sent: int = 0
    completed: int = 0
    ok_2xx: int = 0
    non_2xx: int = 0
    socket_errors: int = 0
    timeouts: int = 0
    not_sent: int = 0
    achieved_rate: float = 0.0
    elapsed_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    send_lag_ms: dict[str, float] = field(default_factory=dict)
    timer_lag_ms: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    samples: dict[str, str] = field(default_factory=dict)
    error_kinds: dict[str, int] = field(default_factory=dict)
    generator_cpu_cores: float = 0.0
    event_loop: str = "asyncio"
    window_s: float = 0.1
    #: per window of scheduled time (from the first measured slot): n, p50, p99 and max latency (ms)
    timeline: list[dict[str, float]] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors + self.timeouts


def percentiles(values: list[float], points: Sequence[float] = (50, 90, 99, 99.9)) -> dict[str, float]:
    """Nearest-rank percentiles (and max) of ``values``; empty input gives an empty dict."""
    if not values:
        return {}
    ordered = sorted(values)
    out: dict[str, float] = {}
    for p in points:
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        out[f"p{p:g}".replace(".", "_")] = ordered[rank - 1]
    out["max"] = ordered[-1]
    out["mean"] = sum(ordered) / len(ordered)
    return out


def timeline(offsets: Sequence[float], latencies: Sequence[float], window_s: float) -> list[dict[str, float]]:
    """Latency (ms) per window of *scheduled* time: ``offsets[i]`` is when request i was due
    (seconds after the first measured slot), ``latencies[i]`` its latency (s). A tail that comes in
    bursts shows as a few windows far above the rest; a server that cannot keep up, as every window
    rising. Windows with no request are left out."""
    if window_s <= 0:
        raise ValueError("window_s must be positive")
    by_window: dict[int, list[float]] = {}
    for offset, latency in zip(offsets, latencies, strict=True):
        by_window.setdefault(int(offset // window_s), []).append(latency * 1000)
    out: list[dict[str, float]] = []
    for w in sorted(by_window):
        p = percentiles(by_window[w], (50, 99))
        out.append(
            {
                "t_s": round(w * window_s, 6),
                "n": len(by_window[w]),
                "p50": p["p50"],
                "p99": p["p99"],
                "max": p["max"],
            }
        )
    return out


def read_bodies(path: Path) -> list[bytes]:
    bodies = [line for line in path.read_bytes().splitlines() if line.strip()]
    if not bodies:
        raise ValueError(f"request file {path} has no lines")
    return bodies


class _Clock:
    """The ``X-Request-Timestamp`` value, formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def header(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)).encode()
        return self._value


def _request_id() -> bytes:
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}".encode()


class _Response:
    __slots__ = ("body", "close", "status")

    def __init__(self, status: int, body: bytes, close: bool) -> None:
        self.status = status
        self.body = body
        self.close = close


async def _read_response(reader: asyncio.StreamReader) -> _Response:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    close = b"\r\nconnection: close" in lower
    pos = lower.find(b"\r\ncontent-length:")
    if pos >= 0:
        end = lower.index(b"\r\n", pos + 2)
        length = int(lower[pos + 17 : end])
        body = await reader.readexactly(length) if length else b""
        return _Response(status, body, close)
    if b"\r\ntransfer-encoding: chunked" in lower:
        chunks: list[bytes] = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected: the final CRLF
                return _Response(status, b"".join(chunks), close)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    # Neither length nor chunked: the body runs to the end of the connection.
    return _Response(status, await reader.read(), True)


class _Run:
    def __init__(
        self,
        url: str,
        bodies: list[bytes],
        rate: float,
        *,
        duration: float,
        connections: int,
        warmup: float,
        token: str | None = None,
        window: float = 0.1,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"need an http:// URL, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.prefixes = [
            (
                f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
                f"{auth}Content-Length: {len(body)}\r\nX-Request-ID: "
            ).encode()
            for body in bodies
        ]
        self.bodies = bodies
        self.interval = 1.0 / rate
        self.first_measured = int(rate * warmup)  # slots before this one warm up, unmeasured
        self.total = self.first_measured + max(1, int(rate * duration))
        self.clock = _Clock()
        self.next_slot = 0
        self.t0 = 0.0
        self.result = FixedRateResult(
            url=url,
            target_rate=rate,
            duration_s=duration,
            warmup_s=warmup,
            connections=connections,
            scheduled=self.total - self.first_measured,
            window_s=window,
        )
        self.latencies: list[float] = []
        self.offsets: list[float] = []  # each measured request's scheduled time after the first measured slot
        self.lags: list[float] = []
        self.timer_lags: list[float] = []
        self.in_flight = 0
        self.last_done = 0.0

    def _count_error(self, kind: str) -> None:
        self.result.error_kinds[kind] = self.result.error_kinds.get(kind, 0) + 1

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port)

    async def worker(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        res = self.result
        perf = time.perf_counter
        n_bodies = len(self.bodies)
        try:
            while True:
                slot = self.next_slot
                if slot >= self.total:
                    return
                self.next_slot = slot + 1
                scheduled = self.t0 + slot * self.interval
                claimed_at = perf()
                delay = scheduled - claimed_at
                if delay > EARLY_TOLERANCE_S:
                    await asyncio.sleep(delay)
                if conn is None:
                    try:
                        conn = await self._connect()
                    except OSError as exc:
                        res.socket_errors += 1
                        self._count_error(f"connect: {type(exc).__name__}")
                        continue
                reader, writer = conn
                k = slot % n_bodies
                sent_at = perf()
                writer.write(
                    self.prefixes[k]
                    + _request_id()
                    + b"\r\nX-Request-Timestamp: "
                    + self.clock.header()
                    + b"\r\n\r\n"
                    + self.bodies[k]
                )
                measured = slot >= self.first_measured
                if measured:
                    res.sent += 1
                    self.lags.append(max(0.0, sent_at - scheduled))
                    # late with a free connection: the generator's own timers/event loop were late
                    self.timer_lags.append(max(0.0, sent_at - max(scheduled, claimed_at)))
                self.in_flight += 1
                try:
                    response = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                    self.in_flight -= 1
                    res.socket_errors += 1  # warm-up errors count too: they are server errors
                    self._count_error(f"read: {type(exc).__name__}")
                    writer.close()
                    conn = None
                    continue
                done_at = perf()
                self.in_flight -= 1
                key = str(response.status)
                if measured:
                    self.last_done = done_at
                    res.completed += 1
                    self.latencies.append(done_at - min(scheduled, sent_at))
                    self.offsets.append((slot - self.first_measured) * self.interval)
                    res.statuses[key] = res.statuses.get(key, 0) + 1
                if 200 <= response.status < 300:
                    if measured:
                        res.ok_2xx += 1
                else:  # non-2xx answers count even during warm-up: they are server bugs
                    res.non_2xx += 1
                    if key not in res.samples:
                        res.samples[key] = response.body[:MAX_SAMPLE_BYTES].decode("utf-8", "replace")
                if response.close:
                    writer.close()
                    conn = None
        finally:
            if conn is not None:
                conn[1].close()

    async def run(self, drain: float) -> FixedRateResult:
        res = self.result
        if uvloop is not None and isinstance(asyncio.get_running_loop(), uvloop.Loop):
            res.event_loop = "uvloop"
        conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = []
        for _ in range(res.connections):  # connect before the clock starts
            try:
                conns.append(await asyncio.wait_for(self._connect(), timeout=5))
            except (OSError, TimeoutError) as exc:
                res.socket_errors += 1
                self._count_error(f"connect: {type(exc).__name__}")
                conns.append(None)
        cpu0 = time.process_time()
        self.t0 = time.perf_counter() + 0.05
        t_measure = self.t0 + self.first_measured * self.interval
        tasks = [asyncio.ensure_future(self.worker(c)) for c in conns]
        deadline = self.t0 + res.warmup_s + res.duration_s + drain
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.perf_counter()))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                self._count_error(f"worker: {type(task.exception()).__name__}")
        wall = time.perf_counter() - self.t0
        res.timeouts += self.in_flight
        res.not_sent = max(0, res.scheduled - res.sent)
        res.generator_cpu_cores = (time.process_time() - cpu0) / wall if wall > 0 else 0.0
        res.elapsed_s = (self.last_done - t_measure) if self.last_done else wall - res.warmup_s
        res.achieved_rate = res.completed / res.elapsed_s if res.elapsed_s > 0 else 0.0
        res.latency_ms = {k: v * 1000 for k, v in percentiles(self.latencies).items()}
        res.send_lag_ms = {k: v * 1000 for k, v in percentiles(self.lags).items()}
        res.timer_lag_ms = {k: v * 1000 for k, v in percentiles(self.timer_lags).items()}
        res.timeline = timeline(self.offsets, self.latencies, res.window_s)
        return res


def run_fixed_rate(
    url: str,
    bodies: list[bytes],
    rate: float,
    duration: float,
    *,
    connections: int = 64,
    warmup: float = 1.0,
    drain: float = 5.0,
    token: str | None = None,
    window: float = 0.1,
) -> FixedRateResult:
    """Offer ``rate`` requests/s for ``warmup + duration`` seconds and measure the last ``duration``;
    bounded by ``warmup + duration + drain`` (+ connecting)."""
    if rate <= 0 or duration <= 0 or connections < 1 or warmup < 0 or window <= 0:
        raise ValueError("rate, duration, connections and window must be positive, warmup not negative")
    runner = _Run(
        url,
        bodies,
        rate,
        duration=duration,
        connections=connections,
        warmup=warmup,
        token=token,
        window=window,
    )
    if uvloop is None:
        return asyncio.run(runner.run(drain))
    return uvloop.run(runner.run(drain))


def summary(res: FixedRateResult) -> str:
    lat, lag = res.latency_ms, res.send_lag_ms
    return (
        f"offered {res.target_rate:,.0f} req/s for {res.duration_s:g} s (after {res.warmup_s:g} s "
        f"warm-up) over {res.connections} connections ({res.event_loop}): "
        f"achieved {res.achieved_rate:,.0f} req/s, {res.completed:,} done; "
        f"latency p50 {lat.get('p50', math.nan):.2f} ms, p99 {lat.get('p99', math.nan):.2f} ms, "
        f"p99.9 {lat.get('p99_9', math.nan):.2f} ms; non-2xx {res.non_2xx}, socket errors "
        f"{res.socket_errors}, timeouts {res.timeouts}, not sent {res.not_sent}; send lag p99 "
        f"{lag.get('p99', math.nan):.2f} ms (generator's own p99 {res.timer_lag_ms.get('p99', math.nan):.2f} "
        f"ms), generator CPU {res.generator_cpu_cores:.2f} cores{_timeline_note(res)}"
    )


def window_p99s(windows: Sequence[Mapping[str, float]]) -> tuple[float, float]:
    """(median, worst) of the p99 latency of ``timeline`` windows, ms; NaN without windows."""
    p99s = sorted(w["p99"] for w in windows)
    if not p99s:
        return math.nan, math.nan
    return p99s[(len(p99s) - 1) // 2], p99s[-1]


def _timeline_note(res: FixedRateResult) -> str:
    median, worst = window_p99s(res.timeline)
    if math.isnan(median):
        return ""
    return f"; p99 per {res.window_s * 1000:g} ms window: median {median:.2f} ms, worst {worst:.2f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fixed_rate",
        description="Open-loop fixed-rate load (latency from the scheduled send time).",
    )
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT/path to POST to")
    parser.add_argument("--requests", required=True, type=Path, help="file with one JSON body per line")
    parser.add_argument("--rate", required=True, type=float, help="offered requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load (default 10)")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections (default 64)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds of load at the same rate before measuring (default 1)",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=5.0,
        help="seconds allowed after the schedule for in-flight answers (default 5)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("VOP_BENCH_TOKEN") or None,
        help="bearer token sent as Authorization on every request (default: $VOP_BENCH_TOKEN)",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=0.1,
        help="seconds of scheduled time per timeline window (default 0.1)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the result line")
    args = parser.parse_args(argv)
    host = urlsplit(args.url).hostname or ""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        parser.error("load only loopback addresses (127.0.0.1)")
    try:
        res = run_fixed_rate(
            args.url,
            read_bodies(args.requests),
            args.rate,
            args.duration,
            connections=args.connections,
            warmup=args.warmup,
            drain=args.drain,
            token=args.token,
            window=args.window,
        )
    except (OSError, ValueError) as exc:
        print(f"fixed_rate: error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(summary(res), file=sys.stderr)
    data: dict[str, Any] = asdict(res)
    data["errors"] = res.errors
    print(RESULT_MARKER + json.dumps(data, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
