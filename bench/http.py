"""HTTP throughput/latency harness: ``vop serve`` next to a do-nothing granian app.

``python -m bench.http [--accounts 1000000] [--workers 1] [--rounds 3] [--duration 10s]
[--auth on|off] [--audit on|off] [--compare-auth] [--extra-env K=V ...] [--compare-env K=V ...]``

1. Makes (or reuses, under ``bench/out/``) a demo snapshot of ``--accounts`` accounts and a file
   of ``--probes`` request bodies drawn by ``bench.datagen.generate_probes`` (default mix: 60 %
   exact, 20 % close, 15 % no match, 5 % unknown IBAN).
2. Starts, on free loopback ports, (A) ``bench.noop_app`` on granian and (B) ``vop serve --index``
   with the same ``--workers``. B runs the full production path: a fresh temporary VOP_DATA_DIR,
   authentication on (the local dev key; a token minted with ``mint_dev_token`` is sent as
   ``Authorization: Bearer`` by wrk and by the fixed-rate generator), audit trail on,
   ``VOP_RATE_LIMIT_RPS=0`` (a benchmark is one client: the per-client limit would cap it) and
   ``VOP_ENUM_MAX_NAMES=1000000`` (the probes try several names per IBAN: the enumeration guard
   would force NOAP). ``--compare-auth`` adds B with ``VOP_AUTH=off``; ``--compare-env K=V`` adds
   B with that variable; all variants run side by side and are loaded in turn. Waits for readiness
   (B: ``/readyz`` 200) and checks a sample of probes against every B one by one (status and
   answer vs the generator's label).
3. Drives every target with the same wrk command (``bench/wrk/mix.lua``), alternating A, B (and the
   variants) each round.
4. Offers every target a fixed rate of ``--fixed-fraction`` (70 %) of B's median peak with the
   open-loop generator ``bench.fixed_rate`` (latency from the scheduled send time); A's run is the
   reference for what the generator and the loopback stack cost by themselves.
5. Writes ``--json-out`` (default ``bench/out/http-<timestamp>.json``), a chart next to it (PNG with
   matplotlib if installed, else HTML with inline SVG) and prints a Markdown table.

Every server started here runs in its own process group and is stopped on exit, error or Ctrl-C.
Every step is bounded in time. Load goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import importlib
import json
import math
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import IO, Any
from xml.sax.saxutils import escape

import pyarrow.parquet as pq

from app.security.devkeys import mint_dev_token
from bench.cpus import add_pinning_options, check_pinning, format_cpus, pinned
from bench.datagen import DEMO_BIC, DEMO_SEED, generate_probes
from bench.fixed_rate import RESULT_MARKER as FIXED_MARKER
from bench.fixed_rate import window_p99s
from bench.netutil import free_port

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
LUA = BENCH / "wrk" / "mix.lua"
PATH = "/vop/v1/payee-verifications"
HOST = "127.0.0.1"
WRK_MARKER = "WRK_RESULT "
REQUESTING_BIC = "REQBDEFFXXX"
TARGETS = {"A": "do-nothing ASGI app (granian)", "B": "vop serve"}
# DESIGN.md §5
TARGET_RATIO = 0.5
TARGET_P99_MS = 5.0
# --compare-auth: auth on costs at most 10 % of the throughput with auth off
TARGET_AUTH_RATIO = 0.9
SCOPES = ("vop:verify", "vop:bulk")
TOKEN_TTL_S = 12 * 3600  # outlives any bounded run
# What every B runs with besides auth/audit: a benchmark is ONE client.
BENCH_SECURITY_ENV = {
    "VOP_RATE_LIMIT_RPS": "0",  # the per-client token bucket (default 1000/s) would cap the run
    "VOP_ENUM_MAX_NAMES": "1000000",  # the probes try several names per IBAN (default guard: 5)
}
# how mix.lua and bench.fixed_rate get the bearer token (a variable name, not a secret)
TOKEN_ENV = "VOP_BENCH_TOKEN"  # noqa: S105
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """The run cannot go on (a server did not start, wrk failed): one readable line."""


def log(message: str) -> None:
    print(f"[bench.http {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- inputs: snapshot and probes


def parse_duration(text: str) -> int:
    """``10s`` / ``2m`` / ``1h`` / ``10`` → whole seconds (wrk takes whole units)."""
    m = re.fullmatch(r"\s*(\d+)\s*([smh]?)\s*", text)
    if not m or int(m.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"duration like 10s, 2m or 1h expected, got {text!r}")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def _datagen_tag() -> str:
    """Short hash of the generator source: cached files are rebuilt when the generator changes."""
    return hashlib.sha256((BENCH / "datagen.py").read_bytes()).hexdigest()[:8]


def request_body(iban: str, name: str, agent_bic: str) -> str:
    return json.dumps(
        {
            "party": {"name": name},
            "partyAccount": {"iban": iban},
            "partyAgent": {"financialInstitutionId": {"bicfi": agent_bic}},
            "requestingAgent": {"financialInstitutionId": {"bicfi": REQUESTING_BIC}},
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


@dataclass(frozen=True)
class Inputs:
    snapshot: Path
    requests: Path  # one JSON body per line (for wrk and bench.fixed_rate)
    labels: Path  # the matching Probe fields, one JSON object per line
    categories: dict[str, int]


def ensure_snapshot(accounts: int, seed: int, out_dir: Path) -> Path:
    """The cached demo snapshot of ``accounts`` accounts (written with ``vop demo-data`` once)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    snapshot = out_dir / f"demo-{accounts}-{seed}-{_datagen_tag()}.parquet"
    if snapshot.is_file():
        log(f"reusing snapshot {snapshot.relative_to(ROOT)}")
    else:
        log(
            f"writing a demo snapshot of {accounts:,} accounts to {snapshot.relative_to(ROOT)} "
            "(vop demo-data)"
        )
        tmp = snapshot.with_name(f".{snapshot.stem}.tmp.parquet")
        cmd = [*_vop(), "demo-data", "--accounts", str(accounts), "--seed", str(seed), "--out", str(tmp)]
        try:
            subprocess.run(cmd, check=True, timeout=1800, cwd=ROOT)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            tmp.unlink(missing_ok=True)
            raise BenchError(f"vop demo-data failed: {exc}") from None
        tmp.replace(snapshot)
    return snapshot


def ensure_inputs(accounts: int, probes: int, seed: int, out_dir: Path) -> Inputs:
    snapshot = ensure_snapshot(accounts, seed, out_dir)
    tag = _datagen_tag()
    requests = out_dir / f"requests-{accounts}-{seed}-{tag}-{probes}.jsonl"
    labels = out_dir / f"labels-{accounts}-{seed}-{tag}-{probes}.jsonl"
    if requests.is_file() and labels.is_file():
        log(f"reusing request file {requests.relative_to(ROOT)}")
    else:
        log(f"drawing {probes:,} probes (default mix) into {requests.relative_to(ROOT)}")
        table = pq.read_table(snapshot)
        drawn = generate_probes(table, probes, seed=seed)
        del table
        tmp_r, tmp_l = requests.with_suffix(".tmp"), labels.with_suffix(".tmp")
        with tmp_r.open("w", encoding="utf-8") as fr, tmp_l.open("w", encoding="utf-8") as fl:
            for p in drawn:
                fr.write(request_body(p.iban, p.name, DEMO_BIC) + "\n")
                label = {
                    "iban": p.iban,
                    "name": p.name,
                    "category": p.category,
                    "expected": p.expected,
                    "expected_matched_name": p.expected_matched_name,
                }
                fl.write(json.dumps(label, ensure_ascii=False) + "\n")
        tmp_r.replace(requests)
        tmp_l.replace(labels)
    categories: dict[str, int] = {}
    for line in labels.read_text(encoding="utf-8").splitlines():
        cat = json.loads(line)["category"]
        categories[cat] = categories.get(cat, 0) + 1
    return Inputs(snapshot, requests, labels, categories)


def _vop() -> list[str]:
    exe = Path(sys.executable).with_name("vop")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "app.cli"]


