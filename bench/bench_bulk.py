"""Bulk endpoint latency: ``POST /vop/v1/payee-verifications/bulk`` with ``--size`` checks per request.

``python -m bench.bench_bulk [--accounts 1000000] [--size 10000] [--requests 30]``

1. Makes (or reuses, under ``bench/out/``) a demo snapshot of ``--accounts`` accounts and draws
   ``--size`` x (warm-ups + ``--requests``) realistic probes with ``bench.datagen.generate_probes``
   (default mix), so every request carries its own fresh names: no cache sees a body twice.
2. Starts ``vop serve --workers 1`` on a free loopback port with a fresh temporary VOP_DATA_DIR,
   auth on (a dev-key token with scope ``vop:bulk`` sent as ``Authorization: Bearer``), audit on,
   ``VOP_RATE_LIMIT_RPS=0`` (one benchmark client; a bulk request costs ``--size`` tokens of the
   per-client bucket) and ``VOP_ENUM_MAX_NAMES=1000000`` (the probes try several names per IBAN).
3. Sends the requests one after another over one keep-alive connection (3 unmeasured warm-ups
   first); latency is from the first byte sent to the last byte of the answer read. Every item's
   answer is compared with the probe's expected answer (``partyNameMatch``, and ``matchedName`` for
   CMTC): wrong answers must be 0. Before and after the measured requests it reads the server's
   handler time (``/metrics``) and the CPU of its processes by role. With ``--compare-env K=V`` a
   second server with that environment gets every request too, alternating which goes first.
4. Stops the server(s), then times the same handler code in this process
   (``app.routes.bulk.decode_bulk`` / ``answer_bulk`` called directly), each timed call on a body
   it has not seen: decode, validate, verify, encode, and ``answer_bulk`` with and without the
   security gate (per-item requester check, enumeration guard, audit), so the HTTP figure can be
   attributed.
5. Writes ``bench/out/bulk-<time>.json`` and prints a Markdown table.

Each server runs in its own process group and is stopped on exit, error or Ctrl-C; every step is
bounded in time; load goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pyarrow.parquet as pq

from app.exchange import encoder
from app.routes.bulk import answer_bulk, decode_bulk
from app.security.devkeys import mint_dev_token
from app.security.gate import Principal, SecurityGate
from app.security.settings import SecuritySettings
from app.service import Verifier, to_response
from app.wire import BulkRequest, BulkResponse, BulkResult
from bench.cpus import add_pinning_options, check_pinning, format_cpus, pinned
from bench.datagen import DEMO_BIC, DEMO_SEED, Probe, generate_probes
from bench.fixed_rate import percentiles
from bench.http import (
    BENCH_SECURITY_ENV,
    HOST,
    OUT,
    REQUESTING_BIC,
    ROOT,
    TOKEN_TTL_S,
    BenchError,
    Server,
    Variant,
    _vop,
    add_env_option,
    add_redis_option,
    b_environment,
    ensure_snapshot,
    machine_info,
    request_body,
    run_guarded,
    running,
    speed_note,
    with_redis,
)
from bench.netutil import free_port
from matching.model import Check

BULK_PATH = "/vop/v1/payee-verifications/bulk"
WARMUPS = 3
SCOPES = ("vop:bulk",)
_T = TypeVar("_T")
_answers = msgspec.json.Decoder(dict[str, list[dict[str, Any]]])
_envelope = msgspec.json.Decoder(BulkRequest)


def log(message: str) -> None:
    print(f"[bench.bulk {time.strftime('%H:%M:%S')}] {message}", flush=True)


def bulk_body(probes: Sequence[Probe]) -> bytes:
    return ('{"checks":[' + ",".join(request_body(p.iban, p.name, DEMO_BIC) for p in probes) + "]}").encode()


def grade(raw: bytes, probes: Sequence[Probe]) -> dict[str, Any]:
    """Compare each item's answer with the probe's label: wrong answers, item errors, examples."""
    results = _answers.decode(raw).get("results", [])
    wrong = errors = 0
    examples: list[dict[str, Any]] = []
    if len(results) != len(probes):
        return {"wrong": len(probes), "item_errors": 0, "examples": [f"{len(results)} results"]}
    for item, probe in zip(results, probes, strict=True):
        if "error" in item:
            errors += 1
            if len(examples) < 5:
                examples.append({"iban": probe.iban, "name": probe.name, "error": item["error"]})
            continue
        got = item.get("partyNameMatch")
        ok = got == probe.expected and (
            got != "CMTC" or item.get("matchedName") == probe.expected_matched_name
        )
        if not ok:
            wrong += 1
            if len(examples) < 5:
                examples.append(
                    {"iban": probe.iban, "name": probe.name, "expected": probe.expected, "answer": item}
                )
    return {"wrong": wrong, "item_errors": errors, "examples": examples}


def send(conn: http.client.HTTPConnection, body: bytes, token: str) -> tuple[float, int, bytes]:
    """One bulk request: (seconds from first byte sent to answer read, status, answer)."""
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token}",
        "X-Request-ID": str(uuid.uuid4()),
        "X-Request-Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    t0 = time.perf_counter()
    conn.request("POST", BULK_PATH, body=body, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    return time.perf_counter() - t0, resp.status, raw


def handler_seconds(port: int) -> tuple[float, int]:
    """(sum of seconds, count) of the bulk route's 200 answers in ``vop_http_request_duration_seconds``
    (``GET /metrics``): the server's own time per request, from the first request byte the app saw
    to the last answer byte it handed to granian."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    found = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for part in found:
            prefix = f"vop_http_request_duration_seconds_{part}{{"
            if line.startswith(prefix) and f'route="{BULK_PATH}"' in line and 'status="200"' in line:
                found[part] += float(line.rsplit(" ", 1)[1])
    return found["sum"], int(found["count"])


