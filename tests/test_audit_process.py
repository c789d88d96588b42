"""The audit writer as a child process: what happens when the child dies, when the worker dies, when a
signal reaches the child; the key never on a command line or in the environment; bad frames."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from app.security.audit import WORKER_LOST, verify_audit_files
from app.security.audit_process import _HEADER, AuditProcess, Batch, Config, End, serve

KEY = "an-audit-key-for-tests-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[1]


def record(trail: AuditProcess, i: int) -> None:
    trail.record(
        request_id=f"rid-{i}",
        client_id="psp-client-1",
        iban="DE89370400440532013000",
        name="Max Mustermann",
        code="MTCH",
        reason="exact",
        index_version=3,
        forced=False,
    )


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_child_killed_is_restarted_and_the_loss_is_chained(tmp_path: Path) -> None:
    trail = AuditProcess(tmp_path / "audit", KEY, restart_delay_s=0.05)
    for i in range(100):
        record(trail, i)
    wait_for(lambda: trail.written == 100)
    first_pid, first_chain = trail.child_pid, trail.chain
    assert first_pid is not None
    os.kill(first_pid, signal.SIGKILL)
    for i in range(100, 300):
        record(trail, i)
        time.sleep(0.0005)
    wait_for(lambda: trail.restarts == 1 and trail.pending == 0)
    trail.close()
    assert trail.chain != first_chain
    assert trail.write_errors >= 1
    assert trail.written + trail.dropped == 300
    report = verify_audit_files(trail.files, KEY)
    assert not report.ok  # the killed child's file has no close line ...
    assert report.first_bad is not None
    assert "without a close line" in report.first_bad.reason
    report = verify_audit_files(trail.files, KEY, allow_open_tail=True)  # ... which is allowed here
    assert report.ok, report.render()
    assert report.chains == 2
    assert (report.checks, report.dropped) == (trail.written, trail.dropped)


def test_worker_killed_closes_the_chain_as_worker_lost(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from app.security.audit_process import AuditProcess
        trail = AuditProcess({str(directory)!r}, {KEY!r})
        for i in range(50):
            trail.record(request_id=str(i), client_id="c", iban="NL91ABNA0417164300", name="A B",
                         code="NMTC", reason="no_match", index_version=1, forced=False)
        while trail.written < 50:
            time.sleep(0.01)
        print(trail.child_pid, flush=True)
        os._exit(0)  # as a worker that is killed: no close(), no End frame
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30, check=True
    )
    child = int(done.stdout.strip())
    wait_for(lambda: not Path(f"/proc/{child}").exists() or _is_zombie(child))
    files = sorted(directory.glob("*.jsonl"))
    report = verify_audit_files(files, KEY)
    assert report.ok, report.render()
    assert report.checks == 50
    assert any(WORKER_LOST in note for note in report.notes)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_key_is_not_on_the_command_line_or_in_the_environment(tmp_path: Path) -> None:
    trail = AuditProcess(tmp_path / "audit", KEY)
    try:
        pid = trail.child_pid
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"app.security.audit_process" in cmdline
        assert KEY.encode() not in cmdline
        assert KEY.encode() not in environ
    finally:
        trail.close()


def test_child_runs_at_its_niceness_above_the_worker_and_keeps_it_after_a_restart(tmp_path: Path) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    trail = AuditProcess(tmp_path / "audit", KEY, restart_delay_s=0.05, nice=5)
    try:
        record(trail, 0)
        wait_for(lambda: trail.written == 1)  # (the niceness is set before the first write)
        first = trail.child_pid
        assert first is not None
        assert os.getpriority(os.PRIO_PROCESS, first) == min(own + 5, 19)
        os.kill(first, signal.SIGKILL)
        for i in range(1, 50):
            record(trail, i)
            time.sleep(0.002)
        wait_for(lambda: trail.restarts == 1 and trail.child_pid not in (None, first))
        second = trail.child_pid
        assert second is not None
        wait_for(lambda: os.getpriority(os.PRIO_PROCESS, second) == min(own + 5, 19))
    finally:
        trail.close()
    plain = AuditProcess(tmp_path / "plain", KEY)  # nice=0: the worker's own niceness
    try:
        record(plain, 0)
        wait_for(lambda: plain.written == 1)
        assert plain.child_pid is not None
        assert os.getpriority(os.PRIO_PROCESS, plain.child_pid) == own
    finally:
        plain.close()


def test_child_runs_the_workers_package_wherever_the_server_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``app`` package in the working directory is not what the child imports (``python -m``
    would put the working directory first): the trail is the real writer's and verifies."""
    impostor = tmp_path / "cwd" / "app" / "security"
    impostor.mkdir(parents=True)
    for init in (impostor.parent / "__init__.py", impostor / "__init__.py"):
        init.write_text("")
    (impostor / "audit_process.py").write_text("raise SystemExit(97)\n")
    monkeypatch.chdir(tmp_path / "cwd")
    trail = AuditProcess(tmp_path / "audit", KEY)
    try:
        for i in range(3):
            record(trail, i)
    finally:
        trail.close()
    report = verify_audit_files(sorted((tmp_path / "audit").glob("audit-*.jsonl")), KEY)
    assert report.ok, report.render()
    assert report.checks == 3


