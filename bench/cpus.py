"""CPU pinning for the benchmarks: the servers on some CPUs, the load generators on the others.

On a machine where the load generator shares the server's cores, a latency tail can be the
generator's, not the server's. Pinning them apart (``--server-cpus`` / ``--load-cpus``) shows which:
a process forked while the harness runs with a CPU set inherits it, and so do its threads and
children (granian's workers, the audit writer, wrk's threads). Linux only (``os.sched_setaffinity``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager


def parse_cpus(text: str) -> frozenset[int]:
    """A CPU list as ``taskset -c`` takes it: ``0``, ``0,2``, ``1-3`` or a mix."""
    cpus: set[int] = set()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            first = int(lo)
            last = int(hi) if sep else first
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"a CPU list such as 0 or 0,2 or 1-3 expected, got {text!r}"
            ) from None
        if first < 0 or last < first:
            raise argparse.ArgumentTypeError(f"a CPU range must run upwards from 0, got {part.strip()!r}")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def format_cpus(cpus: frozenset[int]) -> str:
    """The shortest ``parse_cpus`` form of a set (runs of three or more become ranges)."""
    out: list[str] = []
    run: list[int] = []
    for cpu in [*sorted(cpus), -2]:
        if run and cpu != run[-1] + 1:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 2 else ",".join(map(str, run)))
            run = []
        run.append(cpu)
    return ",".join(out)


def check_pinning(server_cpus: frozenset[int] | None, load_cpus: frozenset[int] | None) -> str | None:
    """Why the pair cannot be used (both or neither given, each a non-empty subset of the CPUs this
    process may run on, no CPU in both), or None."""
    if (server_cpus is None) != (load_cpus is None):
        return "--server-cpus and --load-cpus go together"
    if server_cpus is None or load_cpus is None:
        return None
    allowed = os.sched_getaffinity(0)
    for flag, cpus in (("--server-cpus", server_cpus), ("--load-cpus", load_cpus)):
        if not cpus or not cpus <= allowed:
            return (
                f"{flag} {format_cpus(cpus)}: this process may run on CPUs {format_cpus(frozenset(allowed))}"
            )
    if server_cpus & load_cpus:
        return f"--server-cpus and --load-cpus share CPUs {format_cpus(server_cpus & load_cpus)}"
    return None


@contextmanager
def pinned(cpus: frozenset[int] | None) -> Iterator[None]:
    """Run the calling thread (and what it forks meanwhile) on ``cpus``; None changes nothing."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def add_pinning_options(p: argparse.ArgumentParser, *, load_side: str, why: str) -> None:
    """``--server-cpus`` and ``--load-cpus`` (checked together by ``check_pinning``): the servers
    start pinned to the first set, ``load_side`` runs on the second, so that ``why``."""
    p.add_argument(
        "--server-cpus",
        type=parse_cpus,
        default=None,
        metavar="CPUS",
        help="start every server pinned to these CPUs (taskset's list form, e.g. 0 or 0-3); with "
        f"--load-cpus, which {load_side} then run on, so that {why}",
    )
    p.add_argument(
        "--load-cpus",
        type=parse_cpus,
        default=None,
        metavar="CPUS",
        help=f"run {load_side} pinned to these CPUs (needs --server-cpus, no CPU in both)",
    )