# ---------------------------------------------------------------- in-process split


def _timed(fn: Callable[[], _T]) -> tuple[float, _T]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def split(snapshot: Path, bodies: Sequence[bytes], repeats: int) -> dict[str, Any]:
    """Median ms per phase of the bulk handler over ``repeats`` runs, in this process.

    Every timed call gets a body no earlier call saw (the caches stay as cold as in the HTTP run,
    where each request carries fresh probes): a run takes three bodies, one for the phase by phase
    chain and one each for ``answer_bulk`` without and with the security gate. Bodies are reused
    (and then warmer) only when there are fewer than ``3 * (repeats + 1)``."""
    fresh = itertools.cycle(bodies)
    from app.index_holder import IndexHolder  # noqa: PLC0415 (only this step needs the index here)
    from matching.memory import tune_gc  # noqa: PLC0415
    from matching.sources.parquet import load_index  # noqa: PLC0415

    log(f"in-process split: loading {snapshot.name}")
    tune_gc()  # as in a worker (app.asgi.build_from_env); the swap below freezes the index's objects
    holder = IndexHolder()
    holder.swap(load_index(snapshot))
    verifier = Verifier(holder, [DEMO_BIC])
    phases: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="vop-bench-bulk-split-") as data_dir:
        settings = SecuritySettings(
            host=HOST,
            data_dir=data_dir,
            rate_limit_rps=0.0,
            enum_max_names=int(BENCH_SECURITY_ENV["VOP_ENUM_MAX_NAMES"]),
        )
        gate = SecurityGate.from_settings(settings)
        principal = Principal("dev-client", REQUESTING_BIC, frozenset(SCOPES))
        try:
            for _ in range(repeats + 1):  # the first run warms up, unmeasured
                body = next(fresh)
                plain_items, gated_items = decode_bulk(next(fresh)), decode_bulk(next(fresh))
                t_items, items = _timed(lambda: decode_bulk(body))  # noqa: B023
                t_val, validated = _timed(lambda: verifier.checks(items))  # type: ignore[arg-type]  # noqa: B023
                checks = [c for c in validated if isinstance(c, Check)]
                t_ver, (_, outcomes) = _timed(lambda: verifier.outcomes(checks))  # noqa: B023

                def shape(outs: list[Any] = outcomes) -> BulkResponse:
                    rs = [to_response(o) for o in outs]
                    return BulkResponse(
                        [BulkResult(r.party_name_match, r.party_id_match, r.matched_name) for r in rs]
                    )

                t_shape, response = _timed(shape)
                t_enc, _raw = _timed(lambda: encoder.encode(response))  # noqa: B023
                t_plain, _ = _timed(lambda: answer_bulk(verifier, plain_items))  # noqa: B023
                t_gate, _ = _timed(
                    lambda: answer_bulk(verifier, gated_items, gate, principal, str(uuid.uuid4()))  # noqa: B023
                )
                run = {
                    "decode_ms": t_items,
                    "validate_ms": t_val,
                    "verify_ms": t_ver,
                    "shape_ms": t_shape,
                    "encode_ms": t_enc,
                    "answer_bulk_ms": t_plain,
                    "answer_bulk_with_security_ms": t_gate,
                }
                for k, v in run.items():
                    phases.setdefault(k, []).append(v * 1000)
        finally:
            gate.close()
    med = {k: float(statistics.median(v[1:])) for k, v in phases.items()}
    med["handler_total_ms"] = med["decode_ms"] + med["answer_bulk_with_security_ms"] + med["encode_ms"]
    med["security_ms"] = med["answer_bulk_with_security_ms"] - med["answer_bulk_ms"]
    return {"repeats": repeats, "items": len(_envelope.decode(body).checks), "median_ms": med}


