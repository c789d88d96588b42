"""The open-loop generator ``bench.fixed_rate`` against a scripted loopback server: what it sends,
what it counts, and that a stalled server shows as latency of the requests scheduled behind it (no
coordinated omission). Rates are low and counts exact; the only timing asserted is the stall the
server itself sleeps, with wide margins."""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench import fixed_rate
from bench.fixed_rate import RESULT_MARKER, percentiles, read_bodies, run_fixed_rate, timeline, window_p99s


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"ok":true}'
    framing: str = "length"  # "length" | "chunked" | "close" (no length: the body runs to EOF)
    delay_s: float = 0.0
    hang: bool = False  # never answer


@dataclass
class Seen:
    head: bytes
    body: bytes

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode()
        return None


@dataclass
class ScriptedServer:
    """An HTTP/1.1 server on its own thread and loop; ``script(n)`` answers the n-th request (from 0)."""

    script: Callable[[int], Reply]
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/vop/v1/payee-verifications"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                body = await reader.readexactly(length)
                n = len(self.requests)
                self.requests.append(Seen(head, body))
                reply = self.script(n)
                if reply.hang:
                    await asyncio.sleep(3600)
                if reply.delay_s:
                    await asyncio.sleep(reply.delay_s)
                status = f"HTTP/1.1 {reply.status} X\r\nContent-Type: application/json\r\n".encode()
                if reply.framing == "chunked":
                    half = len(reply.body) // 2
                    parts = [reply.body[:half], reply.body[half:]]
                    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts if p)
                    writer.write(status + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
                elif reply.framing == "close":
                    writer.write(status + b"Connection: close\r\n\r\n" + reply.body)
                    await writer.drain()
                    writer.close()
                    return
                else:
                    writer.write(status + b"Content-Length: %d\r\n\r\n%s" % (len(reply.body), reply.body))
                await writer.drain()
        except asyncio.CancelledError:
            writer.close()
            raise

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        def stop() -> None:
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(5)


@pytest.fixture
def bodies() -> list[bytes]:
    return [b'{"n":%d}' % i for i in range(7)]


def test_percentiles_are_nearest_rank() -> None:
    got = percentiles([float(v) for v in range(100, 0, -1)])
    assert got == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 100.0, "max": 100.0, "mean": 50.5}
    assert percentiles([3.0]) == {"p50": 3.0, "p90": 3.0, "p99": 3.0, "p99_9": 3.0, "max": 3.0, "mean": 3.0}
    assert percentiles([]) == {}


def test_timeline_groups_latency_by_scheduled_window() -> None:
    offsets = [0.0, 0.05, 0.099, 0.1, 0.25, 0.26]
    latencies = [0.001, 0.003, 0.002, 0.010, 0.004, 0.006]
    got = timeline(offsets, latencies, 0.1)
    assert [(w["t_s"], w["n"]) for w in got] == [(0.0, 3), (0.1, 1), (0.2, 2)]  # the empty window is left out
    assert got[0] == {"t_s": 0.0, "n": 3, "p50": 2.0, "p99": 3.0, "max": 3.0}
    assert got[2]["p99"] == 6.0
    assert timeline([], [], 0.1) == []
    assert window_p99s(got) == (6.0, 10.0)  # p99s 3, 10, 6: the median and the worst
    assert all(math.isnan(x) for x in window_p99s([]))
    with pytest.raises(ValueError, match="window_s"):
        timeline(offsets, latencies, 0)


def test_every_scheduled_request_is_sent_once_with_fresh_headers(bodies: list[bytes]) -> None:
    with ScriptedServer(lambda n: Reply()) as server:
        res = run_fixed_rate(server.url, bodies, 200, 0.5, connections=4, warmup=0.25, drain=2, token="tok")
    assert res.scheduled == 100  # rate x duration; the 50 warm-up slots are sent but not measured
    assert (res.sent, res.completed, res.ok_2xx) == (100, 100, 100)
    assert res.errors == res.not_sent == 0
    assert res.statuses == {"200": 100}
    assert len(server.requests) == 150
    assert server.connections == 4  # keep-alive: connected once each, before the clock started
    ids = [r.header("X-Request-ID") for r in server.requests]
    assert len(set(ids)) == 150
    assert all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i or "")
        for i in ids
    )
    for seen in server.requests:
        assert seen.head.startswith(b"POST /vop/v1/payee-verifications HTTP/1.1\r\n")
        assert seen.header("Authorization") == "Bearer tok"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", seen.header("X-Request-Timestamp") or "")
    # slot i carries body i mod 7; connections take slots in turn, so compare as multisets
    assert sorted(r.body for r in server.requests) == sorted(bodies[i % 7] for i in range(150))
    assert res.latency_ms["p50"] > 0
    assert len(res.send_lag_ms) == len(res.timer_lag_ms) == 6


def test_without_a_token_no_authorization_is_sent(bodies: list[bytes]) -> None:
    with ScriptedServer(lambda n: Reply()) as server:
        res = run_fixed_rate(server.url, bodies, 100, 0.1, connections=1, warmup=0, drain=2)
    assert res.completed == 10
    assert all(r.header("Authorization") is None for r in server.requests)


