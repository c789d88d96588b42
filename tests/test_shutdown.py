"""Readiness transitions, the drain controller, and a rolling-restart drill on the real server:
SIGTERM under keep-alive load → /readyz 503 while still serving → in-flight requests finish →
exit 0, with zero failed requests."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pytest

from app.observability.readiness import Readiness
from app.observability.runtime import DRAIN_MARKER, cleanup_runtime_dir, prepare_runtime_dir
from app.observability.shutdown import DrainController, drain_seconds_from_env
from bench.netutil import free_port, http_status
from matching.sources.parquet import write_snapshot
from tests.conftest import IBAN_PERSON, accounts_table, now_rfc3339

ROOT = Path(__file__).resolve().parent.parent
ROUTE = "/vop/v1/payee-verifications"


class FakeIndex:
    version = 7
    built_at = 1_700_000_000.0
    build_seconds = 0.1

    def __len__(self) -> int:
        return 5


# ---- readiness ------------------------------------------------------------------------------
def test_readiness_transitions(tmp_path: Path) -> None:
    current: list[FakeIndex | None] = [None]
    error: list[str | None] = [None]
    staleness: list[float | None] = [None]
    marker = tmp_path / DRAIN_MARKER
    r = Readiness(
        lambda: current[0], error=lambda: error[0], staleness=lambda: staleness[0],
        stale_after_s=30, unready_after_s=600, marker=marker,
    )  # fmt: skip
    assert (r.check().status, r.check().http_status) == ("loading", 503)
    error[0] = "IndexBuildError: bad"
    assert r.check().status == "failed"
    error[0] = None
    current[0] = FakeIndex()
    report = r.check()
    assert report.ready
    assert report.body() == {
        "status": "ready", "indexVersion": 7, "accounts": 5, "builtAt": 1_700_000_000.0,
        "stale": False, "draining": False,
    }  # fmt: skip
    staleness[0] = 31.0
    report = r.check()
    assert report.ready
    assert report.stale
    assert report.body()["stale"] is True
    staleness[0] = 601.0
    assert (r.check().status, r.check().http_status) == ("stale", 503)
    staleness[0] = 1.0
    assert r.is_ready()
    marker.write_text("1")  # the parent's SIGTERM marker reaches every worker
    report = r.check()
    assert (report.status, report.http_status, report.draining) == ("draining", 503, True)
    assert report.headers() == {"Retry-After": "1"}
    marker.unlink()
    assert r.draining  # sticky


def test_readiness_mark_draining_without_marker() -> None:
    r = Readiness(FakeIndex, use_env_marker=False)
    assert r.is_ready()
    r.mark_draining()
    assert not r.is_ready()
    with pytest.raises(ValueError, match="unready_after_s"):
        Readiness(lambda: None, stale_after_s=60, unready_after_s=10)


# ---- runtime folder and drain controller ----------------------------------------------------
def test_prepare_runtime_dir_cleans_and_exports(tmp_path: Path) -> None:
    env = {"VOP_RUNTIME_DIR": str(tmp_path / "rt")}
    root = prepare_runtime_dir(env)
    (root / "metrics" / "counter_123.db").write_bytes(b"x")
    (root / DRAIN_MARKER).write_text("1")
    assert prepare_runtime_dir(env) == root
    assert not list((root / "metrics").iterdir())
    assert not (root / DRAIN_MARKER).exists()
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(root / "metrics")
    fresh: dict[str, str] = {}
    tmp = prepare_runtime_dir(fresh)
    assert tmp.is_dir()
    cleanup_runtime_dir(tmp)
    assert not tmp.exists()


def test_drain_controller_marks_then_stops_after_window(tmp_path: Path) -> None:
    stopped = threading.Event()
    slept: list[float] = []
    gate = threading.Event()

    def sleep(s: float) -> None:
        slept.append(s)
        gate.wait(5)

    dc = DrainController(tmp_path, 3.0, stop=stopped.set, sleep=sleep)
    dc._on_signal(signal.SIGTERM, None)
    assert dc.draining
    assert (tmp_path / DRAIN_MARKER).exists()
    assert not stopped.is_set()  # still serving during the window
    gate.set()
    dc.join(5)
    assert stopped.is_set()
    assert slept == [3.0]


def test_second_sigterm_stops_at_once(tmp_path: Path) -> None:
    calls: list[int] = []
    dc = DrainController(tmp_path, 60.0, stop=lambda: calls.append(1), sleep=lambda s: time.sleep(0.2))
    dc._on_signal(signal.SIGTERM, None)
    dc._on_signal(signal.SIGTERM, None)
    assert calls == [1]
    dc.join(5)
    assert calls == [1]  # the window's end does not stop twice


def test_drain_seconds_from_env() -> None:
    assert drain_seconds_from_env({}) == 5.0
    assert drain_seconds_from_env({"VOP_DRAIN_SECONDS": "0.5"}) == 0.5
    with pytest.raises(ValueError, match="VOP_DRAIN_SECONDS"):
        drain_seconds_from_env({"VOP_DRAIN_SECONDS": "-1"})


# ---- the real server ------------------------------------------------------------------------

PAYLOAD = json.dumps(
    {
        "party": {"name": "Max Mustermann"},
        "partyAccount": {"iban": IBAN_PERSON},
        "partyAgent": {"financialInstitutionId": {"bicfi": "VOPBDEFFXXX"}},
        "requestingAgent": {"financialInstitutionId": {"bicfi": "REQBDEFFXXX"}},
    }
).encode()


def request_headers() -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Request-ID": str(uuid.uuid4()),
        "X-Request-Timestamp": now_rfc3339(),
    }


class ServerProcess:
    """``python -m app.cli serve`` on a free port with a snapshot of ``table``."""

    def __init__(self, tmp: Path, table: pa.Table, workers: int = 2, drain_seconds: float = 2.0) -> None:
        self.tmp = tmp
        self.snapshot = tmp / "snap.parquet"
        write_snapshot(table, self.snapshot)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.runtime = tmp / "runtime"
        self.env = {
            **os.environ,
            "VOP_LOG_LEVEL": "info",  # __enter__ waits for every worker's "index … ready" line
            "VOP_DRAIN_SECONDS": str(drain_seconds),
            "VOP_RUNTIME_DIR": str(self.runtime),
            # Auth is covered elsewhere (test_api_security, test_serve); the load here is one
            # anonymous client on loopback, so no rate limit or enumeration cap. Audit stays on.
            "VOP_AUTH": "off",
            "VOP_RATE_LIMIT_RPS": "0",
            "VOP_ENUM_MAX_NAMES": "1000000",
            "VOP_DATA_DIR": str(tmp),
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.workers = workers
        self.log = tmp / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def multiproc_dir(self) -> Path:
        return self.runtime / "metrics"

    def __enter__(self) -> ServerProcess:
        cmd = [sys.executable, "-m", "app.cli", "serve", "--index", str(self.snapshot),
               "--port", str(self.port), "--workers", str(self.workers)]  # fmt: skip
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 60
        # /readyz reaches one worker only; each worker logs when its own index is ready.
        while (
            http_status(self.base + "/readyz") != 200 or self.log.read_text().count("ready:") < self.workers
        ):
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.mark.slow
def test_sigterm_under_keepalive_load_fails_no_request(tmp_path: Path) -> None:
    drain = 3.0
    with ServerProcess(tmp_path, accounts_table(), workers=2, drain_seconds=drain) as server:
        assert server.proc is not None
        routing = threading.Event()  # the "load balancer" routes to this backend while set
        routing.set()
        results: list[int] = []
        errors: list[str] = []
        lock = threading.Lock()

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            try:
                while routing.is_set():
                    try:
                        conn.request("POST", ROUTE, body=PAYLOAD, headers=request_headers())
                        resp = conn.getresponse()
                        resp.read()
                        with lock:
                            results.append(resp.status)
                    except ConnectionRefusedError:
                        return  # never got a connection: allowed
                    except (OSError, http.client.HTTPException) as exc:
                        with lock:
                            errors.append(f"{type(exc).__name__}: {exc}")
                        return
            finally:
                conn.close()

        flipped: dict[str, float] = {}

        def monitor() -> None:  # the load balancer's readiness probe, every 50 ms
            while routing.is_set():
                if http_status(server.base + "/readyz") != 200:
                    flipped["at"] = time.monotonic()
                    routing.clear()
                    return
                time.sleep(0.05)

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        probe = threading.Thread(target=monitor)
        probe.start()
        time.sleep(1.0)
        before = len(results)
        assert before > 10, f"load did not run: {results[:5]} {errors[:3]}"

        sigterm_at = time.monotonic()
        os.kill(server.proc.pid, signal.SIGTERM)  # Kubernetes signals PID 1, granian's main process
        probe.join(10)
        for t in threads:
            t.join(10)
        assert "at" in flipped, "readiness never turned 503"
        assert flipped["at"] - sigterm_at < drain, "readiness must turn 503 before the workers stop"
        # still serving while draining: a fresh request well inside the window is answered
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("POST", ROUTE, body=PAYLOAD, headers=request_headers())
        assert conn.getresponse().status == 200
        conn.close()
        # an in-flight request across the moment the workers get SIGTERM (drain window end):
        # headers and part of the body before it, the rest after it (inside the 1 s body deadline)
        time.sleep(max(0.0, sigterm_at + drain - 0.3 - time.monotonic()))
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        head = "".join(f"{k}: {v}\r\n" for k, v in request_headers().items())
        slow.sendall(
            f"POST {ROUTE} HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(PAYLOAD)}\r\n\r\n".encode()
            + PAYLOAD[:20]
        )
        time.sleep(max(0.0, sigterm_at + drain + 0.3 - time.monotonic()))  # workers now stopping
        slow.sendall(PAYLOAD[20:])
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = slow.recv(4096)
            if not chunk:
                break
            reply += chunk
        slow.close()
        code = server.proc.wait(20)
        exited_after = time.monotonic() - sigterm_at

    assert errors == [], errors[:5]
    assert results
    assert set(results) == {200}, {s: results.count(s) for s in set(results)}
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert code == 0, server.log.read_text()[-2000:]
    assert drain <= exited_after < drain + 15
    assert not (server.runtime / DRAIN_MARKER).exists()
