"""Redis index source benchmark: full-load time, change-to-visible latency, memory.

    python -m bench.bench_redis --accounts 100000 1000000

Starts its own ``redis-server`` on a free port (never the machine's 6379), loads N demo accounts
(``bench.datagen.generate_accounts``) through the writer API, then measures:

- full load, split into SCAN + pipelined HMGET read and ``AccountIndex.build``;
- time until a ``RedisIndexSource`` started on that Redis hands over its first index;
- change-to-visible latency: a writer thread renames accounts (one MULTI/EXEC each) at a steady
  rate; latency = from just before the write until ``lookup`` on the current index shows it;
- overlay batch apply vs a full rebuild, and compaction time;
- process RSS (and the per-account extrapolation to 10M).

Targets (DESIGN.md §5): 1M accounts loaded in ≤ 10 s; a change visible in ≤ 1 s p99.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import redis

from bench.datagen import generate_accounts
from matching.index import AccountIndex
from matching.memory import use_system_allocator
from matching.overlay import IndexLike, OverlayIndex, compact
from matching.sources.redis_layout import connect, upsert_account, write_accounts
from matching.sources.redis_source import RedisIndexSource, RedisSourceSettings, read_accounts


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: run `make redis-server`")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with tempfile.TemporaryDirectory(prefix="vop-bench-redis-") as workdir:
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.RedisError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit("redis-server did not start") from None
                    time.sleep(0.05)
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait(10)


def measure_latency(
    observers: list[Callable[[IndexLike], None]], url: str, ibans: list[str], changes: int, rate: float
) -> np.ndarray:
    """Rename ``changes`` accounts at ``rate``/s; seconds from write to visible, per change."""
    client = connect(url, socket_timeout=5)
    outstanding: dict[str, tuple[str, float]] = {}
    lock = threading.Lock()
    latencies: list[float] = []
    done = threading.Event()

    def check(index: IndexLike) -> None:
        with lock:
            items = list(outstanding.items())
        if not items:
            return
        rows = index.lookup([i for i, _ in items])
        now = time.perf_counter()
        regs = index.registered([int(r) for r in rows])
        with lock:
            for (iban, (name, t0)), reg in zip(items, regs, strict=True):
                if reg.names == [name] and outstanding.get(iban, ("", 0.0))[0] == name:
                    latencies.append(now - t0)
                    del outstanding[iban]
            if len(latencies) >= changes:
                done.set()

    observers.append(check)  # called with every index the source hands over
    picks = np.random.default_rng(11).permutation(len(ibans))[:changes]
    interval = 1.0 / rate
    start = time.perf_counter()
    for n, k in enumerate(picks.tolist()):
        iban = ibans[k]
        name = f"Renamed Person{n}"
        target = start + n * interval
        pause = target - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        with lock:
            outstanding[iban] = (name, time.perf_counter())
        upsert_account(client, {"iban": iban, "names": [name], "type": "person", "status": "active"})
    if not done.wait(30):
        say(f"warning: {len(outstanding)} changes not visible after 30 s")
    client.close()
    return np.array(latencies)


def source_child(url: str, changes: int, rate: float) -> None:
    """Child process: start a RedisIndexSource, wait until ready, measure RSS and latency."""
    use_system_allocator()  # as app.asgi does in every worker
    rss_before = rss_mb()
    observers: list[Callable[[IndexLike], None]] = []

    def on_index(index: IndexLike) -> None:
        for observe in observers:
            observe(index)

    source = RedisIndexSource(url, "vop:", RedisSourceSettings(block_ms=500))
    t = time.perf_counter()
    source.start(on_index)
    if not source.wait_ready(300):
        raise SystemExit("source did not become ready")
    ready_s = time.perf_counter() - t
    gc.collect()
    rss_after = rss_mb()
    say(f"source ready in {ready_s:.2f} s; RSS {rss_after:.0f} MB")
    index = source.current
    assert isinstance(index, AccountIndex)
    rows = np.random.default_rng(7).choice(len(index), size=min(changes, len(index)), replace=False)
    ibans = [index.iban_at(int(r)) for r in rows]
    say(f"measuring change-to-visible latency over {len(ibans):,} changes at {rate:.0f}/s")
    lat = measure_latency(observers, url, ibans, len(ibans), rate)
    applied = source.status().changes_applied
    source.stop()
    out = {
        "ready_s": ready_s,
        "rss_before": rss_before,
        "rss_after": rss_after,
        "latencies": lat.tolist(),
        "changes_applied": applied,
    }
    print(json.dumps(out), flush=True)


def run(n: int, changes: int, rate: float) -> dict[str, str]:
    say(f"--- {n:,} accounts ---")
    table = generate_accounts(n, progress=lambda k: say(f"generated {k:,}/{n:,}"))
    with redis_server() as url:
        client = connect(url, socket_timeout=60)
        step = max(n // 10, 1)
        marks = [step]

        def wrote(k: int) -> None:
            if k >= marks[0] or k == n:
                say(f"written {k:,}/{n:,} accounts to Redis")
                marks[0] = k + step

        t = time.perf_counter()
        write_accounts(client, table, batch=2000, progress=wrote)
        write_s = time.perf_counter() - t
        del table
        gc.collect()

        say("full load: SCAN + HMGET read")
        t = time.perf_counter()
        result = read_accounts(client, batch=5000, progress=None)
        read_s = time.perf_counter() - t
        say(f"read {result.table.num_rows:,} accounts in {read_s:.2f} s; building the index")
        t = time.perf_counter()
        built = AccountIndex.build(result.table, source="bench")
        build_s = time.perf_counter() - t
        say(f"built in {build_s:.2f} s")

        # overlay apply vs full rebuild for one batch of 100 changes; compaction of 10k changes
        ibans = [built.iban_at(r) for r in range(min(10_000, len(built)))]
        rows = [
            (i, {"iban": i, "names": ["Batch Person"], "type": "person", "status": "active"})
            for i in ibans[:100]
        ]
        t = time.perf_counter()
        ov = OverlayIndex.over(built).apply(rows)
        overlay_ms = (time.perf_counter() - t) * 1000
        big = OverlayIndex.over(built).apply(
            (i, {"iban": i, "names": ["Batch Person"], "type": "person", "status": "active"})
            for i in ibans[:10_000]
        )
        t = time.perf_counter()
        compact(big)
        compact_s = time.perf_counter() - t
        del result, built, ov, big
        client.close()
        gc.collect()

        # The source runs in a fresh child process so that its RSS is the index's, not this
        # process's leftovers from generating and writing the data.
        say("starting a RedisIndexSource in a child process (full load, then latency)")
        cmd = [sys.executable, "-m", "bench.bench_redis", "--source-child", url]
        cmd += ["--changes", str(changes), "--rate", str(rate)]
        child = subprocess.run(
            cmd,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        report = json.loads(child.stdout.strip().splitlines()[-1])
    ready_s, rss_before, rss_after = report["ready_s"], report["rss_before"], report["rss_after"]
    lat = np.array(report["latencies"])
    applied = report["changes_applied"]
    per_account = (rss_after - rss_before) / n  # MB per account
    return {
        "accounts": f"{n:,}",
        "write to Redis (bench setup)": f"{write_s:.1f} s",
        "read (SCAN+HMGET)": f"{read_s:.2f} s",
        "index build": f"{build_s:.2f} s",
        "read + build": f"{read_s + build_s:.2f} s",
        "source start → ready": f"{ready_s:.2f} s",
        "overlay apply, 100 changes": f"{overlay_ms:.1f} ms",
        "full rebuild (= per-batch cost without overlay)": f"{build_s:.2f} s",
        "compaction, 10k changes": f"{compact_s:.2f} s",
        "change → visible p50": f"{np.percentile(lat, 50) * 1000:.1f} ms" if lat.size else "n/a",
        "change → visible p99": f"{np.percentile(lat, 99) * 1000:.1f} ms" if lat.size else "n/a",
        "change → visible max": f"{lat.max() * 1000:.1f} ms" if lat.size else "n/a",
        "changes seen / applied": f"{lat.size:,} / {applied:,}",
        "source process RSS: before load / ready": f"{rss_before:,.0f} / {rss_after:,.0f} MB",
        "index RSS (ready − before)": f"{rss_after - rss_before:,.0f} MB",
        "extrapolated index RSS at 10M (this size alone)": f"{per_account * 10_000_000 / 1024:,.2f} GB",
        "_rss_after": str(rss_after),
        "_n": str(n),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--changes", type=int, default=1000, help="changes for the latency measurement")
    parser.add_argument("--rate", type=float, default=200.0, help="changes per second written")
    parser.add_argument("--source-child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.source_child:
        source_child(args.source_child, args.changes, args.rate)
        return
    if args.changes < 1:
        parser.error("--changes must be positive")
    results = [run(n, args.changes, args.rate) for n in args.accounts]
    keys = [k for k in results[0] if not k.startswith("_")]
    cmd = "python -m bench.bench_redis " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"\n### Redis index source — `{cmd}`\n")
    print(
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"redis-server on the same machine; {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n"
    )
    print("| measure | " + " | ".join(r["accounts"] for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for k in keys[1:]:
        print(f"| {k} | " + " | ".join(r[k] for r in results) + " |")
    if len(results) >= 2:
        (n1, r1), (n2, r2) = ((int(r["_n"]), float(r["_rss_after"])) for r in results[-2:])
        marginal = (r2 - r1) / (n2 - n1)  # MB per account between the two largest sizes
        at_10m = r2 + marginal * (10_000_000 - n2)
        print(
            f"\nMarginal RSS {marginal * 1024 * 1024:,.0f} bytes/account between {n1:,} and {n2:,}: "
            f"a worker at 10M accounts ≈ {at_10m / 1024:,.2f} GB (process RSS, linear extrapolation)."
        )
    print("\nTargets: 1M accounts loaded ≤ 10 s (read + build); change visible ≤ 1 s p99.")


if __name__ == "__main__":
    main()