def test_a_stalled_server_shows_as_latency_of_the_requests_behind_it(bodies: list[bytes]) -> None:
    """One connection, 100 req/s, request 10 held 0.4 s: the ~40 slots scheduled meanwhile wait, and
    their latency counts from their scheduled time, not from when they finally went out."""
    with ScriptedServer(lambda n: Reply(delay_s=0.4 if n == 10 else 0.0)) as server:
        res = run_fixed_rate(server.url, bodies, 100, 1.0, connections=1, warmup=0, drain=3)
    assert res.completed == 100
    assert res.errors == 0
    assert res.latency_ms["max"] >= 380
    assert res.latency_ms["p90"] >= 100  # many requests, not just the stalled one
    assert res.send_lag_ms["p90"] >= 100  # they were sent late: the connection was busy
    # a generator measuring from the actual send would see ~0.4 s once and near zero elsewhere
    assert res.latency_ms["p50"] < res.latency_ms["max"]
    # the timeline puts the stall where it was due: the window of slots 10-19 (0.1-0.2 s)
    windows = {round(w["t_s"], 3): w for w in res.timeline}
    assert sum(w["n"] for w in res.timeline) == 100
    assert windows[0.1]["max"] >= 380
    assert windows[0.0]["max"] < windows[0.1]["max"]
    assert windows[0.9]["p99"] < 100  # caught up long before the end
    median, worst = window_p99s(res.timeline)
    assert worst == max(w["p99"] for w in res.timeline)
    assert median < worst


def test_statuses_samples_and_framings_are_counted(bodies: list[bytes]) -> None:
    def script(n: int) -> Reply:
        if n % 4 == 1:
            return Reply(status=503, body=b'{"code":"OVERLOADED"}' + b"x" * 1000)
        if n % 4 == 2:
            return Reply(framing="chunked")
        if n % 4 == 3:
            return Reply(framing="close")
        return Reply()

    with ScriptedServer(script) as server:
        res = run_fixed_rate(server.url, bodies, 100, 0.4, connections=2, warmup=0, drain=3)
    assert res.completed == 40
    assert res.socket_errors == res.timeouts == 0
    assert res.statuses == {"200": 30, "503": 10}
    assert (res.ok_2xx, res.non_2xx) == (30, 10)
    assert res.samples["503"].startswith('{"code":"OVERLOADED"}')
    assert len(res.samples["503"]) == fixed_rate.MAX_SAMPLE_BYTES
    assert server.connections >= 2 + 10 - 1  # each "Connection: close" answer made it reconnect


def test_warm_up_errors_count_but_warm_up_latency_does_not(bodies: list[bytes]) -> None:
    with ScriptedServer(lambda n: Reply(status=500) if n == 0 else Reply()) as server:
        res = run_fixed_rate(server.url, bodies, 100, 0.2, connections=1, warmup=0.1, drain=2)
    assert res.scheduled == res.completed == 20
    assert res.statuses == {"200": 20}  # the 500 came in the warm-up
    assert res.non_2xx == 1
    assert res.errors == 1


def test_answers_that_never_come_are_timeouts_within_the_drain(bodies: list[bytes]) -> None:
    with ScriptedServer(lambda n: Reply(hang=n >= 5)) as server:
        res = run_fixed_rate(server.url, bodies, 100, 0.2, connections=3, warmup=0, drain=0.3)
    assert res.completed == 5
    assert res.timeouts == 3  # one stuck request per connection
    assert res.not_sent == 20 - res.sent
    assert res.sent == 8
    assert res.errors == 3


def test_a_refused_connection_is_a_socket_error(bodies: list[bytes]) -> None:
    with ScriptedServer(lambda n: Reply()) as server:
        url = server.url
    res = run_fixed_rate(url, bodies, 50, 0.1, connections=1, warmup=0, drain=0.5)
    assert res.completed == 0
    assert res.socket_errors >= 1
    assert any(k.startswith("connect: ") for k in res.error_kinds)


def test_bad_arguments_are_refused(bodies: list[bytes], tmp_path: Path) -> None:
    for rate, duration, conns, warmup in ((0, 1, 1, 0), (10, 0, 1, 0), (10, 1, 0, 0), (10, 1, 1, -1)):
        with pytest.raises(ValueError, match="must be positive"):
            run_fixed_rate("http://127.0.0.1:1/", bodies, rate, duration, connections=conns, warmup=warmup)
    with pytest.raises(ValueError, match="http:// URL"):
        run_fixed_rate("https://127.0.0.1:1/", bodies, 10, 1)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="no lines"):
        read_bodies(empty)


def test_the_cli_prints_one_result_line_and_exits_cleanly(
    bodies: list[bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(b"\n".join(bodies) + b"\n")
    with ScriptedServer(lambda n: Reply()) as server:
        args = (
            f"--url {server.url} --requests {requests} --rate 100 --duration 0.1 --warmup 0 --connections 1"
        )
        code = fixed_rate.main(args.split())
    out, err = capsys.readouterr()
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith(RESULT_MARKER)]
    assert len(lines) == 1
    data = json.loads(lines[0][len(RESULT_MARKER) :])
    assert (data["completed"], data["errors"], data["target_rate"]) == (10, 0, 100.0)
    assert "achieved 1" in err
    assert "p99 per 100 ms window: median" in err
    assert sum(w["n"] for w in data["timeline"]) == 10
    assert "p99" in err


def test_the_cli_refuses_remote_targets_and_reports_bad_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        fixed_rate.main(["--url", "http://10.1.2.3:80/", "--requests", "x", "--rate", "1"])
    assert exc.value.code == 2
    assert "loopback" in capsys.readouterr().err
    missing = tmp_path / "missing.jsonl"
    assert fixed_rate.main(["--url", "http://127.0.0.1:1/", "--requests", str(missing), "--rate", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fixed_rate: error: ")
    assert "\n" not in err
