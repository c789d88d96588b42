"""The per-server runtime folder shared by granian's main process and its workers.

``vop serve`` (the parent) calls :func:`prepare_runtime_dir` *before* anything imports
``prometheus_client`` and before granian forks its workers. It creates (or empties) the folder,
exports ``VOP_RUNTIME_DIR`` and ``PROMETHEUS_MULTIPROC_DIR`` (``<dir>/metrics``) so every worker
inherits them, and :func:`cleanup_runtime_dir` removes it when the server stops.

Contents: ``metrics/*.db`` (prometheus_client multi-process files, one set per worker PID) and the
``draining`` marker (written by the parent on SIGTERM, read by every worker's readiness).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import Final

RUNTIME_ENV: Final = "VOP_RUNTIME_DIR"
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
DRAIN_MARKER: Final = "draining"
_OWNED: Final = ".vop-owned"


class RuntimeDirError(RuntimeError):
    pass


def prepare_runtime_dir(env: MutableMapping[str, str] | None = None) -> Path:
    """Create the runtime folder (``VOP_RUNTIME_DIR`` if set, else a fresh temp folder), clean
    metrics left by an earlier server and any drain marker, and export the variables."""
    env = os.environ if env is None else env
    if "prometheus_client" in sys.modules and env is os.environ and MULTIPROC_ENV not in env:
        # prometheus_client picks its value class at import: too late for multi-process mode.
        raise RuntimeDirError("prepare_runtime_dir must run before prometheus_client is imported")
    given = env.get(RUNTIME_ENV)
    if given:
        root = Path(given)
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="vop-runtime-"))
        (root / _OWNED).touch()
    metrics = Path(env.get(MULTIPROC_ENV) or root / "metrics")
    metrics.mkdir(parents=True, exist_ok=True)
    for stale in metrics.glob("*.db"):
        stale.unlink(missing_ok=True)
    (root / DRAIN_MARKER).unlink(missing_ok=True)
    env[RUNTIME_ENV] = str(root)
    env[MULTIPROC_ENV] = str(metrics)
    return root


def cleanup_runtime_dir(root: Path) -> None:
    """Remove a folder :func:`prepare_runtime_dir` created; an operator-given one is only emptied."""
    if (root / _OWNED).exists():
        shutil.rmtree(root, ignore_errors=True)
        return
    (root / DRAIN_MARKER).unlink(missing_ok=True)


def runtime_dir(env: MutableMapping[str, str] | None = None) -> Path | None:
    env = os.environ if env is None else env
    value = env.get(RUNTIME_ENV)
    return Path(value) if value else None


def drain_marker(env: MutableMapping[str, str] | None = None) -> Path | None:
    root = runtime_dir(env)
    return None if root is None else root / DRAIN_MARKER
