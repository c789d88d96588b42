"""Micro-benchmark of the name matcher on one core: checks/s per batch size and µs for a lone check.

    python bench/bench_matcher.py [--checks 20000] [--json]

Workload: distinct synthetic accounts, 60 % exact answers, 10 % typos, 10 % another first name,
20 % organisations written with the long legal form or another order. Every figure comes twice:
*cold* (every ``lru_cache`` of the matching modules cleared first, as for real bulk traffic, whose
names are distinct) and *warm* (the same checks again, answered partly from the caches).
Batch sizes 1, 64, 1024 and 10,000; also reports ``prepare_registered`` throughput (index build).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import random
import statistics
import string
import time
from collections.abc import Callable

from bench.sample_names import FIRST_NAMES, ORG_WORDS, SURNAMES
from matching import legal_forms, name_variants, normalize, policy, scorer
from matching.normalize import prepare_registered
from matching.policy import decide_names

FORMS = [
    ("GmbH", "Gesellschaft mit beschränkter Haftung"),
    ("Sp. z o.o.", "Spółka z ograniczoną odpowiedzialnością"),
    ("B.V.", "Besloten Vennootschap"),
    ("Ltd", "Limited"),
    ("S.A.", "Société Anonyme"),
]


def _word(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(5, 9))).capitalize()


def workload(n: int, seed: int = 7, exact_only: bool = False) -> tuple[list[str], list[str], list[list[str]]]:
    rng = random.Random(seed)
    queries: list[str] = []
    kinds: list[str] = []
    names: list[list[str]] = []
    for i in range(n):
        roll = 1 if exact_only else i % 10
        if roll < 8:
            first, last = rng.choice(FIRST_NAMES), f"{rng.choice(SURNAMES)} {_word(rng)}"
            reg = f"{first} {last}"
            if roll < 6:
                q = reg.upper() if roll == 0 else reg
            elif roll == 6:
                w = list(last)
                k = rng.randrange(len(w) - 1)
                w[k], w[k + 1] = w[k + 1], w[k]
                q = f"{first} {''.join(w)}"
            else:
                q = f"{rng.choice([f for f in FIRST_NAMES if f != first])} {last}"
            kinds.append("person")
        else:
            body = f"{_word(rng)} {rng.choice(ORG_WORDS)}"
            short, long = rng.choice(FORMS)
            reg = f"{body} {short}"
            q = f"{body} {long}" if roll == 8 else " ".join(reversed(body.split())) + f" {short}"
            kinds.append("organisation")
        queries.append(q)
        names.append([reg])
    return queries, kinds, names


def _clear() -> None:
    """Empty every bounded ``lru_cache`` of the matching modules (the unbounded ``functools.cache``
    ones hold the loaded data files, which a running server keeps)."""
    for module in (normalize, scorer, policy, legal_forms, name_variants):
        for obj in vars(module).values():
            if isinstance(obj, functools._lru_cache_wrapper) and obj.cache_parameters()["maxsize"]:
                obj.cache_clear()


def _best(repeat: int, body: Callable[[], None], *, cold: bool) -> float:
    times = []
    for _ in range(repeat):
        if cold:
            _clear()
        gc.collect()
        t0 = time.perf_counter()
        body()
        times.append(time.perf_counter() - t0)
    return min(times)


def _lone(
    queries: list[str], kinds: list[str], names: list[list[str]], prepared: list[list[str]]
) -> list[float]:
    out = []
    for i in range(min(2_000, len(queries))):
        t0 = time.perf_counter()
        decide_names([queries[i]], [kinds[i]], [names[i]], [prepared[i]])
        out.append((time.perf_counter() - t0) * 1e6)
    return out


def run(total: int, exact_only: bool = False, repeat: int = 3) -> dict[str, object]:
    queries, kinds, names = workload(total, exact_only=exact_only)
    t0 = time.perf_counter()
    prepared = [[p] for p in prepare_registered([n[0] for n in names], kinds)]
    prep_rate = total / (time.perf_counter() - t0)
    results: dict[str, object] = {"prepare_registered_names_per_s": round(prep_rate)}
    rows = []
    for batch in _BATCHES:
        n = min(total, 5_000 if batch == 1 else max(batch, total))
        done = (n // batch) * batch

        def body(batch: int = batch, done: int = done) -> None:
            for s in range(0, done, batch):
                e = s + batch
                decide_names(queries[s:e], kinds[s:e], names[s:e], prepared[s:e])

        row: dict[str, object] = {"batch": batch}
        for mode in ("cold", "warm"):
            dt = _best(repeat, body, cold=mode == "cold")  # warm: the caches hold this very workload
            row[f"{mode}_checks_per_s"] = round(done / dt)
            row[f"{mode}_us_per_check"] = round(dt / done * 1e6, 2)
            row[f"{mode}_ms_per_batch"] = round(dt / (done // batch) * 1e3, 3)
        rows.append(row)
    results["batches"] = rows
    _clear()
    lone = _lone(queries, kinds, names, prepared)
    results["lone_check_us_median"] = round(statistics.median(lone), 2)
    results["lone_check_us_p99"] = round(sorted(lone)[int(len(lone) * 0.99)], 2)
    warm = _lone(queries, kinds, names, prepared)
    results["lone_check_us_median_cached"] = round(statistics.median(warm), 2)
    return results


_BATCHES = (1, 64, 1024, 10_000)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="name-matcher micro-benchmark")
    ap.add_argument(
        "--checks",
        type=int,
        default=20_000,
        help=f"checks per workload (>= {_BATCHES[-1]}: the largest batch)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement, best kept (>= 1)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    if args.checks < _BATCHES[-1] or args.repeat < 1:
        ap.error(f"--checks must be at least {_BATCHES[-1]} and --repeat at least 1")
    results = {
        mix: run(args.checks, exact_only=(mix == "exact"), repeat=args.repeat) for mix in ("mixed", "exact")
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for mix, res in results.items():
        print(f"workload: {mix}")
        print(f"{'batch':>8} {'mode':>5} {'checks/s':>12} {'µs/check':>10} {'ms/batch':>10}")
        for row in res["batches"]:  # type: ignore[attr-defined]
            for mode in ("cold", "warm"):
                print(
                    f"{row['batch']:>8} {mode:>5} {row[f'{mode}_checks_per_s']:>12,} "
                    f"{row[f'{mode}_us_per_check']:>10} {row[f'{mode}_ms_per_batch']:>10}"
                )
        print(
            f"lone check: median {res['lone_check_us_median']} µs, p99 {res['lone_check_us_p99']} µs "
            f"(cached query: {res['lone_check_us_median_cached']} µs)"
        )
        print(f"prepare_registered: {res['prepare_registered_names_per_s']:,} names/s\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