def test_child_ignores_interrupt_and_terminate(tmp_path: Path) -> None:
    trail = AuditProcess(tmp_path / "audit", KEY)
    record(trail, 0)
    wait_for(lambda: trail.written == 1)
    pid = trail.child_pid
    assert pid is not None
    os.kill(pid, signal.SIGINT)  # as a Ctrl-C to the process group
    os.kill(pid, signal.SIGTERM)
    time.sleep(0.2)
    for i in range(1, 20):
        record(trail, i)
    trail.close()
    assert (trail.written, trail.dropped, trail.restarts) == (20, 0, 0)
    assert verify_audit_files(trail.files, KEY).ok


def _frames(*messages: msgspec.Struct) -> bytes:
    encoder = msgspec.msgpack.Encoder()
    out = b""
    for m in messages:
        payload = encoder.encode(m)
        out += _HEADER.pack(len(payload)) + payload
    return out


def _serve(tmp_path: Path, data: bytes) -> tuple[int, list[Path]]:
    read_in, write_in = os.pipe()
    read_out, write_out = os.pipe()
    os.write(write_in, data)
    os.close(write_in)
    code = serve(read_in, write_out)
    os.close(read_in)
    os.close(write_out)
    os.close(read_out)
    return code, sorted((tmp_path / "audit").glob("*.jsonl"))


def test_serve_writes_a_dropped_line_and_closes_on_end(tmp_path: Path) -> None:
    config = Config(str(tmp_path / "audit"), KEY.encode(), 1 << 20, "c0ffee")
    rec = (time.time(), "r1", "c", "DE89370400440532013000", None, "NOAP", "not_found", 1, False)
    code, files = _serve(tmp_path, _frames(config, Batch(0, [rec, rec]), Batch(3, [rec]), End()))
    assert code == 0
    report = verify_audit_files(files, KEY)
    assert report.ok, report.render()
    assert (report.checks, report.dropped) == (3, 3)


def test_serve_refuses_a_bad_frame_but_closes_what_it_wrote(tmp_path: Path) -> None:
    config = Config(str(tmp_path / "audit"), KEY.encode(), 1 << 20, "c0ffee")
    rec = (time.time(), "r1", "c", "DE89370400440532013000", "A B", "MTCH", "exact", 1, False)
    junk = _HEADER.pack(3) + b"\xc1\xc1\xc1"  # 0xc1 is never valid msgpack
    code, files = _serve(tmp_path, _frames(config, Batch(0, [rec])) + junk)
    assert code == 2
    report = verify_audit_files(files, KEY)
    assert report.ok, report.render()
    assert report.checks == 1
    last = files[-1].read_bytes().splitlines()[-1]
    assert b'"reason":"protocol-error"' in last


