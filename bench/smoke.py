"""Load-test smoke run: a local ``vop serve`` on a small snapshot, the locust suite against it.

``python -m bench.smoke`` writes a demo snapshot (``--accounts``, default 20,000) to a temporary
folder, starts ``vop serve`` on a free 127.0.0.1 port, waits for ``/readyz``, runs
``locust -f bench/locustfile.py --headless -u 20 -r 20 -t <duration>`` against it with the
default SLO gate, prints the gate's summary and exits with locust's exit code (0: gate passed,
1: gate failed, other: the run itself failed). The server is always stopped. About 25 s in all.
The server runs with ``VOP_AUTH=off`` and ``VOP_RATE_LIMIT_RPS=0`` (SERVER_ENV): the smoke
checks answers and latency, not the auth layer (``--scenario auth_negative`` does that).

Extra locust arguments go after ``--``: ``python -m bench.smoke -- --mix exact=100``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import datagen
from bench.netutil import free_port, http_status
from matching.sources import parquet

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "bench" / "locustfile.py"
SMOKE_MIX = "exact=55,close=20,no_match=15,unknown_iban=5,invalid=5"
# The smoke server: loopback, auth off (allowed on loopback only), no per-client rate limit (the
# whole run is one client), generated files (dev keys, audit trail) in the temporary folder.
SERVER_ENV = {"VOP_LOG_LEVEL": "warning", "VOP_AUTH": "off", "VOP_RATE_LIMIT_RPS": "0"}


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while http_status(url) != 200:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server was not ready within {timeout_s:.0f} s ({url})")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the server's process group (granian and its workers), SIGKILL after ``grace_s``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def write_snapshot(accounts: int, path: Path) -> None:
    parquet.write_snapshot(datagen.generate_accounts(accounts), path)


def locust_command(args: argparse.Namespace, host: str, snapshot: Path, summary: Path) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "-u",
        str(args.users),
        "-r",
        str(args.users),
        "-t",
        args.duration,
        "--host",
        host,
        "--snapshot",
        str(snapshot),
        "--probes",
        "5000",
        "--mix",
        args.mix,
        "--summary-json",
        str(summary),
        "--stop-timeout",
        "5",
    ]
    if args.results:
        results = Path(args.results)
        results.mkdir(parents=True, exist_ok=True)
        cmd += ["--csv", str(results / "smoke"), "--html", str(results / "smoke.html")]
    return cmd + list(args.locust_args)


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="vop-smoke-") as tmp:
        folder = Path(tmp)
        snapshot = folder / "snapshot.parquet"
        summary = folder / "summary.json"
        started = time.monotonic()
        write_snapshot(args.accounts, snapshot)
        port = free_port()
        env = {**os.environ, **SERVER_ENV, "VOP_DATA_DIR": str(folder / "var")}
        log_path = folder / "serve.log"
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "app.cli",
                    "serve",
                    "--index",
                    str(snapshot),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    str(args.workers),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            host = f"http://127.0.0.1:{port}"
            try:
                wait_ready(server, host + "/readyz", args.ready_timeout)
            except RuntimeError as exc:
                print(f"smoke: {exc}\n{log_path.read_text(errors='replace')[-2000:]}", file=sys.stderr)
                return 3
            print(f"smoke: vop serve ready on {host} ({args.accounts:,} accounts), locust {args.duration}")
            cmd = locust_command(args, host, snapshot, summary)
            try:
                done = subprocess.run(
                    cmd, check=False, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout
                )
            except subprocess.TimeoutExpired:
                print(f"smoke: locust did not finish within {args.timeout:.0f} s", file=sys.stderr)
                return 3
        finally:
            stop(server)
        if summary.is_file():
            data = json.loads(summary.read_text(encoding="utf-8"))
            print(data["text"])
        else:
            print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
            print("smoke: locust wrote no summary", file=sys.stderr)
        print(f"smoke: locust exit code {done.returncode}; {time.monotonic() - started:.1f} s in all")
        return done.returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.smoke", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--duration", default="20s", help="locust -t (default 20s)")
    parser.add_argument("--users", type=int, default=20, help="locust -u and -r (default 20)")
    parser.add_argument("--accounts", type=int, default=20_000, help="snapshot size (default 20000)")
    parser.add_argument("--workers", type=int, default=1, help="vop serve --workers (default 1)")
    parser.add_argument("--mix", default=SMOKE_MIX, help=f"request mix (default {SMOKE_MIX})")
    parser.add_argument("--results", default="", help="also write locust --csv/--html reports to DIR")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for /readyz")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds before locust is killed")
    parser.add_argument("locust_args", nargs="*", help="extra locust arguments (after --)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