# ---------------------------------------------------------------- servers


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def group_cpu_seconds(pgid: int) -> float:
    """CPU (user + system) used so far by the live processes of a process group."""
    total = 0
    for pid in _group_pids(pgid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def group_cpu_by_role(pgid: int) -> dict[str, float]:
    """CPU seconds so far of a process group's live processes by role: ``server`` (the group
    leader: granian's supervisor), ``workers`` (its children), ``helpers`` (the workers' children,
    e.g. the audit writer)."""
    roles = {"server": 0.0, "workers": 0.0, "helpers": 0.0}
    for pid in _group_pids(pgid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        role = "server" if pid == pgid else "workers" if int(fields[1]) == pgid else "helpers"
        roles[role] += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return roles


def group_rss_mib(pgid: int) -> float:
    total = 0
    for pid in _group_pids(pgid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def group_cpus(pgid: int) -> list[int]:
    """The CPUs any thread of a process group's live processes may run on (its pinning, as seen)."""
    cpus: set[int] = set()
    for pid in _group_pids(pgid):
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                cpus |= os.sched_getaffinity(int(task.name))
            except OSError:  # (gone meanwhile)
                continue
    return sorted(cpus)


@dataclass
class Server:
    """One target. ``key`` is ``A`` (the do-nothing app) or starts with ``B`` (a ``vop serve``
    variant); ``env`` replaces the inherited environment (None: inherit); ``token`` is the bearer
    token the load generators send (None: none)."""

    key: str
    cmd: list[str]
    port: int
    log_path: Path
    label: str = ""
    env: dict[str, str] | None = None
    token: str | None = None
    settings: dict[str, str] = field(default_factory=dict)  # what this variant sets (for the report)
    cpus: frozenset[int] | None = None  # started pinned to these (``--server-cpus``); None: any
    proc: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None

    def __post_init__(self) -> None:
        self.label = self.label or TARGETS.get(self.kind, self.key)

    @property
    def kind(self) -> str:
        return self.key[:1]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{PATH}"

    def load_env(self) -> dict[str, str]:
        """Environment for a load generator aimed at this target (carries the token)."""
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
        if self.token:
            env[TOKEN_ENV] = self.token
        return env

    def start(self) -> None:
        self.log_file = self.log_path.open("wb")
        shown = " ".join(f"{k}={v}" for k, v in self.settings.items())
        log(
            f"starting {self.key} ({self.label}) on port {self.port}: "
            f"{shown + ' ' if shown else ''}{shlex.join(self.cmd)}"
        )
        with pinned(self.cpus):  # (its workers, threads and the audit writer inherit the CPU set)
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=self.log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stopped as a whole, spared the terminal's Ctrl-C
            )

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float) -> float:
        """Poll until ready (A: a POST answers 200; B: ``/readyz`` 200). Returns seconds waited."""
        t0 = time.monotonic()
        last = "no answer yet"
        while time.monotonic() - t0 < timeout:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise BenchError(f"{self.key} exited (code {code}) before it was ready:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                if self.kind == "A":
                    conn.request("POST", PATH, body=b"{}", headers={"Content-Type": "application/json"})
                else:
                    conn.request("GET", "/readyz")
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                if resp.status == 200:
                    return time.monotonic() - t0
                last = f"{resp.status} {body[:200].decode(errors='replace')}"
                if b'"failed"' in body:
                    raise BenchError(f"{self.key} reports a failed index load: {last}")
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)
        raise BenchError(f"{self.key} not ready after {timeout:.0f} s (last: {last}):\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        return group_cpu_seconds(self.proc.pid) if self.proc else 0.0

    def cpu_by_role(self) -> dict[str, float]:
        return group_cpu_by_role(self.proc.pid) if self.proc else {}

    def rss_mib(self) -> float:
        return group_rss_mib(self.proc.pid) if self.proc else 0.0

    def cpus_seen(self) -> list[int]:
        return group_cpus(self.proc.pid) if self.proc else []

    def stop(self) -> None:
        proc = self.proc
        if proc is not None:
            # SIGTERM to the granian main process only: it drains and stops its workers (a SIGTERM to
            # the whole group would kill the workers under it, which it then logs and respawns).
            # Whatever of the group is still alive after the grace period gets SIGKILL.
            for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
                try:
                    if sig == signal.SIGTERM:
                        os.kill(proc.pid, sig)
                    else:
                        os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    continue
                # the main process is gone; make sure no worker of its group outlives it
                if not _group_pids(proc.pid):
                    break
            if _group_pids(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            log(f"stopped {self.key} (exit code {proc.returncode})")
            self.proc = None
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None

    def log_problems(self) -> list[str]:
        """Log lines that point at server-side trouble (tracebacks, errors, respawned workers)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        pattern = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|exception|respawn|died|killed", re.IGNORECASE)
        return [line for line in text.splitlines() if pattern.search(line)][:50]


@contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        server.start()
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- preflight


def preflight(server: Server, labels: Path, sample: int) -> dict[str, Any]:
    """Send ``sample`` probes one at a time; count non-2xx and answers that differ from the label."""
    rows = [json.loads(line) for line in labels.read_text(encoding="utf-8").splitlines()[:sample]]
    statuses: dict[str, int] = {}
    samples: dict[str, str] = {}
    mismatches: dict[str, dict[str, int]] = {}
    examples: list[dict[str, Any]] = []
    conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        for row in rows:
            body = request_body(row["iban"], row["name"], DEMO_BIC).encode()
            conn.request(
                "POST",
                PATH,
                body=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Request-ID": str(uuid.uuid4()),
                    "X-Request-Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    **({"Authorization": f"Bearer {server.token}"} if server.token else {}),
                },
            )
            resp = conn.getresponse()
            raw = resp.read()
            key = str(resp.status)
            statuses[key] = statuses.get(key, 0) + 1
            if not 200 <= resp.status < 300:
                samples.setdefault(key, raw[:400].decode(errors="replace"))
                continue
            answer = json.loads(raw)
            got = answer.get("partyNameMatch")
            ok = got == row["expected"] and (
                got != "CMTC" or answer.get("matchedName") == row["expected_matched_name"]
            )
            if not ok:
                per = mismatches.setdefault(row["category"], {})
                label = f"{row['expected']}->{got}"
                per[label] = per.get(label, 0) + 1
                if len(examples) < 10:
                    examples.append(
                        {
                            "name": row["name"],
                            "iban": row["iban"],
                            "category": row["category"],
                            "expected": row["expected"],
                            "answer": answer,
                        }
                    )
    finally:
        conn.close()
    agree = sum(statuses.get(k, 0) for k in statuses if k.startswith("2")) - sum(
        sum(v.values()) for v in mismatches.values()
    )
    return {
        "sent": len(rows),
        "statuses": statuses,
        "non_2xx_samples": samples,
        "agree_with_label": agree,
        "label_mismatches": mismatches,
        "mismatch_examples": examples,
    }


# ---------------------------------------------------------------- wrk


@dataclass
class Measurement:
    round: int
    target: str
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p99_9_ms: float
    non_2xx: int
    socket_errors: int
    requests: int
    server_cpu_cores: float
    loadgen_cpu_cores: float
    loadavg_1m_before: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    samples: dict[str, str] = field(default_factory=dict)
    socket_error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["errors"] = self.errors
        return data


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wrk_command(args: argparse.Namespace, url: str, requests: Path, seconds: int) -> list[str]:
    return [
        args.wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        url,
        "--",
        str(requests),
    ]


def run_wrk(args: argparse.Namespace, server: Server, requests: Path, seconds: int, rnd: int) -> Measurement:
    cmd = wrk_command(args, server.url, requests, seconds)
    load_before = os.getloadavg()[0]
    cpu0, child0, t0 = server.cpu_seconds(), _children_cpu(), time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            cwd=ROOT,
            check=False,
            env=server.load_env(),
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk ran past {seconds + 30} s against {server.key}") from None
    wall = time.monotonic() - t0
    server_cores = (server.cpu_seconds() - cpu0) / wall
    loadgen_cores = (_children_cpu() - child0) / wall
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(WRK_MARKER)), None)
    if line is None:
        raise BenchError(
            f"wrk against {server.key} printed no result (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-500:]}\n{server.log_tail()}"
        )
    data = json.loads(line[len(WRK_MARKER) :])
    lat = data["latency_us"]
    kinds = {k: int(v) for k, v in data["errors"].items() if k != "status" and v}
    return Measurement(
        round=rnd,
        target=server.key,
        rps=float(data["rps"]),
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        p99_9_ms=lat["p99_9"] / 1000,
        non_2xx=int(data["non_2xx"]),
        socket_errors=int(data["socket_errors"]),
        requests=int(data["requests"]),
        server_cpu_cores=server_cores,
        loadgen_cpu_cores=loadgen_cores,
        statuses={str(k): int(v) for k, v in data.get("statuses", {}).items()},
        samples={str(k): str(v) for k, v in data.get("samples", {}).items()},
        socket_error_kinds=kinds,
        loadavg_1m_before=load_before,
    )


def run_fixed(args: argparse.Namespace, server: Server, requests: Path, rate: float) -> dict[str, Any]:
    seconds = args.fixed_seconds
    cmd = [
        sys.executable,
        "-m",
        "bench.fixed_rate",
        "--url",
        server.url,
        "--requests",
        str(requests),
        "--rate",
        f"{rate:.0f}",
        "--duration",
        str(seconds),
        "--connections",
        str(args.connections),
        "--warmup",
        "1",
        "--drain",
        "5",
        "--quiet",
    ]
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    limit = seconds + 1 + 5 + 30
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=limit,
            cwd=ROOT,
            check=False,
            env=server.load_env(),
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"bench.fixed_rate ran past {limit} s against {server.key}") from None
    wall = time.monotonic() - t0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(FIXED_MARKER)), None)
    if line is None:
        raise BenchError(
            f"bench.fixed_rate against {server.key} printed no result (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-500:]}"
        )
    data: dict[str, Any] = json.loads(line[len(FIXED_MARKER) :])
    data["target"] = server.key
    cpu_s = server.cpu_seconds() - cpu0
    data["server_cpu_cores"] = cpu_s / wall
    # every request sent (warm-up slots too) against all the server's CPU while the run lasted
    data["server_cpu_us_per_request"] = 1e6 * cpu_s / data["sent"] if data.get("sent") else math.nan
    # late although a connection was free: the generator itself could not keep the schedule
    timer99, lat99 = data["timer_lag_ms"].get("p99", 0.0), data["latency_ms"].get("p99", 0.0)
    data["generator_limited"] = bool(timer99 > 2.0 and timer99 > 0.25 * lat99)
    return data


def run_own_peak_baseline(
    args: argparse.Namespace, server: Server, requests: Path, peak: float
) -> dict[str, Any]:
    """``--baseline-own-peak``: the do-nothing app at ``--fixed-fraction`` of its *own* median peak,
    the target's load for A itself. If A cannot keep the p99 bar there, no app on this transport
    and machine can, and a FAIL of B's says nothing of B's code."""
    rate = args.fixed_fraction * peak
    fr = run_fixed(args, server, requests, rate)
    fr["fraction_of_own_peak"] = args.fixed_fraction
    log(
        f"A at {args.fixed_fraction:.0%} of its own peak ({rate:,.0f} req/s): p99 "
        f"{fr['latency_ms'].get('p99', math.nan):.2f} ms, server CPU {fr['server_cpu_cores']:.2f} cores, "
        f"{fr['server_cpu_us_per_request']:.0f} µs a request"
        + (" (generator-limited)" if fr["generator_limited"] else "")
    )
    return fr


def run_sweep(
    args: argparse.Namespace, servers: dict[str, Server], requests: Path, peak: float
) -> dict[str, Any]:
    """``--sweep``: a fixed-rate run per fraction of B's median peak and target, in that order."""
    runs: list[dict[str, Any]] = []
    for fraction in args.sweep:
        rate = fraction * peak
        for key, server in servers.items():
            fr = run_fixed(args, server, requests, rate)
            fr["fraction"] = fraction
            runs.append(fr)
            log(
                f"sweep {fraction:.0%} ({rate:,.0f} req/s) {key}: p99 "
                f"{fr['latency_ms'].get('p99', math.nan):.2f} ms, errors {fr['errors']}, server CPU "
                f"{fr['server_cpu_cores']:.2f} cores, {fr['server_cpu_us_per_request']:.0f} µs a request"
            )
    return {"fractions": list(args.sweep), "peak": peak, "runs": runs}


def _sharing_note(args: argparse.Namespace) -> str:
    if args.server_cpus is None:
        return f"load generator and server share this machine's {os.cpu_count()} CPUs"
    return (
        f"pinned apart: servers (their workers, threads and audit writers) on CPUs "
        f"{format_cpus(args.server_cpus)}, wrk, bench.fixed_rate and this harness on CPUs "
        f"{format_cpus(args.load_cpus)}"
    )


# ---------------------------------------------------------------- report


#: Additions in the per-core speed probe (``python_loop_ms``): ~0.1-0.2 s on a usual core.
_SPEED_PROBE_ITERATIONS = 2_000_000


def python_loop_ms() -> float:
    """A per-core speed indicator recorded with every bench result: the best of three runs of a
    plain Python loop of ``_SPEED_PROBE_ITERATIONS`` additions, in ms. This VM's speed drifted
    ~2x between sessions (the same bulk code at 167 and 352 ms p50); the figure lets a reader
    scale results from different days before comparing them."""
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(_SPEED_PROBE_ITERATIONS):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {"python": platform.python_version()}
    for mod in ("granian", "litestar", "msgspec", "uvloop"):
        try:
            versions[mod] = str(importlib.import_module(mod).__version__)
        except (ImportError, AttributeError):
            versions[mod] = "?"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "versions": versions,
        "loadavg_at_start": list(os.getloadavg()),
        "python_loop_ms": python_loop_ms(),
    }


def speed_note(machine: dict[str, Any]) -> str:
    """The speed probe for a result's machine line (older results have none)."""
    ms = machine.get("python_loop_ms")
    loop = f"{_SPEED_PROBE_ITERATIONS / 1e6:g}M-addition Python loop"
    return f"{loop} {ms} ms (per-core speed)" if ms is not None else f"{loop}: not recorded"


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def summarise(rounds: list[Measurement]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key in dict.fromkeys(m.target for m in rounds):  # run order
        ms = [m for m in rounds if m.target == key]
        out[key] = {
            "rps": _median([m.rps for m in ms]),
            "p50_ms": _median([m.p50_ms for m in ms]),
            "p90_ms": _median([m.p90_ms for m in ms]),
            "p99_ms": _median([m.p99_ms for m in ms]),
            "p99_9_ms": _median([m.p99_9_ms for m in ms]),
            "errors": float(sum(m.errors for m in ms)),
            "server_cpu_cores": _median([m.server_cpu_cores for m in ms]),
            "loadgen_cpu_cores": _median([m.loadgen_cpu_cores for m in ms]),
        }
    return out


def _f(value: float | None, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _security_line(result: dict[str, Any]) -> str:
    parts = []
    for key, v in result["servers"].items():
        if key.startswith("B"):
            shown = ", ".join(f"{k}={val}" for k, val in v["settings"].items())
            parts.append(f"{key} = {v['label']} ({shown})")
    return (
        "- B variants (each with a fresh temporary VOP_DATA_DIR; auth on = ES256 dev-key token sent as "
        "`Authorization: Bearer` by wrk and the fixed-rate generator): "
        + "; ".join(parts)
        + ". VOP_RATE_LIMIT_RPS=0 because a benchmark is one client (the per-client limit, default "
        "1000/s, would cap it); VOP_ENUM_MAX_NAMES=1000000 because the probes try several names per "
        "IBAN (the enumeration guard, default 5, would force NOAP)"
    )


def markdown(result: dict[str, Any]) -> str:
    m, cfg = result["machine"], result["config"]
    lines = [
        f"### HTTP single check: vop serve vs do-nothing granian app ({result['date'][:10]})",
        "",
        f"- command: `{result['command']}`",
        f"- machine: {m['nproc']} CPUs (`nproc`), {m['cpu_model']}, Linux {m['kernel']}; "
        f"Python {m['versions']['python']}, granian {m['versions']['granian']}; {speed_note(m)}",
        f"- index: {cfg['accounts']:,} demo accounts; {cfg['probes']:,} probes "
        + ", ".join(f"{k} {v}" for k, v in result["inputs"]["categories"].items()),
        f"- load: `{result['wrk_command']}`; {cfg['workers']} worker(s); "
        f"{cfg['rounds']} rounds alternating {', '.join(result['servers'])}, "
        f"{cfg['warmup_s']} s warm-up each",
        _security_line(result),
        "- the load generator (wrk, bench.fixed_rate) runs on the same machine and shares its CPUs "
        "with the server: the figures are ratios within one run, not capacity"
        if not cfg.get("server_cpus")
        else f"- the load generator (wrk, bench.fixed_rate) runs on the same machine, pinned apart: "
        f"servers on CPUs {cfg['server_cpus']}, load on CPUs {cfg['load_cpus']}",
        "",
        "| round | target | req/s | p50 ms | p99 ms | p99.9 ms | errors | server CPU | wrk CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rounds"]:
        lines.append(
            f"| {r['round']} | {r['target']} | {r['rps']:,.0f} | {_f(r['p50_ms'])} | {_f(r['p99_ms'])} | "
            f"{_f(r['p99_9_ms'])} | {r['errors']} | {r['server_cpu_cores']:.2f} | "
            f"{r['loadgen_cpu_cores']:.2f} |"
        )
    for key, s in result["median"].items():
        lines.append(
            f"| median | {key} | **{s['rps']:,.0f}** | {_f(s['p50_ms'])} | {_f(s['p99_ms'])} | "
            f"{_f(s['p99_9_ms'])} | {int(s['errors'])} | {s['server_cpu_cores']:.2f} | "
            f"{s['loadgen_cpu_cores']:.2f} |"
        )
    per_round = ", ".join(_f(x, 3) for x in result["ratio_per_round"])
    lines += [
        "",
        "; ".join(f"{k} = {v['label']}" for k, v in result["servers"].items())
        + f". **B/A = {_f(result['ratio_b_over_a'], 3)}** (per round: {per_round}; target ≥ {TARGET_RATIO}).",
    ]
    for c in result.get("comparisons", []):
        target = f"; target ≥ {c['target']:g}" if c.get("target") is not None else ""
        lines.append(
            f"**{c['name']}** ({c['numerator']}/{c['denominator']}) **= {_f(c['ratio'], 3)}** "
            f"(per round: {', '.join(_f(x, 3) for x in c['per_round'])}{target}); "
            f"p99 at peak {_f(c['p99_ms'][0])} vs {_f(c['p99_ms'][1])} ms."
        )
    fixed = result.get("fixed_rate")
    if fixed:
        lines += [
            "",
            f"Fixed rate (open loop, `bench.fixed_rate`, latency from the scheduled send time, "
            f"{fixed['fraction']:.0%} of B's median peak, {cfg['fixed_seconds']} s after 1 s warm-up):",
            "",
            "| target | offered req/s | achieved req/s | p50 ms | p99 ms | p99.9 ms | errors | "
            "send lag p99 ms | generator's own lag p99 ms | generator CPU | server CPU | "
            "server CPU µs/request | p99 per window ms (median / worst) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in fixed["runs"]:
            lat, lag = r["latency_ms"], r["send_lag_ms"]
            flag = " (generator-limited)" if r["generator_limited"] else ""
            w_median, w_worst = window_p99s(r.get("timeline", []))
            lines.append(
                f"| {r['target']}{flag} | {r['target_rate']:,.0f} | {r['achieved_rate']:,.0f} | "
                f"{_f(lat.get('p50', math.nan))} | {_f(lat.get('p99', math.nan))} | "
                f"{_f(lat.get('p99_9', math.nan))} | {r['errors']} | {_f(lag.get('p99', math.nan))} | "
                f"{_f(r['timer_lag_ms'].get('p99', math.nan))} | "
                f"{r['generator_cpu_cores']:.2f} | {r['server_cpu_cores']:.2f} | "
                f"{_f(r.get('server_cpu_us_per_request'), 0)} | {_f(w_median)} / {_f(w_worst)} |"
            )
        window_ms = 1000 * fixed["runs"][0].get("window_s", 0.1) if fixed["runs"] else 100
        lines += [
            "",
            f"(p99 per window: the p99 of each {window_ms:g} ms of scheduled time; a median near the "
            "overall p99 is a tail spread through the run, a median far below it a few bursts. The "
            "chart plots it over time.)",
        ]
    lines += _sweep_lines(result)
    t = result["targets"]
    lines += [
        "",
        "Targets (DESIGN.md §5): "
        + "; ".join(f"{name} {'PASS' if ok else 'FAIL'}" for name, ok in t.items() if ok is not None),
        *_baseline_line(result),
        *_own_peak_line(result),
    ]
    return "\n".join(lines)


def _load_runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``--sweep`` runs and the main fixed-rate run's, each with its fraction of B's peak
    (none without ``--sweep``)."""
    sweep = result.get("fixed_sweep")
    if not sweep:
        return []
    fixed = result.get("fixed_rate")
    main = [{**r, "fraction": fixed["fraction"]} for r in fixed["runs"]] if fixed else []
    return [*sweep["runs"], *main]


def _sweep_lines(result: dict[str, Any]) -> list[str]:
    """The ``--sweep`` table: each target at its wrk peak, then at each offered load (the main
    fixed-rate run included), with the server's CPU per request at each."""
    runs = _load_runs(result)
    if not runs:
        return []
    sweep = result["fixed_sweep"]
    lines = [
        "",
        f"Offered load sweep (`--sweep`; fractions of B's median peak, {sweep['peak']:,.0f} req/s; "
        "the peak rows are wrk's closed-loop medians):",
        "",
        "| target | load | offered req/s | achieved req/s | p50 ms | p99 ms | p99 per window ms (median) | "
        "errors | server CPU | server CPU µs/request |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, m in result["median"].items():
        per = 1e6 * m["server_cpu_cores"] / m["rps"] if m["rps"] else math.nan
        lines.append(
            f"| {key} | peak (wrk) | — | {m['rps']:,.0f} | {_f(m['p50_ms'])} | {_f(m['p99_ms'])} | — | "
            f"{int(m['errors'])} | {m['server_cpu_cores']:.2f} | {_f(per, 0)} |"
        )
        for r in sorted((r for r in runs if r["target"] == key), key=lambda r: r["fraction"]):
            lat = r["latency_ms"]
            lines.append(
                f"| {key} | {r['fraction']:.0%} | {r['target_rate']:,.0f} | {r['achieved_rate']:,.0f} | "
                f"{_f(lat.get('p50', math.nan))} | {_f(lat.get('p99', math.nan))} | "
                f"{_f(window_p99s(r.get('timeline', []))[0])} | {r['errors']} | "
                f"{r['server_cpu_cores']:.2f} | {_f(r.get('server_cpu_us_per_request'), 0)} |"
            )
    return lines


def sweep_series(result: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """(offered req/s, p99 ms) per target over the sweep and the main fixed-rate run, by load."""
    out: dict[str, list[tuple[float, float]]] = {}
    for r in sorted(_load_runs(result), key=lambda r: r["target_rate"]):
        p99 = r["latency_ms"].get("p99")
        if p99:
            out.setdefault(r["target"], []).append((r["target_rate"], p99))
    return out


# ---------------------------------------------------------------- chart


_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _colours(keys: Sequence[str]) -> dict[str, str]:
    """A grey, then B and its variants in palette order."""
    out: dict[str, str] = {}
    others = iter(_PALETTE)
    for key in keys:
        out[key] = "#7f7f7f" if key == "A" else next(others, "#17becf")
    return out


def _svg_throughput(
    rounds: list[dict[str, Any]], servers: dict[str, str], width: int = 460, height: int = 260
) -> str:
    keys = list(servers)
    colours = _colours(keys)
    height += 14 * (len(keys) - 1)
    n_rounds = max((r["round"] for r in rounds), default=0)
    top = max((r["rps"] for r in rounds), default=1.0) * 1.15 or 1.0
    left, plot_w, plot_h = 60, width - 80, 190
    bottom = 30 + plot_h
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<text x="{width / 2}" y="14" text-anchor="middle" font-size="13">'
        "Throughput per round (req/s)</text>",
    ]
    for i in range(5):
        v = top * i / 4
        y = bottom - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{v:,.0f}</text>'
        )
    group_w = plot_w / max(1, n_rounds)
    bar_w = group_w * 0.76 / max(1, len(keys))
    for r in rounds:
        pos = keys.index(r["target"]) if r["target"] in keys else 0
        x = left + group_w * (r["round"] - 1) + group_w * 0.12 + bar_w * pos
        h = plot_h * r["rps"] / top
        parts.append(
            f'<rect x="{x:.1f}" y="{bottom - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
            f'fill="{colours.get(r["target"], "#17becf")}"><title>{escape(r["target"])} round '
            f"{r['round']}: {r['rps']:,.0f} req/s</title></rect>"
            f'<text x="{x + bar_w / 2:.1f}" y="{bottom - h - 3:.1f}" text-anchor="middle" '
            f'font-size="9">{r["rps"] / 1000:.1f}k</text>'
        )
    for i in range(n_rounds):
        parts.append(
            f'<text x="{left + group_w * (i + 0.5):.1f}" y="{bottom + 14}" text-anchor="middle">'
            f"round {i + 1}</text>"
        )
    parts.append(_svg_legend(servers, left, bottom + 32))
    parts.append("</svg>")
    return "".join(parts)


def _svg_legend(servers: dict[str, str], x: int, y: int) -> str:
    """One row per target, from ``y`` down."""
    colours = _colours(list(servers))
    out = []
    for i, (key, label) in enumerate(servers.items()):
        row = y + 14 * i
        out.append(
            f'<rect x="{x}" y="{row - 9}" width="10" height="10" fill="{colours[key]}"/>'
            f'<text x="{x + 14}" y="{row}">{escape(key)}: {escape(label)}</text>'
        )
    return "".join(out)


_LEFT, _PLOT_H = 60, 190  # a panel's plot area: left margin and height (px); it starts 30 px down


def _log_panel(
    values: Sequence[float], title: str, width: int, height: int
) -> tuple[Callable[[float], float], list[str]]:
    """A panel's SVG opening, title and decade grid lines for a log latency axis spanning
    ``values`` (ms, all > 0), and the y position of a value on it (values below the axis sit on
    its floor)."""
    lo = 10 ** math.floor(math.log10(min(values))) if values else 0.1
    hi = 10 ** math.ceil(math.log10(max(values))) if values else 10.0
    if hi <= lo:
        hi = lo * 10
    bottom, plot_w = 30 + _PLOT_H, width - 80

    def ypos(v: float) -> float:
        v = max(v, lo)
        return bottom - _PLOT_H * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<text x="{width / 2}" y="14" text-anchor="middle" font-size="13">{escape(title)}</text>',
    ]
    decade = lo
    while decade <= hi * 1.0001:
        y = ypos(decade)
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{decade:g} ms</text>'
        )
        decade *= 10
    return ypos, parts


def _svg_latency(
    series: dict[str, list[float]],
    title: str,
    servers: dict[str, str],
    width: int = 460,
    height: int = 260,
) -> str:
    """Percentile curves (p50 … p99.9) per target on a log latency axis."""
    colours = _colours(list(servers))
    height += 14 * (len(servers) - 1)
    labels = ["p50", "p90", "p99", "p99.9"]
    values = [v for vs in series.values() for v in vs if v and not math.isnan(v)]
    ypos, parts = _log_panel(values, title, width, height)
    left, plot_w, bottom = _LEFT, width - 80, 30 + _PLOT_H
    step = plot_w / (len(labels) - 1)
    for i, lab in enumerate(labels):
        parts.append(f'<text x="{left + step * i:.1f}" y="{bottom + 14}" text-anchor="middle">{lab}</text>')
    for key, vs in series.items():
        colour = colours.get(key, "#17becf")
        pts = [(left + step * i, ypos(v)) for i, v in enumerate(vs) if v and not math.isnan(v)]
        if pts:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
                + '"/>'
            )
            for (x, y), v in zip(pts, vs, strict=False):
                parts.append(
                    f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
                    f"<title>{escape(key)}: {v:.2f} ms</title></circle>"
                )
    parts.append(_svg_legend(servers, left, bottom + 32))
    parts.append("</svg>")
    return "".join(parts)


def _latency_series(result: dict[str, Any]) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    peak = {k: [s["p50_ms"], s["p90_ms"], s["p99_ms"], s["p99_9_ms"]] for k, s in result["median"].items()}
    fixed: dict[str, list[float]] = {}
    for r in (result.get("fixed_rate") or {}).get("runs", []):
        lat = r["latency_ms"]
        fixed[r["target"]] = [lat.get(k, math.nan) for k in ("p50", "p90", "p99", "p99_9")]
    return peak, fixed


def _timelines(result: dict[str, Any]) -> dict[str, list[dict[str, float]]]:
    """Each fixed-rate run's timeline windows (``bench.fixed_rate.timeline``), by target."""
    runs = (result.get("fixed_rate") or {}).get("runs", [])
    return {r["target"]: r["timeline"] for r in runs if r.get("timeline")}


def _svg_xy(
    series: dict[str, list[tuple[float, float]]],
    title: str,
    servers: dict[str, str],
    *,
    x_end: float,
    x_label: Callable[[float], str],
    markers: bool = False,
    target_ms: float | None = None,
    width: int = 460,
    height: int = 260,
) -> str:
    """(x, latency ms) lines, one per target, a linear x axis from 0 to ``x_end`` and a log latency
    axis; with ``markers`` a dot (and its value) at each point, with ``target_ms`` a dashed line."""
    colours = _colours(list(servers))
    height += 14 * (len(servers) - 1)
    values = [y for pts in series.values() for _, y in pts if y > 0]
    ypos, parts = _log_panel([*values, *([target_ms] if target_ms else [])], title, width, height)
    left, plot_w, bottom = _LEFT, width - 80, 30 + _PLOT_H

    def xpos(x: float) -> float:
        return left + plot_w * x / x_end

    for i in range(5):
        x = x_end * i / 4
        parts.append(f'<text x="{xpos(x):.1f}" y="{bottom + 14}" text-anchor="middle">{x_label(x)}</text>')
    if target_ms:
        y = ypos(target_ms)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#999" '
            f'stroke-dasharray="4 3"><title>target {target_ms:g} ms</title></line>'
        )
    for key, pts in series.items():
        colour = colours.get(key, "#17becf")
        line = " ".join(f"{xpos(x):.1f},{ypos(v):.1f}" for x, v in pts)
        stroke = 2 if markers else 1.5
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="{stroke}" points="{line}"/>')
        if markers:
            parts += [
                f'<circle cx="{xpos(x):.1f}" cy="{ypos(v):.1f}" r="3" fill="{colour}">'
                f"<title>{escape(key)} at {x_label(x)}: p99 {v:.2f} ms</title></circle>"
                for x, v in pts
            ]
    parts.append(_svg_legend(servers, left, bottom + 32))
    parts.append("</svg>")
    return "".join(parts)


def _timeline_series(timelines: dict[str, list[dict[str, float]]]) -> dict[str, list[tuple[float, float]]]:
    """(scheduled time s, p99 ms) of each window, by target."""
    return {key: [(w["t_s"], w["p99"]) for w in windows] for key, windows in timelines.items()}


def _svg_timeline(timelines: dict[str, list[dict[str, float]]], servers: dict[str, str]) -> str:
    """p99 per window against scheduled time, one line per target."""
    end = max((w["t_s"] for ws in timelines.values() for w in ws), default=1.0) or 1.0
    title = "Fixed rate: p99 per window over time"
    return _svg_xy(_timeline_series(timelines), title, servers, x_end=end, x_label=lambda t: f"{t:.1f} s")


def _svg_sweep(series: dict[str, list[tuple[float, float]]], servers: dict[str, str]) -> str:
    """p99 against the offered rate, one line per target, with the 5 ms target."""
    end = max(x for pts in series.values() for x, _ in pts) * 1.05
    title = "Fixed rate: p99 against offered load"
    return _svg_xy(
        series,
        title,
        servers,
        x_end=end,
        x_label=lambda x: f"{x:,.0f}/s",
        markers=True,
        target_ms=TARGET_P99_MS,
    )


def write_chart(result: dict[str, Any], json_path: Path) -> Path:
    """PNG with matplotlib when it is installed, else an HTML page with inline SVG. Every target of
    the run (A, B and any variant) has its own colour in every panel."""
    peak, fixed = _latency_series(result)
    servers = {k: v["label"] for k, v in result["servers"].items()}
    colours = _colours(list(servers))
    try:
        mpl: Any = importlib.import_module("matplotlib")
    except ImportError:
        mpl = None
    if mpl is not None:
        mpl.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
        timelines = _timelines(result)
        sweep = sweep_series(result)
        panels_n = 2 + bool(fixed) + bool(timelines) + bool(sweep)
        fig, axes = plt.subplots(1, panels_n, figsize=(5.4 * panels_n, 4.6))
        rounds = result["rounds"]
        n = max(r["round"] for r in rounds)
        width = 0.8 / len(servers)
        for i, (key, label) in enumerate(servers.items()):
            xs = [r["round"] - 0.4 + width * (i + 0.5) for r in rounds if r["target"] == key]
            ys = [r["rps"] for r in rounds if r["target"] == key]
            axes[0].bar(xs, ys, width=width, color=colours[key], label=f"{key}: {label}")
        axes[0].set(
            title="Throughput per round", xlabel="round", ylabel="req/s", xticks=list(range(1, n + 1))
        )
        axes[0].legend(fontsize=7)
        panels = [(axes[1], peak, "Latency at peak (median of rounds)")]
        fixed_title = f"Latency at fixed rate ({result['fixed_rate']['rate']:,.0f} req/s)" if fixed else ""
        if fixed:
            panels.append((axes[2], fixed, fixed_title))
        for ax, series, title in panels:
            for key, vs in series.items():
                ax.plot(["p50", "p90", "p99", "p99.9"], vs, marker="o", color=colours.get(key), label=key)
            ax.set(title=title, ylabel="ms", yscale="log")
            ax.legend(fontsize=8)
        # (series, title, x label, markers and the target line)
        xy_panels: list[tuple[dict[str, list[tuple[float, float]]], str, str, bool]] = []
        if timelines:
            xy_panels.append(
                (_timeline_series(timelines), "Fixed rate: p99 per window over time", "s (scheduled)", False)
            )
        if sweep:
            xy_panels.append((sweep, "Fixed rate: p99 against offered load", "offered req/s", True))
        for ax, (xy, title, xlabel, marked) in zip(axes[2 + bool(fixed) :], xy_panels, strict=True):
            for key, points in xy.items():
                ax.plot(
                    [x for x, _ in points],
                    [y for _, y in points],
                    marker="o" if marked else None,
                    color=colours.get(key),
                    label=key,
                )
            if marked:
                ax.axhline(
                    TARGET_P99_MS, color="#999", linestyle="--", linewidth=1, label=f"{TARGET_P99_MS:g} ms"
                )
            ax.set(title=title, xlabel=xlabel, ylabel="ms", yscale="log")
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = json_path.with_suffix(".png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path
    svgs = [
        _svg_throughput(result["rounds"], servers),
        _svg_latency(peak, "Latency at peak (median of rounds)", servers),
    ]
    if fixed:
        svgs.append(
            _svg_latency(fixed, f"Latency at fixed rate ({result['fixed_rate']['rate']:,.0f} req/s)", servers)
        )
    timelines = _timelines(result)
    if timelines:
        svgs.append(_svg_timeline(timelines, servers))
    sweep = sweep_series(result)
    if sweep:
        svgs.append(_svg_sweep(sweep, servers))
    comparisons = "".join(
        f"<br>{escape(c['name'])}: {_f(c['ratio'], 3)}" for c in result.get("comparisons", [])
    )
    path = json_path.with_suffix(".html")
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>bench.http "
        f"{escape(result['date'])}</title></head><body style='font-family:sans-serif'>"
        f"<h3>bench.http {escape(result['date'])}: B/A = {_f(result['ratio_b_over_a'], 3)}"
        f"{comparisons}</h3>"
        f"<p><code>{escape(result['command'])}</code></p>" + "\n".join(svgs) + "</body></html>\n",
        encoding="utf-8",
    )
    return path


# ---------------------------------------------------------------- OTLP sink


class OtlpSink:
    """A loopback OTLP/HTTP receiver that accepts and drops traces (200, empty protobuf answer), so
    a tracing-on run exports for real without a collector. Runs in a thread of this process, which
    mostly waits on wrk meanwhile; its CPU is not counted as server CPU."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                sink.bytes += len(self.rfile.read(length)) if length else 0
                sink.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-sink", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}/v1/traces"

    def __enter__(self) -> OtlpSink:
        self._thread.start()
        log(f"OTLP sink (accepts and drops traces) at {self.endpoint}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# ---------------------------------------------------------------- main


def parse_env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise argparse.ArgumentTypeError(f"KEY=VALUE expected, got {text!r}")
    return key, value


def add_env_option(p: argparse.ArgumentParser, flag: str, help_text: str) -> None:
    """A repeatable ``KEY=VALUE`` option collected as a list of pairs."""
    p.add_argument(
        flag, type=parse_env_pair, action="append", default=[], metavar="KEY=VALUE", help=help_text
    )


REDIS_PLACEHOLDER = "@redis"


def add_redis_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--redis",
        action="store_true",
        help=f"start a throwaway redis-server on a free loopback port for the run; {REDIS_PLACEHOLDER} "
        "in --extra-env / --compare-env values becomes its URL, e.g. "
        f"--compare-env VOP_REDIS_URL={REDIS_PLACEHOLDER} (the rate limit and enumeration guard "
        "shared through Redis, as a fleet runs them)",
    )


@contextmanager
def redis_for(args: argparse.Namespace) -> Iterator[None]:
    """With ``--redis``: a redis-server for the run (``bench.bench_redis.redis_server``) and
    ``@redis`` in the env options replaced by its URL; without, a ``@redis`` is an error."""
    names = ("extra_env", "compare_env")
    used = any(REDIS_PLACEHOLDER in v for n in names for _, v in getattr(args, n, []))
    if not args.redis:
        if used:
            raise BenchError(f"{REDIS_PLACEHOLDER} in an env option needs --redis")
        yield
        return
    from bench.bench_redis import redis_server  # noqa: PLC0415 (only --redis needs it)

    with redis_server() as url:
        for n in names:
            setattr(args, n, [(k, v.replace(REDIS_PLACEHOLDER, url)) for k, v in getattr(args, n, [])])
        log(f"redis-server for this run: {url}")
        yield


def parse_fractions(text: str) -> tuple[float, ...]:
    """Comma-separated fractions of a peak, each above 0 and at most 2."""
    try:
        out = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"fractions such as 0.3,0.5,0.9 expected, got {text!r}") from None
    if not all(0 < f <= 2 for f in out):
        raise argparse.ArgumentTypeError(f"each fraction must be above 0 and at most 2, got {text!r}")
    return out


def parse_on_off(text: str) -> bool:
    if text.lower() in ("on", "1", "true", "yes"):
        return True
    if text.lower() in ("off", "0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"on or off expected, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.http",
        description="Throughput and latency of vop serve next to a do-nothing granian app (the ceiling). "
        "B runs with auth (dev-key token) and audit on, VOP_RATE_LIMIT_RPS=0 and "
        "VOP_ENUM_MAX_NAMES=1000000 (a benchmark is one client trying several names per IBAN).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--accounts", type=int, default=1_000_000, help="accounts in the demo snapshot")
    p.add_argument("--probes", type=int, default=10_000, help="distinct requests wrk cycles through")
    p.add_argument("--seed", type=int, default=None, help="generator seed (default: the demo seed)")
    p.add_argument("--workers", type=int, default=1, help="granian workers for every target")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (also for the fixed rate)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument(
        "--duration",
        type=parse_duration,
        default=parse_duration("10s"),
        help="wrk duration per run, e.g. 10s or 1m",
    )
    p.add_argument(
        "--warmup",
        type=parse_duration,
        default=parse_duration("2s"),
        help="unmeasured wrk run against each target before round 1",
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds of A then B (then the variants)")
    p.add_argument(
        "--auth",
        type=parse_on_off,
        default="on",
        metavar="on|off",
        help="B's VOP_AUTH: on sends a minted dev-key bearer token, off sends none",
    )
    p.add_argument("--audit", type=parse_on_off, default="on", metavar="on|off", help="B's VOP_AUDIT")
    p.add_argument(
        "--compare-auth",
        action="store_true",
        help="also run B with VOP_AUTH=off (no token) in every round and report auth on / auth off "
        f"(target ≥ {TARGET_AUTH_RATIO})",
    )
    add_env_option(p, "--extra-env", "environment for every B (repeatable), e.g. VOP_MICROBATCH_MS=0.5")
    add_env_option(
        p,
        "--compare-env",
        "also run B with these variables (repeatable; all together in one variant) in every round "
        "and report with / without, e.g. VOP_MICROBATCH_MS=0.5 or OTEL_TRACES_EXPORTER=otlp (an OTLP "
        "target without an endpoint exports to a built-in loopback sink)",
    )
    add_redis_option(p)
    p.add_argument(
        "--fixed-fraction",
        type=float,
        default=0.7,
        help="fixed-rate run at this fraction of B's median peak, for every target (0 to skip)",
    )
    p.add_argument(
        "--fixed-duration",
        dest="fixed_seconds",
        type=parse_duration,
        default=None,
        help="fixed-rate run length (default: --duration)",
    )
    p.add_argument(
        "--baseline-own-peak",
        action="store_true",
        help="after the fixed-rate run, one more of the do-nothing app alone at --fixed-fraction of "
        "its own median peak: whether this machine lets even A keep the p99 bar at that load",
    )
    p.add_argument(
        "--sweep",
        type=parse_fractions,
        default=(),
        metavar="F[,F...]",
        help="after the fixed-rate run, more fixed-rate runs at these fractions of B's median peak, "
        "every target (e.g. 0.3,0.5,0.9): p99 and CPU per request against the offered load",
    )
    add_pinning_options(
        p,
        load_side="wrk, bench.fixed_rate and this harness",
        why="a tail is the server's and not a generator's on the same core",
    )
    p.add_argument(
        "--preflight",
        type=int,
        default=300,
        help="probes sent one by one to every B first, to check statuses and answers (0 to skip)",
    )
    p.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to wait for each server")
    p.add_argument(
        "--json-out", type=Path, default=None, help="result file (default bench/out/http-<time>.json)"
    )
    p.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk", help="wrk binary")
    return p


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def with_redis(args: argparse.Namespace, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()`` inside ``redis_for(args)``."""
    with redis_for(args):
        return run()


def run_guarded(prog: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any] | int:
    """``run()`` with Ctrl-C, SIGTERM and SIGHUP unwinding through the servers' finally blocks
    (SIGINT explicitly: a shell may start us with it ignored). Returns its result, or the exit code
    (3 bench error, 130 interrupted) after a one-line message."""
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _on_signal) for sig in handled}
    try:
        return run()
    except BenchError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; servers stopped", file=sys.stderr)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass(frozen=True)
