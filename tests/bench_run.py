"""Running a benchmark module end to end from a test: ``python -m <module> ARGS --json-out FILE``
in the repository root; its JSON result and standard output are returned, and the test fails with
the run's output tail if it exits non-zero."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_bench(module: str, args: str, json_out: Path, timeout: float = 240) -> tuple[dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args.split(), "--json-out", str(json_out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(json_out.read_text())
    return result, proc.stdout