def test_serve_refuses_an_oversized_frame(tmp_path: Path) -> None:
    config = Config(str(tmp_path / "audit"), KEY.encode(), 1 << 20, "c0ffee")
    code, files = _serve(tmp_path, _frames(config) + _HEADER.pack(1 << 30))
    assert code == 2
    assert files == []  # nothing was written, so no file was opened


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_gate_uses_the_configured_writer(tmp_path: Path, writer: str) -> None:
    from app.security.audit import AuditTrail
    from app.security.gate import SecurityGate
    from app.security.settings import SecuritySettings

    settings = SecuritySettings(
        host="127.0.0.1", data_dir=str(tmp_path), audit_key=KEY, audit_writer=writer, auth=False
    )
    gate = SecurityGate.from_settings(settings, start_threads=False)
    try:
        expected = AuditProcess if writer == "process" else AuditTrail
        assert isinstance(gate._trail, expected)
    finally:
        gate.close()


def test_gate_starts_the_writer_process_at_the_configured_niceness(tmp_path: Path) -> None:
    from app.security.gate import SecurityGate
    from app.security.settings import SecuritySettings

    settings = SecuritySettings(
        host="127.0.0.1", data_dir=str(tmp_path), audit_key=KEY, auth=False, audit_nice=7
    )
    gate = SecurityGate.from_settings(settings, start_threads=False)
    try:
        trail = gate._trail
        assert isinstance(trail, AuditProcess)
        record(trail, 0)
        wait_for(lambda: trail.written == 1)
        assert trail.child_pid is not None
        assert os.getpriority(os.PRIO_PROCESS, trail.child_pid) == min(
            os.getpriority(os.PRIO_PROCESS, 0) + 7, 19
        )
    finally:
        gate.close()


# -- shipping from the event loop (AuditProcess.attach) ------------------------------------------
async def _sleep_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    import asyncio

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def test_shipping_from_the_event_loop_writes_everything_and_closes(tmp_path: Path) -> None:
    import asyncio

    trail = AuditProcess(tmp_path / "audit", KEY)
    for i in range(50):  # before attach: the shipper thread's
        record(trail, i)

    async def serve_requests() -> None:
        trail.attach(asyncio.get_running_loop())
        assert not trail._thread.is_alive()  # no thread of this process ships any more
        for i in range(50, 20_050):  # more than a pipe holds: written as the pipe takes it
            record(trail, i)
            if i % 1000 == 0:
                await asyncio.sleep(0)
        await _sleep_until(lambda: trail.written == 20_050)
        for i in range(20_050, 20_100):  # still queued at close: shipped by close()
            record(trail, i)
        trail.close()

    asyncio.run(serve_requests())
    assert (trail.written, trail.dropped) == (20_100, 0)
    report = verify_audit_files(trail.files, KEY)
    assert report.ok, report.render()
    assert report.checks == 20_100


def test_child_killed_while_shipping_from_the_loop_is_restarted(tmp_path: Path) -> None:
    import asyncio

    trail = AuditProcess(tmp_path / "audit", KEY, restart_delay_s=0.05)

    async def serve_requests() -> None:
        trail.attach(asyncio.get_running_loop())
        for i in range(100):
            record(trail, i)
        await _sleep_until(lambda: trail.written == 100)
        first = trail.child_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        for i in range(100, 400):
            record(trail, i)
            await asyncio.sleep(0.001)
        await _sleep_until(lambda: trail.restarts == 1 and trail.pending == 0)
        trail.close()

    asyncio.run(serve_requests())
    assert trail.written + trail.dropped == 400  # every record is written or counted as lost
    report = verify_audit_files(trail.files, KEY, allow_open_tail=True)
    assert report.ok, report.render()
    assert report.chains == 2
    assert (report.checks, report.dropped) == (trail.written, trail.dropped)


def test_full_queue_while_shipping_from_the_loop_ships_in_place(tmp_path: Path) -> None:
    # With the loop shipping, a request that finds the queue full cannot wait for a shipper: it
    # ships right there, for up to block_s (so a large VOP_AUDIT_BLOCK_S still means "never drop").
    import asyncio

    trail = AuditProcess(tmp_path / "audit", KEY, queue_size=100, block_s=5.0)

    async def burst() -> None:
        trail.attach(asyncio.get_running_loop())
        for i in range(5_000):  # no await: only record() itself can make room
            record(trail, i)
        trail.close()

    asyncio.run(burst())
    assert (trail.written, trail.dropped) == (5_000, 0)
    assert verify_audit_files(trail.files, KEY).ok