class Variant:
    """One ``vop serve`` configuration."""

    key: str
    label: str
    auth: bool
    audit: bool
    env: dict[str, str]  # on top of BENCH_SECURITY_ENV and VOP_AUTH / VOP_AUDIT


def variants(args: argparse.Namespace) -> list[Variant]:
    extra = dict(args.extra_env)
    on = {True: "on", False: "off"}
    base = Variant(
        "B", f"vop serve (auth {on[args.auth]}, audit {on[args.audit]})", args.auth, args.audit, extra
    )
    out = [base]
    if args.compare_auth:
        out.append(
            Variant("B-noauth", f"vop serve (auth off, audit {on[args.audit]})", False, args.audit, extra)
        )
    if args.compare_env:
        shown = " ".join(f"{k}={v}" for k, v in args.compare_env)
        out.append(
            Variant(
                "B+env", f"{base.label} + {shown}", args.auth, args.audit, {**extra, **dict(args.compare_env)}
            )
        )
    return out


def _inherited_to_drop() -> list[str]:
    """VOP_* / OTEL_* variables of this shell: not passed to B, so a run is what its command says."""
    return sorted(k for k in os.environ if k.startswith(("VOP_", "OTEL_")))


def b_environment(v: Variant, data_dir: Path, sink: OtlpSink | None) -> tuple[dict[str, str], dict[str, str]]:
    """(the full process environment, the settings it makes) for variant ``v``."""
    settings = {
        "VOP_AUTH": "on" if v.auth else "off",
        "VOP_AUDIT": "on" if v.audit else "off",
        **BENCH_SECURITY_ENV,
        **v.env,
    }
    if sink is not None and _needs_sink(settings):
        settings["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = sink.endpoint
    env = {k: val for k, val in os.environ.items() if not k.startswith(("VOP_", "OTEL_")) and k != TOKEN_ENV}
    env.update(settings)
    env["VOP_DATA_DIR"] = str(data_dir)
    return env, settings


def _needs_sink(settings: dict[str, str]) -> bool:
    exporters = {e.strip().lower() for e in settings.get("OTEL_TRACES_EXPORTER", "").split(",")}
    has_endpoint = (
        "OTEL_EXPORTER_OTLP_ENDPOINT" in settings or "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" in settings
    )
    return "otlp" in exporters and not has_endpoint


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def _ratio(
    result: dict[str, Any], rounds: list[Measurement], num: str, den: str
) -> tuple[float, list[float]]:
    med = result["median"]
    ratio = med[num]["rps"] / med[den]["rps"] if med[den]["rps"] else math.nan
    by_round: dict[int, dict[str, float]] = {}
    for m in rounds:
        by_round.setdefault(m.round, {})[m.target] = m.rps
    per_round = [r[num] / r[den] for _, r in sorted(by_round.items()) if r.get(den) and num in r]
    return ratio, per_round


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    seed = DEMO_SEED if args.seed is None else args.seed
    if args.fixed_seconds is None:
        args.fixed_seconds = args.duration
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    json_path: Path = args.json_out or OUT / f"http-{stamp}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    log_dir = OUT / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    inputs = ensure_inputs(args.accounts, args.probes, seed, OUT)
    workers = str(args.workers)
    wanted = variants(args)
    dropped = _inherited_to_drop()
    if dropped:
        log(f"not passing this shell's {', '.join(dropped)} to B (use --extra-env)")

    result: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "command": "python -m bench.http " + shlex.join(argv),
        "machine": machine_info(),
        "config": {
            "accounts": args.accounts,
            "probes": args.probes,
            "seed": seed,
            "workers": args.workers,
            "connections": args.connections,
            "threads": args.threads,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "fixed_fraction": args.fixed_fraction,
            "fixed_seconds": args.fixed_seconds,
            "auth": args.auth,
            "audit": args.audit,
            "compare_auth": args.compare_auth,
            "extra_env": dict(args.extra_env),
            "compare_env": dict(args.compare_env),
            "inherited_env_not_passed": dropped,
            "sweep": list(args.sweep),
            "server_cpus": format_cpus(args.server_cpus) if args.server_cpus else None,
            "load_cpus": format_cpus(args.load_cpus) if args.load_cpus else None,
        },
        "inputs": {
            "snapshot": str(inputs.snapshot.relative_to(ROOT)),
            "requests": str(inputs.requests.relative_to(ROOT)),
            "categories": inputs.categories,
        },
        "wrk_command": shlex.join(wrk_command(args, "URL", inputs.requests.relative_to(ROOT), args.duration)),
        "notes": [
            _sharing_note(args),
            "all targets are running during every measurement; only one is loaded at a time",
            "loadavg_1m_before per round shows other work on the machine (a shared tree may run tests)",
            "B: VOP_RATE_LIMIT_RPS=0 (a benchmark is one client; the per-client limit would cap it), "
            "VOP_ENUM_MAX_NAMES=1000000 (the probes try several names per IBAN)",
            "auth on: an ES256 token minted with the local dev key of each B's temporary VOP_DATA_DIR, "
            "sent as Authorization: Bearer (the token cache makes the signature check once per token)",
        ],
    }
    with ExitStack() as stack:
        data_root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vop-bench-http-")))
        needs_sink = any(_needs_sink({"OTEL_TRACES_EXPORTER": "", **v.env}) for v in wanted)
        sink = stack.enter_context(OtlpSink()) if needs_sink else None
        servers: dict[str, Server] = {}
        a_port = free_port()
        servers["A"] = Server(
            "A",
            [
                sys.executable,
                "-m",
                "bench.noop_app",
                "--host",
                HOST,
                "--port",
                str(a_port),
                "--workers",
                workers,
            ],
            a_port,
            log_dir / f"http-{stamp}-A-noop.log",
            cpus=args.server_cpus,
        )
        for v in wanted:
            data_dir = data_root / v.key
            data_dir.mkdir()
            env, settings = b_environment(v, data_dir, sink)
            # minted before the start: the server then loads the key this token is signed with
            token = mint_dev_token(data_dir, SCOPES, REQUESTING_BIC, TOKEN_TTL_S) if v.auth else None
            port = free_port()
            servers[v.key] = Server(
                v.key,
                [
                    *_vop(),
                    "serve",
                    "--index",
                    str(inputs.snapshot),
                    "--host",
                    HOST,
                    "--workers",
                    workers,
                    "--port",
                    str(port),
                ],
                port,
                log_dir / f"http-{stamp}-{v.key}-vop.log",
                label=v.label,
                env=env,
                token=token,
                settings=settings,
                cpus=args.server_cpus,
            )
        result["servers"] = {
            k: {"label": s.label, "settings": s.settings, "bearer_token": s.token is not None}
            for k, s in servers.items()
        }
        keys = list(servers)
        b_keys = [k for k in keys if k.startswith("B")]
        for s in servers.values():
            stack.enter_context(running(s))
        stack.enter_context(pinned(args.load_cpus))  # wrk and bench.fixed_rate, forked from here on
        result["load_cpus_seen"] = sorted(os.sched_getaffinity(0))
        for s in servers.values():
            waited = s.wait_ready(args.ready_timeout)
            log(f"{s.key} ready after {waited:.1f} s, RSS {s.rss_mib():,.0f} MiB")
            result.setdefault("startup", {})[s.key] = {
                "ready_s": round(waited, 2),
                "rss_mib": round(s.rss_mib()),
                "cpus": s.cpus_seen(),  # every thread of its processes, once ready
            }
        if args.preflight > 0:
            result["preflight"] = {}
            for key in b_keys:
                log(f"preflight: {args.preflight} probes one by one against {key}")
                pf = preflight(servers[key], inputs.labels, args.preflight)
                result["preflight"][key] = pf
                log(
                    f"preflight {key}: statuses {pf['statuses']}, {pf['agree_with_label']}/{pf['sent']} "
                    f"agree with the generator's label; mismatches {pf['label_mismatches'] or 'none'}"
                )
                if pf["non_2xx_samples"]:
                    log(f"preflight {key}: non-2xx samples {pf['non_2xx_samples']}")
        warm: list[dict[str, Any]] = []
        for key in keys:
            if args.warmup > 0:
                log(f"warm-up {args.warmup} s: {key}")
                warm.append(run_wrk(args, servers[key], inputs.requests, args.warmup, 0).as_dict())
        result["warmup"] = warm
        rounds: list[Measurement] = []
        for rnd in range(1, args.rounds + 1):
            for key in keys:
                log(f"round {rnd}/{args.rounds}: {key} ({servers[key].label}), wrk {args.duration} s")
                m = run_wrk(args, servers[key], inputs.requests, args.duration, rnd)
                rounds.append(m)
                log(
                    f"  {m.rps:,.0f} req/s, p50 {m.p50_ms:.2f} ms, p99 {m.p99_ms:.2f} ms, p99.9 "
                    f"{m.p99_9_ms:.2f} ms, errors {m.errors} "
                    f"(non-2xx {m.non_2xx}, socket {m.socket_errors}); "
                    f"server CPU {m.server_cpu_cores:.2f}, wrk CPU {m.loadgen_cpu_cores:.2f} cores"
                )
        med = summarise(rounds)
        result["rounds"] = [m.as_dict() for m in rounds]
        result["median"] = med
        result["ratio_b_over_a"], result["ratio_per_round"] = _ratio(result, rounds, "B", "A")
        comparisons: list[dict[str, Any]] = []
        if "B-noauth" in servers:
            comparisons.append({"name": "auth on / auth off", "numerator": "B", "denominator": "B-noauth",
                                "target": TARGET_AUTH_RATIO})  # fmt: skip
        if "B+env" in servers:
            shown = " ".join(f"{k}={v}" for k, v in args.compare_env)
            comparisons.append({"name": f"with {shown} / without", "numerator": "B+env", "denominator": "B",
                                "target": None})  # fmt: skip
        for c in comparisons:
            c["ratio"], c["per_round"] = _ratio(result, rounds, c["numerator"], c["denominator"])
            c["p99_ms"] = [med[c["numerator"]]["p99_ms"], med[c["denominator"]]["p99_ms"]]
            log(f"{c['name']}: {_f(c['ratio'], 3)} (per round {', '.join(_f(x, 3) for x in c['per_round'])})")
        result["comparisons"] = comparisons
        if args.fixed_fraction > 0:
            rate = args.fixed_fraction * med["B"]["rps"]
            runs = []
            for key in keys:
                log(
                    f"fixed rate {rate:,.0f} req/s ({args.fixed_fraction:.0%} of B's median peak) "
                    f"for {args.fixed_seconds} s: {key}"
                )
                fr = run_fixed(args, servers[key], inputs.requests, rate)
                lat = fr["latency_ms"]
                log(
                    f"  achieved {fr['achieved_rate']:,.0f} req/s, "
                    f"p50 {lat.get('p50', math.nan):.2f} ms, p99 "
                    f"{lat.get('p99', math.nan):.2f} ms, p99.9 {lat.get('p99_9', math.nan):.2f} ms, errors "
                    f"{fr['errors']}, send lag p99 {fr['send_lag_ms'].get('p99', math.nan):.2f} ms "
                    f"(generator's own {fr['timer_lag_ms'].get('p99', math.nan):.2f} ms)"
                    + (" (generator-limited)" if fr["generator_limited"] else "")
                )
                runs.append(fr)
            result["fixed_rate"] = {"fraction": args.fixed_fraction, "rate": rate, "runs": runs}
            if args.baseline_own_peak:
                result["fixed_rate"]["own_peak_baseline"] = run_own_peak_baseline(
                    args, servers["A"], inputs.requests, med["A"]["rps"]
                )
        if args.sweep:
            result["fixed_sweep"] = run_sweep(args, servers, inputs.requests, med["B"]["rps"])
        if sink is not None:
            result["otlp_sink"] = {"endpoint": sink.endpoint, "requests": sink.requests, "bytes": sink.bytes}
        for s in servers.values():  # stopped before the data dirs go (audit files flushed)
            s.stop()
        result["audit_bytes"] = {k: _dir_bytes(data_root / k / "audit") for k in b_keys}
    # servers are stopped and their temporary data dirs removed here
    result["server_log_problems"] = {k: s.log_problems() for k, s in servers.items()}
    result["server_logs"] = {k: str(s.log_path.relative_to(ROOT)) for k, s in servers.items()}
    fixed_runs = (result.get("fixed_rate") or {}).get("runs", [])
    fixed_b = next((r for r in fixed_runs if r["target"] == "B"), None)
    b_errors = sum(int(result["median"][k]["errors"]) for k in b_keys) + sum(
        r["errors"] for r in fixed_runs if r["target"] in b_keys
    )
    preflight_bad = any(pf["non_2xx_samples"] for pf in result.get("preflight", {}).values())
    result["targets"] = {
        f"B/A ≥ {TARGET_RATIO}": bool(result["ratio_b_over_a"] >= TARGET_RATIO),
        f"p99 ≤ {TARGET_P99_MS:g} ms at {args.fixed_fraction:.0%} of peak": None
        if fixed_b is None
        else bool(fixed_b["latency_ms"].get("p99", math.inf) <= TARGET_P99_MS),
        f"zero errors ({', '.join(b_keys)})": b_errors == 0 and not preflight_bad,
    }
    for c in result["comparisons"]:
        if c["target"] is not None:
            result["targets"][f"{c['name']} ≥ {c['target']:g}"] = bool(c["ratio"] >= c["target"])
    result["fixed_rate_baseline"] = fixed_rate_baseline(fixed_runs)
    json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    result["json_out"] = str(json_path)
    result["chart"] = str(write_chart(result, json_path))
    return result


