"""The bulk benchmark harness runs end to end on a small snapshot (not a speed test: it checks that
``bench.bench_bulk`` starts its servers, authenticates, grades every answer and reports the
server-side figures and the interleaved comparison, here against a server whose limits are shared
through the run's own redis-server, and the control B' with B's own settings, the servers pinned
apart from the harness where there are two CPUs; timings are not asserted)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from bench.bench_bulk import main
from tests.bench_run import run_bench


def test_bench_bulk_runs_grades_and_compares(tmp_path: Path) -> None:
    out = tmp_path / "bulk.json"
    args = "--accounts 2000 --size 40 --requests 2 --split-repeats 1"
    args += " --redis --compare-env VOP_REDIS_URL=@redis --control"
    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2  # (this machine and CI: 2 CPUs)
    if pinned:
        args += f" --server-cpus {cpus[0]} --load-cpus {cpus[1]}"
    result, stdout = run_bench("bench.bench_bulk", args, out)
    assert result["pass"] is True
    assert result["server_log_problems"] == []
    for http in (result["http"], result["compare"]["http"], result["control"]["http"]):
        assert http["measured"] == 2
        assert http["wrong_answers"] == http["item_errors"] == http["non_200"] == 0
        assert math.isfinite(http["handler_ms_mean"])
        assert http["handler_ms_mean"] > 0
        assert http["cpu_s_per_request_by_role"].keys() == {"server", "workers", "helpers"}
    assert result["compare"]["env"]["VOP_REDIS_URL"].startswith("redis://127.0.0.1:")  # --redis's server
    assert math.isfinite(result["compare"]["p50_ratio"])
    assert math.isfinite(result["control"]["p50_ratio"])  # B' has B's settings: the run's own spread
    assert "B' (B's settings again)" in stdout
    assert "B' / B p50:" in stdout
    assert result["split"]["items"] == 40
    assert "B+env VOP_REDIS_URL=redis://127.0.0.1:" in stdout
    assert "@redis" in result["command"]  # the command as given, reproducible
    assert result["machine"]["python_loop_ms"] > 0  # the per-core speed probe, in the machine line too
    assert f"Python loop {result['machine']['python_loop_ms']} ms (per-core speed)" in stdout
    if pinned:  # every thread of all three servers (workers, audit writers) on the first CPU
        assert {k: v["cpus"] for k, v in result["startup"].items()} == {
            k: [cpus[0]] for k in ("B", "B+env", "B'")
        }
        assert result["load_cpus_seen"] == [cpus[1]]
        assert f"servers pinned to CPUs {cpus[0]}" in stdout
    else:
        assert "not pinned" in stdout


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--server-cpus", "0"], "go together"),
        (["--load-cpus", "0"], "go together"),
        (["--server-cpus", "0", "--load-cpus", "0"], "share CPUs"),
        (["--server-cpus", "x"], "--server-cpus"),
    ],
)
def test_bench_bulk_refuses_bad_pinning(
    args: list[str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2  # argparse's usage error, before anything is started
    assert why in capsys.readouterr().err
