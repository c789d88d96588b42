"""The HTTP benchmark harness runs end to end on a small snapshot (not a speed test: it checks that
``bench.http`` starts both servers, drives them with wrk and the fixed-rate generator, gets 0
errors from both and writes its figures, table and chart; timings are not asserted)."""

from __future__ import annotations

import importlib
import math
import os
from pathlib import Path
from types import ModuleType

import pytest

import bench.http as bench_http
from bench.http import _own_peak_line, fixed_rate_baseline, markdown, write_chart
from tests.bench_run import run_bench


def test_bench_http_runs_both_servers_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "http.json"
    args = (
        "--accounts 2000 --probes 200 --duration 1 --warmup 1 --rounds 1 --fixed-duration 1 --sweep 0.3"
        " --baseline-own-peak"
    )
    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2  # (this machine and CI: 2 CPUs)
    if pinned:
        args += f" --server-cpus {cpus[0]} --load-cpus {cpus[1]}"
    result, _ = run_bench("bench.http", args, out)
    assert result["server_log_problems"] == {"A": [], "B": []}
    assert {r["target"] for r in result["rounds"]} == {"A", "B"}
    for r in result["rounds"]:
        assert r["errors"] == 0
        assert r["rps"] > 0
    assert math.isfinite(result["ratio_b_over_a"])
    runs = {r["target"]: r for r in result["fixed_rate"]["runs"]}
    assert runs.keys() == {"A", "B"}
    for run in runs.values():
        assert run["errors"] == 0
        assert run["completed"] > 0
        assert sum(w["n"] for w in run["timeline"]) == run["completed"]  # every answer in one window
    sweep = {r["target"]: r for r in result["fixed_sweep"]["runs"]}
    assert sweep.keys() == {"A", "B"}
    for run in sweep.values():
        assert run["fraction"] == 0.3
        assert run["errors"] == 0
        assert run["completed"] > 0
        assert 0 < run["server_cpu_us_per_request"] < 1e6
    if pinned:  # every thread of both servers on the first CPU, the load generators on the second
        assert result["startup"]["A"]["cpus"] == result["startup"]["B"]["cpus"] == [cpus[0]]
        assert result["load_cpus_seen"] == [cpus[1]]
    own = result["fixed_rate"]["own_peak_baseline"]  # A alone, at the same fraction of its own peak
    assert own["target"] == "A"
    assert own["fraction_of_own_peak"] == result["fixed_rate"]["fraction"]
    assert own["target_rate"] == pytest.approx(
        result["fixed_rate"]["fraction"] * result["median"]["A"]["rps"], abs=1
    )
    assert own["errors"] == 0
    base = result["fixed_rate_baseline"]
    assert base["offered_rate"] == runs["B"]["target_rate"]
    assert base["p99_ms"] == runs["A"]["latency_ms"]["p99"]
    table = markdown(result)
    assert "B/A = " in table
    assert "Baseline at the fixed rate: A's p99" in table
    assert "of its own peak (" in table
    assert "p99 per window ms (median / worst)" in table
    assert "Offered load sweep" in table
    assert table.count("| B | 30% |") == 1
    charts = [p for p in (out.with_suffix(".png"), out.with_suffix(".html")) if p.is_file()]
    assert len(charts) == 1  # written next to the figures
    chart = charts[0]
    assert chart.stat().st_size > 1000
    # without matplotlib: an HTML page of inline SVG, one panel per figure, the timeline included
    real_import = importlib.import_module

    def no_matplotlib(name: str, package: str | None = None) -> ModuleType:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, package)

    monkeypatch.setattr(bench_http.importlib, "import_module", no_matplotlib)
    page = write_chart(result, tmp_path / "again.json")
    assert page.suffix == ".html"
    text = page.read_text()
    assert text.count("<svg") == 5
    assert "p99 per window over time" in text
    assert "p99 against offered load" in text
    # A and B in both latency panels, the timeline and the sweep
    assert text.count("<polyline") >= 2 + 2 + 2 + 2


def _fixed_run(target: str, p99: float) -> dict[str, object]:
    return {"target": target, "target_rate": 7000.0, "latency_ms": {"p99": p99}}


@pytest.mark.parametrize(("a_p99", "meets"), [(4.2, True), (5.0, True), (7.24, False)])
def test_the_fixed_rate_baseline_says_whether_the_do_nothing_app_kept_the_bar(
    a_p99: float, meets: bool
) -> None:
    """A's p99 at B's offered rate decides whether a run can show the p99 target at all."""
    base = fixed_rate_baseline([_fixed_run("A", a_p99), _fixed_run("B", 50.0)])
    assert base == {"offered_rate": 7000.0, "p99_ms": a_p99, "meets_target": meets}
    assert fixed_rate_baseline([_fixed_run("B", 3.0)]) is None  # no run of A: no verdict


def test_the_own_peak_baseline_needs_a_fixed_rate() -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench_http.main(["--baseline-own-peak", "--fixed-fraction", "0"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    ("a_p99", "verdict"), [(4.0, "≤ 5 ms: yes)"), (8.25, "≤ 5 ms: no: the do-nothing app itself")]
)
def test_the_own_peak_line_gives_the_verdict(a_p99: float, verdict: str) -> None:
    own = {
        **_fixed_run("A", a_p99),
        "achieved_rate": 6990.0,
        "generator_limited": False,
        "server_cpu_cores": 0.96,
        "server_cpu_us_per_request": 112.0,
        "fraction_of_own_peak": 0.7,
    }
    table = "\n".join(_own_peak_line({"fixed_rate": {"own_peak_baseline": own}}))
    assert "A at 70% of its own peak (7,000 req/s offered, 6,990 achieved)" in table
    assert verdict in table
    assert _own_peak_line({"fixed_rate": {}}) == []
