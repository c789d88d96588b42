"""The bulk benchmark harness runs end to end on a small snapshot (not a speed test: it checks that
``bench.bench_bulk`` starts its servers, authenticates, grades every answer and reports the
server-side figures and the interleaved comparison, here against a server whose limits are shared
through the run's own redis-server, and the control B' with B's own settings; timings are not
asserted)."""

from __future__ import annotations

import math
from pathlib import Path

from tests.bench_run import run_bench


def test_bench_bulk_runs_grades_and_compares(tmp_path: Path) -> None:
    out = tmp_path / "bulk.json"
    args = "--accounts 2000 --size 40 --requests 2 --split-repeats 1"
    args += " --redis --compare-env VOP_REDIS_URL=@redis --control"
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
