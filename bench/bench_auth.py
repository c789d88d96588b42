"""In-process cost of the security gate on one core, per request.

    python -m bench.bench_auth [--n 20000] [--json]

Measures, with realistic headers (8 of them, a ~600-byte ES256 token):
- ``authenticate`` with a cached token (the steady state: a PSP reuses its token until exp);
- ``authenticate`` uncached (first sight of a token: ES256 / RS256 / EdDSA signature check);
- ``check_requester``, per-process ``rate_limit``, per-process ``enumeration_guard``;
- ``audit`` as the request pays it (queue put), and the writer thread's throughput (lines/s
  including pseudonymisation, chaining, MAC and file writes).
Keys and the JWKS are generated in a temporary directory; nothing is left behind.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from app.security.audit import AuditTrail
from app.security.gate import Principal, SecurityGate
from app.security.settings import SecuritySettings

ISSUER = "https://idp.bench"
AUDIENCE = "vop-responder"


def _per_call_us(fn: Callable[[], Any], n: int, repeats: int = 5) -> float:
    """Median over ``repeats`` runs of the mean µs per call."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def _keys() -> dict[str, tuple[Any, dict[str, Any]]]:
    made: dict[str, tuple[Any, dict[str, Any]]] = {}
    generated: list[tuple[str, Any, Any]] = [
        ("ES256", ec.generate_private_key(ec.SECP256R1()), ECAlgorithm),
        ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm),
        ("EdDSA", ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm),
    ]
    for alg, key, algo in generated:
        jwk = json.loads(algo.to_jwk(key.public_key()))
        jwk.update(kid=alg.lower(), alg=alg, use="sig")
        made[alg] = (key, jwk)
    return made


def _token(key: Any, alg: str, sub: str) -> bytes:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "scope": "vop:verify vop:bulk",
        "bic": "REQBDEFFXXX",
    }
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": alg.lower()}).encode()


def _headers(tok: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"host", b"vop.bank.example"),
        (b"content-type", b"application/json"),
        (b"content-length", b"220"),
        (b"x-request-id", b"3f0e4c1a-9a43-4b8e-8d2e-0f6a3a5d9b11"),
        (b"x-request-timestamp", b"2026-12-01T10:00:00.000Z"),
        (b"user-agent", b"psp-client/1.0"),
        (b"accept", b"application/json"),
        (b"authorization", b"Bearer " + tok),
    ]


def run(n: int) -> dict[str, float]:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        keys = _keys()
        jwks_path = Path(tmp) / "jwks.json"
        jwks_path.write_text(json.dumps({"keys": [jwk for _, jwk in keys.values()]}))
        base = SecuritySettings(
            jwt_jwks=str(jwks_path),
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            data_dir=tmp,
            audit=False,
            rate_limit_rps=1e9,
            rate_limit_burst=10**9,
        )
        cached = SecurityGate.from_settings(base, start_threads=False)
        uncached = SecurityGate.from_settings(base.replace(token_cache_size=0), start_threads=False)
        peer = ("10.0.0.9", 40000)
        es_headers = _headers(_token(keys["ES256"][0], "ES256", "bench"))
        cached.authenticate(es_headers, peer, "vop:verify")
        results["authenticate_cached_us"] = _per_call_us(
            lambda: cached.authenticate(es_headers, peer, "vop:verify"), n
        )
        for alg, (key, _) in keys.items():
            headers = _headers(_token(key, alg, "bench"))

            def first_sight(h: list[tuple[bytes, bytes]] = headers) -> None:
                uncached.authenticate(h, peer, "vop:verify")

            results[f"authenticate_uncached_{alg}_us"] = _per_call_us(
                first_sight, max(n // 20, 200), repeats=3
            )
        principal = cached.authenticate(es_headers, peer, "vop:verify")
        results["check_requester_us"] = _per_call_us(lambda: cached.check_requester(principal, "REQBDEFF"), n)
        results["rate_limit_local_us"] = _per_call_us(lambda: cached.rate_limit(principal), n)
        ibans = [f"DE89370400440532{i:06d}" for i in range(1000)]
        counter = iter(range(10**9))
        results["enumeration_guard_local_us"] = _per_call_us(
            lambda: cached.enumeration_guard(principal, ibans[next(counter) % 1000], "Max Mustermann"), n
        )
        cached.close()
        uncached.close()

        trail = AuditTrail(Path(tmp) / "audit", "b" * 40, queue_size=max(n * 6, 1024))
        bench_principal = Principal("bench", "REQBDEFFXXX", frozenset())

        def record() -> None:
            trail.record(
                request_id="3f0e4c1a-9a43-4b8e-8d2e-0f6a3a5d9b11",
                client_id=bench_principal.client_id,
                iban="DE89370400440532013000",
                name="Max Mustermann",
                code="MTCH",
                reason="exact",
                index_version=1,
                forced=False,
            )

        results["audit_record_us"] = _per_call_us(record, n)
        trail.close(timeout_s=120)
        results["audit_dropped"] = float(trail.dropped)
        # Writer throughput: n records enqueued and written (pseudonyms, chain, MAC, file) until close.
        writer = AuditTrail(Path(tmp) / "audit2", "b" * 40, queue_size=n + 16)
        start = time.perf_counter()
        for _ in range(n):
            writer.record(
                request_id="3f0e4c1a-9a43-4b8e-8d2e-0f6a3a5d9b11",
                client_id="bench",
                iban="DE89370400440532013000",
                name="Max Mustermann",
                code="MTCH",
                reason="exact",
                index_version=1,
                forced=False,
            )
        writer.close(timeout_s=120)
        results["audit_writer_lines_per_s"] = n / (time.perf_counter() - start)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=20_000, help="calls per measurement (default 20000)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    results = run(args.n)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, value in results.items():
        unit = "" if name.endswith(("_per_s", "dropped")) else " µs"
        print(f"{name:36s} {value:12,.2f}{unit}")


if __name__ == "__main__":
    main()
