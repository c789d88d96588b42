"""`vop eval`: scoring through the API's code path, report shape, exit codes; the dev set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.evaluate import CasesError, evaluate, read_cases

SMALL = Path(__file__).parent / "data" / "cases_small.csv"
# CI and developers have the shared reference data beside the repository.
DEV_CASES = Path(__file__).resolve().parents[1].parent / "shared" / "eval" / "dev_cases.csv"


def test_report_counts_confusion_and_categories() -> None:
    report = evaluate(read_cases(SMALL), show_progress=False)
    assert report.total == 6
    assert report.correct == 5  # T004 is deliberately mislabelled
    assert report.confusion["NMTC"]["MTCH"] == 1
    assert report.false_mtch == 1
    assert report.by_category["mislabelled"] == [0, 1]
    assert [f["case_id"] for f in report.failures] == ["T004"]


def test_cli_json_and_fail_under_exit_codes() -> None:
    cmd = [sys.executable, "-m", "app.cli", "eval", str(SMALL), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["total"] == 6
    assert doc["false_mtch"] == 1
    failed = subprocess.run([*cmd, "--fail-under", "50"], capture_output=True, timeout=120, check=False)
    assert failed.returncode == 1  # a false MTCH fails the gate whatever the accuracy


def test_inconsistent_cases_are_rejected(tmp_path: Path) -> None:
    lines = SMALL.read_text(encoding="utf-8").splitlines()
    lines.append(lines[1].replace("T001", "T999").replace("Max Mustermann,Max", "Erika Mustermann,Max"))
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CasesError, match="described differently"):
        evaluate(read_cases(bad), show_progress=False)


def test_dev_set_meets_the_bar() -> None:
    assert DEV_CASES.is_file(), f"the shared dev set is expected beside the repository: {DEV_CASES}"
    report = evaluate(read_cases(DEV_CASES), show_progress=False)
    assert report.accuracy >= 0.97
    assert report.false_mtch == 0
    assert report.cmtc_on_nmtc == 0
    assert report.matched_name_wrong == 0
    assert report.errors == 0
