"""The locust suite's SLO gate (bench/locustfile.py), run headless against real servers:

(a) ``vop serve`` on a small snapshot: every answer right, the gate passes (exit 0);
(b) a granian app that always answers MTCH: wrong answers are reported, the gate fails;
(c) a granian app that answers after 150 ms: p99 over ``--slo-p99-ms 100``, the gate fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.datagen import generate_accounts
from bench.netutil import free_port, http_status
from matching.sources.parquet import write_snapshot

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "bench" / "locustfile.py"

# A tiny ASGI app: answers MTCH to everything, echoing X-Request-ID; VOP_TEST_DELAY_S delays it.
FAKE_APP = """
import asyncio
import os

DELAY = float(os.environ.get("VOP_TEST_DELAY_S", "0"))
BODY = b'{"partyNameMatch":"MTCH"}'


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            break
    if DELAY:
        await asyncio.sleep(DELAY)
    headers = [(b"content-type", b"application/json")]
    headers += [(k, v) for k, v in scope["headers"] if k == b"x-request-id"]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})
"""


def _start(cmd: list[str], ready_url: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while http_status(ready_url) not in (200, 405):
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"server exited early: {out[-2000:]}")
        if time.monotonic() > deadline:
            _stop(proc)
            raise AssertionError("server did not become ready")
        time.sleep(0.1)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass
    if proc.stdout:
        proc.stdout.close()


@pytest.fixture
def fake_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A granian-served FAKE_APP; ``request.param`` is the delay in seconds."""
    (tmp_path / "fake_vop.py").write_text(FAKE_APP, encoding="utf-8")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "VOP_TEST_DELAY_S": str(request.param)}
    cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", "1", "--log-level", "warning", "fake_vop:app"]
    proc = _start(cmd, f"http://127.0.0.1:{port}/", env, tmp_path)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


def run_locust(host: str, tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    summary = tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary"]
    cmd += ["-u", "4", "-r", "4", "-t", "5s", "--host", host, "--probes", "2000"]
    cmd += ["--summary-json", str(summary), "--stop-timeout", "2", *extra]
    done = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert summary.is_file(), output[-3000:]
    return done.returncode, json.loads(summary.read_text(encoding="utf-8")), output


@pytest.mark.slow
def test_gate_passes_against_vop_serve(tmp_path: Path) -> None:
    snapshot = tmp_path / "snapshot.parquet"
    write_snapshot(generate_accounts(5000), snapshot)
    port = free_port()
    # Auth off (loopback only) and no per-client rate limit: the gate, not the auth layer, is tested.
    env = {**os.environ, "VOP_LOG_LEVEL": "warning", "VOP_AUTH": "off", "VOP_RATE_LIMIT_RPS": "0"}
    env["VOP_DATA_DIR"] = str(tmp_path / "var")
    cmd = [sys.executable, "-m", "app.cli", "serve", "--index", str(snapshot), "--port", str(port)]
    server = _start(cmd, f"http://127.0.0.1:{port}/readyz", env, ROOT)
    try:
        mix = "exact=50,close=20,no_match=15,unknown_iban=5,inactive=3,invalid=7"
        code, summary, output = run_locust(
            f"http://127.0.0.1:{port}", tmp_path, "--snapshot", str(snapshot), "--mix", mix
        )
    finally:
        _stop(server)
    assert code == 0, output[-3000:]
    assert summary["passed"], summary["reasons"]
    assert summary["requests"] > 100
    assert summary["wrong_answers"] == {}
    assert summary["failures"] == 0
    names = set(summary["per_name"])
    assert {"verify exact", "verify close", "verify no_match", "verify invalid"} <= names
    assert "verdict: PASS" in output


@pytest.mark.slow
@pytest.mark.parametrize("fake_server", [0], indirect=True)
def test_gate_fails_on_wrong_answers(fake_server: str, tmp_path: Path) -> None:
    code, summary, output = run_locust(fake_server, tmp_path, "--accounts", "5000")
    assert code == 1, output[-3000:]
    assert not summary["passed"]
    assert any("wrong answer" in r for r in summary["reasons"])
    wrong = summary["wrong_answers"]
    assert wrong.get("close", 0) > 0
    assert wrong.get("no_match", 0) > 0
    assert "exact" not in wrong  # MTCH is the right answer there
    assert "expected partyNameMatch='CMTC'" in summary["wrong_samples"]["close"][0]
    assert "verdict: FAIL" in output


@pytest.mark.slow
@pytest.mark.parametrize("fake_server", [0.15], indirect=True)
def test_gate_fails_on_slow_p99(fake_server: str, tmp_path: Path) -> None:
    # Every probe is an exact match, which the fake answers right: only latency can fail the gate.
    code, summary, output = run_locust(
        fake_server, tmp_path, "--accounts", "5000", "--mix", "exact=100", "--slo-p99-ms", "100"
    )
    assert code == 1, output[-3000:]
    assert summary["wrong_answers"] == {}
    assert summary["failures"] == 0
    assert summary["latency_ms"]["p99"] >= 150
    assert [r for r in summary["reasons"] if r.startswith("p99")], summary["reasons"]
    assert len(summary["reasons"]) == 1
