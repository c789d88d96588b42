"""In-process cost of one verification request: the ASGI app called in a loop, no HTTP.

``python -m bench.bench_inprocess [--accounts N] [--requests N]`` builds a demo index, draws the
bench mix (60 % exact, 20 % close, 15 % no match, 5 % unknown IBAN) and times each variant:
through Litestar's app and router vs straight from the scope (the FastLane granian serves), with
auth + audit (lines sealed by the writer process, or by a thread in this process), audit off,
auth off. Micro-batching is off so each request is timed alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from litestar.types import ASGIApp

from app.factory import create_app
from app.fastlane import fast_lane
from app.routes.verification import PATH
from app.security.devkeys import mint_dev_token
from app.security.settings import SecuritySettings
from app.settings import DEMO_BIC, Settings
from app.timestamps import now_rfc3339_ms
from bench.datagen import generate_accounts, generate_probes
from matching.index import AccountIndex

VARIANTS = {  # name: (auth, audit, audit writer)
    "auth+audit (writer process)": (True, True, "process"),
    "auth+audit (writer thread)": (True, True, "thread"),
    "audit off": (True, False, "process"),
    "auth off": (False, False, "process"),
}


def bodies(table: Any, n: int) -> list[bytes]:
    return [
        json.dumps(
            {
                "party": {"name": p.name},
                "partyAccount": {"iban": p.iban},
                "partyAgent": {"financialInstitutionId": {"bicfi": DEMO_BIC}},
                "requestingAgent": {"financialInstitutionId": {"bicfi": "REQBDEFFXXX"}},
            }
        ).encode()
        for p in generate_probes(table, n)
    ]


async def drive(app: ASGIApp, token: bytes, payloads: list[bytes]) -> float:
    """Seconds per request over ``payloads``; every answer must be a 200."""
    ts = now_rfc3339_ms().encode()
    started = time.perf_counter()
    for body in payloads:
        scope: Any = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": PATH, "raw_path": PATH.encode(), "query_string": b"",
            "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
            "headers": [(b"content-type", b"application/json"), (b"authorization", b"Bearer " + token),
                        (b"x-request-id", b"3f2504e0-4f89-41d3-9a0c-0305e82c3301"),
                        (b"x-request-timestamp", ts), (b"content-length", str(len(body)).encode())],
        }  # fmt: skip
        status: list[int] = []

        async def receive(body: bytes = body) -> Any:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any, status: list[int] = status) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        if status != [200]:
            raise SystemExit(f"unexpected status {status}")
    return (time.perf_counter() - started) / len(payloads)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_inprocess", description=__doc__)
    parser.add_argument("--accounts", type=int, default=1_000_000, help="demo accounts (default 1000000)")
    parser.add_argument("--requests", type=int, default=10_000, help="requests per pass (default 10000)")
    parser.add_argument("--passes", type=int, default=3, help="passes per variant, best kept (default 3)")
    args = parser.parse_args(argv)
    print(f"building a {args.accounts:,}-account index …", flush=True)
    table = generate_accounts(args.accounts)
    index = AccountIndex.build(table)
    payloads = bodies(table, args.requests)
    print("| variant | through Litestar µs | fast lane µs |\n|---|---:|---:|")
    for name, (auth, audit, writer) in VARIANTS.items():
        with tempfile.TemporaryDirectory() as tmp:
            security = SecuritySettings(
                data_dir=tmp,
                auth=auth,
                audit=audit,
                audit_writer=writer,
                rate_limit_rps=0,
                enum_max_names=1_000_000,
            )
            app = create_app(Settings(data_dir=tmp, microbatch_ms=0), index=index, security=security)
            token = mint_dev_token(tmp, ("vop:verify",), "REQBDEFFXXX", 3600).encode()
            cost = {}
            for label, target in (("litestar", app), ("fastlane", fast_lane(app))):
                cost[label] = min(asyncio.run(drive(target, token, payloads)) for _ in range(args.passes))
            app.state.security.close()
        print(f"| {name} | {cost['litestar'] * 1e6:.1f} | {cost['fastlane'] * 1e6:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