# ---------------------------------------------------------------- report


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    cfg, h, m = result["config"], result["http"], result["machine"]
    lat = h["latency_ms"]
    lines = [
        f"### Bulk: {cfg['size']:,} checks per request ({result['date'][:10]})",
        "",
        f"- command: `{result['command']}`",
        f"- machine: {m['nproc']} CPUs (`nproc`), {m['cpu_model']}, Linux {m['kernel']}; "
        f"Python {m['versions']['python']}, granian {m['versions']['granian']}; {speed_note(m)}",
        f"- `vop serve --workers 1`, {cfg['accounts']:,} demo accounts; {cfg['requests']} requests "
        f"of {cfg['size']:,} fresh probes each ({_f(h['body_mib'], 2)} MiB bodies), sequential over one "
        f"keep-alive connection after {WARMUPS} warm-ups",
        "- auth on (dev-key token, scope vop:bulk), audit on, VOP_RATE_LIMIT_RPS=0 (one benchmark "
        "client; a bulk request costs one token per item), VOP_ENUM_MAX_NAMES=1000000 (the probes try "
        "several names per IBAN)" + (f"; extra env {cfg['extra_env']}" if cfg["extra_env"] else ""),
        (
            f"- servers pinned to CPUs {cfg['server_cpus']} (worker and audit writer), this harness to "
            f"CPUs {cfg['load_cpus']}"
            if cfg.get("server_cpus")
            else "- not pinned: the servers, their audit writers and this harness share the CPUs"
        ),
        "",
        "| server | checks/request | requests | p50 ms | p90 ms | p99 ms | max ms | checks/s "
        "| server CPU s/request | handler ms (mean, server side) | worker CPU ms | helpers CPU ms "
        "| non-200 | item errors | wrong answers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [("B", h)]
    cmp, control = result.get("compare"), result.get("control")
    if cmp:
        rows.append(("B+env " + " ".join(f"{k}={v}" for k, v in cmp["env"].items()), cmp["http"]))
    if control:
        rows.append(("B' (B's settings again)", control["http"]))
    for name, x in rows:
        lat = x["latency_ms"]
        roles = x.get("cpu_s_per_request_by_role") or {}
        lines.append(
            f"| {name} | {cfg['size']:,} | {x['measured']} | {_f(lat.get('p50'))} | {_f(lat.get('p90'))} | "
            f"{_f(lat.get('p99'))} | {_f(lat.get('max'))} | {_f(x['checks_per_s'], 0)} | "
            f"{_f(x['server_cpu_s_per_request'], 3)} | {_f(x.get('handler_ms_mean'))} | "
            f"{_f(roles.get('workers', math.nan) * 1000)} | {_f(roles.get('helpers', math.nan) * 1000)} | "
            f"{x['non_200']} | {x['item_errors']} | **{x['wrong_answers']}** |"
        )
    lines += [
        "",
        "(handler ms: the server's own time per request, `vop_http_request_duration_seconds`; CPU per "
        "request of the worker and of its helpers, such as the audit writer.)",
    ]
    if cmp:
        lines += [
            "",
            f"B+env / B p50: **{_f(cmp['p50_ratio'], 3)}** (every server got every request, the order "
            "rotating).",
        ]
    if control:
        lines += [
            "",
            f"B' / B p50: **{_f(control['p50_ratio'], 3)}** (two servers with the same settings: the "
            "spread a B+env / B ratio must exceed to be an effect).",
        ]
    lat = h["latency_ms"]
    sp = result.get("split")
    if sp:
        s = sp["median_ms"]
        lines += [
            "",
            f"In-process time split for {sp['items']:,}-item bodies (median of {sp['repeats']}, "
            "`app.routes.bulk.decode_bulk` / `answer_bulk` called directly, no HTTP; each timed call "
            "on a body this process has not seen, so the caches are as cold as the server's):",
            "",
            "| decode ms | validate ms | verify ms | shape ms | encode ms | security ms (requester, "
            "enumeration guard, audit) | handler total ms | HTTP p50 ms | rest (server interface, "
            "transfer) ms |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {_f(s['decode_ms'])} | {_f(s['validate_ms'])} | {_f(s['verify_ms'])} | {_f(s['shape_ms'])} | "
            f"{_f(s['encode_ms'])} | {_f(s['security_ms'])} | {_f(s['handler_total_ms'])} | "
            f"{_f(lat.get('p50'))} | {_f(lat.get('p50', math.nan) - s['handler_total_ms'])} |",
            "",
            f"(`answer_bulk` = validate + verify + shape: {_f(s['answer_bulk_ms'])} ms without the "
            f"security gate, {_f(s['answer_bulk_with_security_ms'])} ms with it.)",
        ]
    lines += ["", f"Wrong answers: {h['wrong_answers']} ({'PASS' if result['pass'] else 'FAIL'}: must be 0)."]
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.bench_bulk",
        description="Latency and correctness of the bulk endpoint of vop serve (1 worker).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--accounts", type=int, default=1_000_000, help="accounts in the demo snapshot")
    p.add_argument("--size", type=int, default=10_000, help="checks per bulk request")
    p.add_argument("--requests", type=int, default=30, help=f"measured requests (after {WARMUPS} warm-ups)")
    p.add_argument("--seed", type=int, default=None, help="generator seed (default: the demo seed)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per request")
    p.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to wait for the server")
    p.add_argument("--split-repeats", type=int, default=5, help="in-process split runs (0 skips the split)")
    add_env_option(p, "--extra-env", "environment for vop serve (repeatable)")
    add_env_option(
        p,
        "--compare-env",
        "also run a second vop serve with this environment (repeatable, all in one variant), "
        "sent every request too (the order rotating); reports its p50 over B's",
    )
    add_redis_option(p)
    p.add_argument(
        "--control",
        action="store_true",
        help="also run B' (a server with B's own settings), sent every request too, and report B'/B "
        "p50: the spread between two identical servers in this run, which a --compare-env ratio must "
        "exceed to be an effect (measured 0.92-0.94 on the 2-vCPU VM)",
    )
    add_pinning_options(
        p,
        load_side="this harness (the client that builds, sends and grades the bodies)",
        why="a request's time is the server's own and not the client's share of its CPUs",
    )
    p.add_argument(
        "--json-out", type=Path, default=None, help="result file (default bench/out/bulk-<time>.json)"
    )
    return p


