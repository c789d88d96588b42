"""`vop serve` as a real process on granian: readiness, one verification, clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from app.security.audit import verify_audit_files
from app.security.devkeys import mint_dev_token
from app.security.gate import audit_key_for
from app.security.settings import SecuritySettings
from bench.netutil import free_port, http_status
from matching.sources.parquet import write_snapshot
from tests.conftest import IBAN_PERSON, accounts_table, now_rfc3339


@pytest.mark.slow
@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
def test_vop_serve_answers_and_stops(tmp_path: Path, interface: str) -> None:
    snap = tmp_path / "snap.parquet"
    write_snapshot(accounts_table(), snap)
    port = free_port()
    env = {**os.environ, "VOP_LOG_LEVEL": "warning", "VOP_DATA_DIR": str(tmp_path)}
    token = mint_dev_token(tmp_path, ("vop:verify",), "REQBDEFFXXX", 600)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--index",
            str(snap),
            "--port",
            str(port),
            "--interface",
            interface,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while http_status(base + "/readyz") != 200:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)
        payload = {
            "party": {"name": "Max Mustermann"},
            "partyAccount": {"iban": IBAN_PERSON},
            "partyAgent": {"financialInstitutionId": {"bicfi": "VOPBDEFFXXX"}},
            "requestingAgent": {"financialInstitutionId": {"bicfi": "REQBDEFFXXX"}},
        }
        rid = str(uuid.uuid4())
        req = urllib.request.Request(  # noqa: S310
            base + "/vop/v1/payee-verifications",
            data=json.dumps(payload).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Request-ID": rid,
                "X-Request-Timestamp": now_rfc3339(),
                "Authorization": f"Bearer {token}",
            },
        )
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
            assert json.loads(resp.read()) == {"partyNameMatch": "MTCH"}
            assert resp.headers["X-Request-ID"] == rid
        # A format error, and a route that is not a hot one (through the bridge under RSGI).
        bad = urllib.request.Request(base + "/vop/v1/payee-verifications", data=b"{", method="POST")  # noqa: S310
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=5)  # noqa: S310
        assert refused.value.code in (400, 401)
        assert json.loads(refused.value.read())["code"]
        with urllib.request.urlopen(base + "/vop/v1/problems/FORMAT_ERROR", timeout=5) as resp:  # noqa: S310
            assert json.loads(resp.read())["code"] == "FORMAT_ERROR"
        assert http_status(base + "/metrics") == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0
    # Graceful stop flushed and closed the audit trail, which verifies with the dev audit key.
    files = sorted((tmp_path / "audit").rglob("*.jsonl"))
    assert files
    key = audit_key_for(SecuritySettings(data_dir=str(tmp_path)))
    report = verify_audit_files(files, key)
    assert report.ok, report.render()
    assert report.checks >= 1


def test_vop_serve_refuses_missing_snapshot(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--index", str(tmp_path / "nope.parquet")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "snapshot file not found" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