def fixed_rate_baseline(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Whether the do-nothing app (A) kept the p99 bar at the rate B was offered (the fixed-rate run
    offers both the same rate). Where A did not, B's p99 verdict says nothing of B: at that rate this
    machine (the load generator beside the server, the wake-ups of an open-loop load) cannot show
    the target. None without a fixed-rate run of A."""
    a = next((r for r in runs if r["target"] == "A"), None)
    if a is None:
        return None
    p99 = float(a["latency_ms"].get("p99", math.inf))
    return {"offered_rate": a["target_rate"], "p99_ms": p99, "meets_target": p99 <= TARGET_P99_MS}


def _own_peak_line(result: dict[str, Any]) -> list[str]:
    own = (result.get("fixed_rate") or {}).get("own_peak_baseline")
    verdict = fixed_rate_baseline([own]) if own else None  # (the same bar, A at its own load)
    if own is None or verdict is None:
        return []
    p99, kept = verdict["p99_ms"], verdict["meets_target"]
    return [
        "",
        f"A at {own['fraction_of_own_peak']:.0%} of its own peak ({own['target_rate']:,.0f} req/s offered, "
        f"{own['achieved_rate']:,.0f} achieved{', generator-limited' if own['generator_limited'] else ''}): "
        f"p99 {_f(p99)} ms, server CPU {own['server_cpu_cores']:.2f} cores, "
        f"{_f(own.get('server_cpu_us_per_request'), 0)} µs a request (≤ {TARGET_P99_MS:g} ms: "
        f"{'yes' if kept else 'no'}"
        + (
            ""
            if kept
            else f": the do-nothing app itself misses the bar at {own['fraction_of_own_peak']:.0%} of "
            "its own peak on this machine"
        )
        + ").",
    ]


def _baseline_line(result: dict[str, Any]) -> list[str]:
    base = result.get("fixed_rate_baseline")
    if not base:
        return []
    verdict = (
        "the machine can show the target at this rate"
        if base["meets_target"]
        else "the do-nothing app misses the target itself, so this run cannot show it for B"
    )
    return [
        "",
        f"Baseline at the fixed rate: A's p99 {_f(base['p99_ms'])} ms at {base['offered_rate']:,.0f} req/s "
        f"(≤ {TARGET_P99_MS:g} ms: {'yes' if base['meets_target'] else 'no'}): {verdict}.",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.accounts < 1 or args.probes < 1 or args.rounds < 1 or args.workers < 1:
        parser.error("--accounts, --probes, --rounds and --workers must be at least 1")
    if args.compare_auth and not args.auth:
        parser.error("--compare-auth compares auth on with auth off: leave --auth on")
    if args.baseline_own_peak and args.fixed_fraction <= 0:
        parser.error("--baseline-own-peak runs at --fixed-fraction of A's peak: give a fraction above 0")
    if not Path(args.wrk).is_file():
        parser.error(f"wrk not found at {args.wrk} (Debian: apt-get install wrk)")
    pinning = check_pinning(args.server_cpus, args.load_cpus)
    if pinning:
        parser.error(pinning)
    result = run_guarded("bench.http", lambda: with_redis(args, lambda: run(args, argv)))
    if isinstance(result, int):
        return result
    print()
    print(markdown(result))
    print()
    problems = {k: v for k, v in result["server_log_problems"].items() if v}
    errors = {m["target"]: m["errors"] for m in result["rounds"] if m["errors"]}
    medians = ", ".join(f"{k} {s['rps']:,.0f}" for k, s in result["median"].items())
    comparisons = "".join(f"; {c['name']} = {_f(c['ratio'], 3)}" for c in result["comparisons"])
    log(
        f"summary: B/A = {_f(result['ratio_b_over_a'], 3)}{comparisons}; median req/s {medians}; "
        f"errors in rounds {errors or 'none'}; "
        f"server log problems {sum(len(v) for v in problems.values()) or 'none'}"
    )
    for key, samples in {m["target"]: m["samples"] for m in result["rounds"] if m["samples"]}.items():
        log(f"non-2xx samples from {key}: {samples}")
    log(f"wrote {result['json_out']} and {result['chart']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