def _server(
    key: str,
    extra_env: dict[str, str],
    *,
    data_dir: Path,
    snapshot: Path,
    stamp: str,
    token: str,
    cpus: frozenset[int] | None = None,
) -> Server:
    """``vop serve --workers 1`` on a free port with the benchmark's security settings."""
    variant = Variant(key, "vop serve (auth on, audit on)", True, True, extra_env)
    env, settings = b_environment(variant, data_dir, None)  # one dev key (and token) for both
    port = free_port()
    command = [
        *_vop(),
        "serve",
        "--index",
        str(snapshot),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    name = {"B+env": "B-env", "B'": "B-control"}.get(key, key)
    log_path = OUT / "logs" / f"bulk-{stamp}-{name}-vop.log"
    return Server(
        key, command, port, log_path, label=variant.label, env=env, token=token, settings=settings, cpus=cpus
    )


@dataclass
class _Target:
    """One server under test and what its answers measured."""

    server: Server
    conn: http.client.HTTPConnection | None = None
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    wrong: int = 0
    item_errors: int = 0
    examples: list[Any] = field(default_factory=list)
    cpu: float = 0.0
    roles: dict[str, float] = field(default_factory=dict)
    handled: tuple[float, int] = (0.0, 0)

    def start_measuring(self) -> None:
        self.roles = self.server.cpu_by_role()
        self.handled = handler_seconds(self.server.port)

    def stop_measuring(self) -> None:
        self.roles = {k: v - self.roles.get(k, 0.0) for k, v in self.server.cpu_by_role().items()}
        total_s, total_n = handler_seconds(self.server.port)
        self.handled = (total_s - self.handled[0], total_n - self.handled[1])

    def send(self, i: int, body: bytes, batch: Sequence[Probe], token: str, *, measured: bool) -> None:
        assert self.conn is not None
        cpu0 = self.server.cpu_seconds()
        try:
            seconds, status, raw = send(self.conn, body, token)
        except (OSError, http.client.HTTPException) as exc:
            raise BenchError(
                f"{self.server.key}: bulk request {i + 1}: {type(exc).__name__}: {exc}"
            ) from None
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        if status != 200:
            self.examples.append({"status": status, "body": raw[:400].decode(errors="replace")})
            log(f"{self.server.key} request {i + 1}: HTTP {status} {raw[:200].decode(errors='replace')}")
            return
        g = grade(raw, batch)
        self.wrong += g["wrong"]
        self.item_errors += g["item_errors"]
        self.examples += g["examples"][: max(0, 10 - len(self.examples))]
        if measured:
            self.cpu += self.server.cpu_seconds() - cpu0
            self.latencies.append(seconds)
        log(
            f"{self.server.key} {'request' if measured else 'warm-up'} "
            f"{i + 1 - (WARMUPS if measured else 0)}: {seconds * 1000:,.1f} ms, wrong {g['wrong']}, "
            f"item errors {g['item_errors']}"
        )

    def summary(self, size: int, body_mib: float) -> dict[str, Any]:
        n = len(self.latencies)
        busy = sum(self.latencies)
        return {
            "measured": n,
            "statuses": self.statuses,
            "non_200": sum(v for k, v in self.statuses.items() if k != "200"),
            "latency_ms": {k: v * 1000 for k, v in percentiles(self.latencies).items()},
            "checks_per_s": size * n / busy if busy else math.nan,
            "server_cpu_s_per_request": self.cpu / n if n else math.nan,
            "cpu_s_per_request_by_role": {k: v / n for k, v in self.roles.items()} if n else {},
            "handler_ms_mean": self.handled[0] / self.handled[1] * 1000 if self.handled[1] else math.nan,
            "body_mib": body_mib,
            "wrong_answers": self.wrong,
            "item_errors": self.item_errors,
            "examples": self.examples,
        }


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    seed = DEMO_SEED if args.seed is None else args.seed
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    json_path: Path = args.json_out or OUT / f"bulk-{stamp}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    (OUT / "logs").mkdir(parents=True, exist_ok=True)
    snapshot = ensure_snapshot(args.accounts, seed, OUT)
    total = args.size * (WARMUPS + args.requests)
    log(f"drawing {total:,} probes ({WARMUPS + args.requests} requests x {args.size:,})")
    table = pq.read_table(snapshot)
    probes = generate_probes(table, total, seed=seed + 1)  # not the HTTP bench's request file
    del table
    batches = [probes[i : i + args.size] for i in range(0, total, args.size)]
    bodies = [bulk_body(b) for b in batches]
    result: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "command": "python -m bench.bench_bulk " + shlex.join(argv),
        "machine": machine_info(),
        "config": {
            "accounts": args.accounts,
            "size": args.size,
            "requests": args.requests,
            "warmups": WARMUPS,
            "seed": seed,
            "extra_env": dict(args.extra_env),
            "server_cpus": format_cpus(args.server_cpus) if args.server_cpus else None,
            "load_cpus": format_cpus(args.load_cpus) if args.load_cpus else None,
        },
        "snapshot": str(snapshot.relative_to(ROOT)),
    }
    compare = dict(args.compare_env)
    with tempfile.TemporaryDirectory(prefix="vop-bench-bulk-") as tmp, contextlib.ExitStack() as stack:
        data_dir = Path(tmp)
        token = mint_dev_token(data_dir, SCOPES, REQUESTING_BIC, TOKEN_TTL_S)

        def target(key: str, env: dict[str, str]) -> _Target:
            return _Target(
                _server(
                    key,
                    env,
                    data_dir=data_dir,
                    snapshot=snapshot,
                    stamp=stamp,
                    token=token,
                    cpus=args.server_cpus,
                )
            )

        targets = [target("B", dict(args.extra_env))]
        if compare:
            targets.append(target("B+env", {**dict(args.extra_env), **compare}))
        if args.control:
            targets.append(target("B'", dict(args.extra_env)))
        result["server_settings"] = targets[0].server.settings
        for t in targets:
            stack.enter_context(running(t.server))
        stack.enter_context(pinned(args.load_cpus))  # this harness, from here on
        result["load_cpus_seen"] = sorted(os.sched_getaffinity(0))
        for t in targets:
            waited = t.server.wait_ready(args.ready_timeout)
            log(f"{t.server.key} ready after {waited:.1f} s, RSS {t.server.rss_mib():,.0f} MiB")
            result.setdefault("startup", {})[t.server.key] = {
                "ready_s": round(waited, 2),
                "cpus": t.server.cpus_seen(),  # every thread of its processes, once ready
            }
            t.conn = http.client.HTTPConnection(HOST, t.server.port, timeout=args.timeout)
            stack.callback(t.conn.close)
        for i, (body, batch) in enumerate(zip(bodies, batches, strict=True)):
            if i == WARMUPS:
                for t in targets:
                    t.start_measuring()
            # the order rotates: each target goes first (and last) as often as the others
            k = i % len(targets)
            for t in targets[k:] + targets[:k]:
                t.send(i, body, batch, token, measured=i >= WARMUPS)
        for t in targets:
            t.stop_measuring()
        result["audit_bytes"] = sum(f.stat().st_size for f in (data_dir / "audit").rglob("*") if f.is_file())
    body_mib = sum(len(b) for b in bodies) / len(bodies) / 2**20
    result["http"] = targets[0].summary(args.size, body_mib)
    result["server_log"] = str(targets[0].server.log_path.relative_to(ROOT))
    result["server_log_problems"] = [p for t in targets for p in t.server.log_problems()]
    p50 = result["http"]["latency_ms"].get("p50")
    for t in targets[1:]:
        other = t.summary(args.size, body_mib)
        p50_other = other["latency_ms"].get("p50")
        entry = {
            "http": other,
            "p50_ratio": p50_other / p50 if p50 and p50_other else math.nan,
            "server_log": str(t.server.log_path.relative_to(ROOT)),
        }
        if t.server.key == "B+env":
            result["compare"] = {"env": compare, **entry}
        else:
            result["control"] = entry
    if args.split_repeats > 0:
        result["split"] = split(snapshot, bodies, args.split_repeats)
    result["pass"] = all(
        h["wrong_answers"] == 0
        and h["item_errors"] == 0
        and h["non_200"] == 0
        and h["measured"] == args.requests
        for h in [result["http"], *(result[k]["http"] for k in ("compare", "control") if k in result)]
    )
    json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    result["json_out"] = str(json_path)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.accounts < 1 or args.size < 1 or args.requests < 1 or args.split_repeats < 0:
        parser.error("--accounts, --size and --requests must be at least 1, --split-repeats not negative")
    pinning = check_pinning(args.server_cpus, args.load_cpus)
    if pinning:
        parser.error(pinning)
    result = run_guarded("bench.bench_bulk", lambda: with_redis(args, lambda: run(args, argv)))
    if isinstance(result, int):
        return result
    print()
    print(markdown(result))
    print()
    h = result["http"]
    log(
        f"summary: p50 {_f(h['latency_ms'].get('p50'))} ms, p99 {_f(h['latency_ms'].get('p99'))} ms, "
        f"{_f(h['checks_per_s'], 0)} checks/s, wrong answers {h['wrong_answers']}, item errors "
        f"{h['item_errors']}, non-200 {h['non_200']}; server log problems "
        f"{len(result['server_log_problems']) or 'none'}"
        + (f"; B+env / B p50 {_f(result['compare']['p50_ratio'], 3)}" if "compare" in result else "")
        + (f"; B' / B p50 {_f(result['control']['p50_ratio'], 3)}" if "control" in result else "")
    )
    log(f"wrote {result['json_out']}")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
