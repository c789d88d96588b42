"""Micro-benchmark of the name matcher on one core: checks/s per batch size and µs for a lone check.

    python bench/bench_matcher.py [--checks 20000] [--json]

Workload: distinct synthetic accounts (so no cache hides the work), 60 % exact answers, 10 % typos,
10 % another first name, 20 % organisations written with the long legal form or another order.
Also reports ``prepare_registered`` throughput (index build).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import string
import time

from matching.normalize import fold, person_holders, prepare_query, prepare_registered
from matching.policy import decide_names
from matching.scorer import compare_tokens

FIRST = [
    "Lucía",
    "Pieter",
    "Mette",
    "Anouk",
    "Mihai",
    "Sébastien",
    "Gonçalo",
    "Siobhán",
    "Jürgen",
    "Tomáš",
    "Ioana",
    "Björn",
    "Krzysztof",
    "Ángela",
    "Søren",
    "Zuzana",
    "Päivi",
    "Wojciech",
    "Giuseppe",
    "László",
]
LAST = [
    "Popescu",
    "Krüger",
    "Wiśniewska",
    "Jørgensen",
    "Martínez",
    "Dvořáková",
    "Weißmann",
    "Öberg",
    "Szabó",
    "Lefèvre",
    "Ó Briain",
    "de Vries",
    "van den Berg",
    "Müller",
    "Schäfer",
    "García",
    "Nowak",
    "Esposito",
]
ORG = ["Harbour", "Seafoods", "Nordlicht", "Logistik", "Vinhos", "Douro", "Atelier", "Lumière", "Bäckerei"]
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
            first, last = rng.choice(FIRST), f"{rng.choice(LAST)} {_word(rng)}"
            reg = f"{first} {last}"
            if roll < 6:
                q = reg.upper() if roll == 0 else reg
            elif roll == 6:
                w = list(last)
                k = rng.randrange(len(w) - 1)
                w[k], w[k + 1] = w[k + 1], w[k]
                q = f"{first} {''.join(w)}"
            else:
                q = f"{rng.choice([f for f in FIRST if f != first])} {last}"
            kinds.append("person")
        else:
            body = f"{_word(rng)} {rng.choice(ORG)}"
            short, long = rng.choice(FORMS)
            reg = f"{body} {short}"
            q = f"{body} {long}" if roll == 8 else " ".join(reversed(body.split())) + f" {short}"
            kinds.append("organisation")
        queries.append(q)
        names.append([reg])
    return queries, kinds, names


def _clear() -> None:
    for f in (fold, person_holders, prepare_query, compare_tokens):
        f.cache_clear()


def run(total: int, exact_only: bool = False, repeat: int = 3) -> dict[str, object]:
    queries, kinds, names = workload(total, exact_only=exact_only)
    t0 = time.perf_counter()
    prepared = [[p] for p in prepare_registered([n[0] for n in names], kinds)]
    prep_rate = total / (time.perf_counter() - t0)
    results: dict[str, object] = {"prepare_registered_names_per_s": round(prep_rate)}
    rows = []
    for batch in (1, 64, 1024, 10_000):
        _clear()
        gc.collect()
        n = min(total, max(batch, 5_000 if batch == 1 else total))
        times = []
        for _ in range(repeat):  # best of `repeat`, caches cleared each time (distinct names)
            _clear()
            t0 = time.perf_counter()
            for s in range(0, n - batch + 1, batch):
                e = s + batch
                decide_names(queries[s:e], kinds[s:e], names[s:e], prepared[s:e])
            times.append(time.perf_counter() - t0)
        dt = min(times)
        done = (n // batch) * batch
        rows.append(
            {"batch": batch, "checks_per_s": round(done / dt), "us_per_check": round(dt / done * 1e6, 2)}
        )
    results["batches"] = rows
    _clear()
    lone = []
    for i in range(2_000):
        t0 = time.perf_counter()
        decide_names([queries[i]], [kinds[i]], [names[i]], [prepared[i]])
        lone.append((time.perf_counter() - t0) * 1e6)
    results["lone_check_us_median"] = round(statistics.median(lone), 2)
    results["lone_check_us_p99"] = round(sorted(lone)[int(len(lone) * 0.99)], 2)
    warm = []
    for i in range(2_000):
        t0 = time.perf_counter()
        decide_names([queries[i]], [kinds[i]], [names[i]], [prepared[i]])
        warm.append((time.perf_counter() - t0) * 1e6)
    results["lone_check_us_median_cached"] = round(statistics.median(warm), 2)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="name-matcher micro-benchmark")
    ap.add_argument("--checks", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    results = {
        mix: run(args.checks, exact_only=(mix == "exact"), repeat=args.repeat) for mix in ("mixed", "exact")
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for mix, res in results.items():
        print(f"workload: {mix}")
        print(f"{'batch':>8} {'checks/s':>12} {'µs/check':>10}")
        for row in res["batches"]:  # type: ignore[attr-defined]
            print(f"{row['batch']:>8} {row['checks_per_s']:>12,} {row['us_per_check']:>10}")
        print(
            f"lone check: median {res['lone_check_us_median']} µs, p99 {res['lone_check_us_p99']} µs "
            f"(cached query: {res['lone_check_us_median_cached']} µs)"
        )
        print(f"prepare_registered: {res['prepare_registered_names_per_s']:,} names/s\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
