"""CPU pinning for the benchmarks (bench/cpus.py): the CPU-list syntax, the checks on a pair of
sets, and that a process forked while pinned runs on the set (and the harness gets its own back)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from bench.cpus import check_pinning, format_cpus, parse_cpus, pinned


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0", {0}), ("0,2", {0, 2}), ("1-3", {1, 2, 3}), ("0-1,4", {0, 1, 4}), (" 3 , 5-6", {3, 5, 6})],
)
def test_cpu_lists_parse_as_taskset_writes_them(text: str, cpus: set[int]) -> None:
    assert parse_cpus(text) == cpus
    assert parse_cpus(format_cpus(frozenset(cpus))) == cpus


@pytest.mark.parametrize("text", ["", "a", "1,", "3-1", "-1", "1-b", "0-"])
def test_bad_cpu_lists_are_usage_errors(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_cpus(text)


def test_format_cpus_writes_runs_as_ranges() -> None:
    assert format_cpus(frozenset({0, 1, 2, 3, 7, 9, 10})) == "0-3,7,9,10"
    assert format_cpus(frozenset({5})) == "5"


def test_a_pinning_needs_both_sets_apart_and_allowed() -> None:
    allowed = frozenset(os.sched_getaffinity(0))
    first = frozenset({min(allowed)})
    assert check_pinning(None, None) is None
    assert "go together" in (check_pinning(first, None) or "")
    assert "go together" in (check_pinning(None, first) or "")
    assert "share CPUs" in (check_pinning(first, first) or "")
    outside = frozenset({max(allowed) + 1})
    assert "may run on" in (check_pinning(first, outside) or "")
    assert "may run on" in (check_pinning(frozenset(), first) or "")
    if len(allowed) >= 2:
        second = frozenset({max(allowed)})
        assert check_pinning(first, second) is None


def test_a_process_forked_while_pinned_runs_on_the_set() -> None:
    before = os.sched_getaffinity(0)
    cpu = max(before)
    with pinned(frozenset({cpu})):
        assert os.sched_getaffinity(0) == {cpu}
        child = subprocess.run(
            [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
            capture_output=True,
            text=True,
            check=True,
        )
    assert child.stdout.strip() == f"[{cpu}]"
    assert os.sched_getaffinity(0) == before  # the harness's own set is back
    with pinned(None):
        assert os.sched_getaffinity(0) == before
