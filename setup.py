"""Build hook for the optional compiled build (the project metadata is in pyproject.toml).

``VOP_MYPYC=1 pip wheel --no-build-isolation .`` compiles the modules of the request's hot path with
mypyc (part of mypy, which must be installed where the wheel is built) into C extensions that sit
next to their sources in the wheel and are imported instead of them. mypy type-checks them against
the dependencies installed for ``VOP_MYPYC_PYTHON`` (default: the interpreter running the build).
Without ``VOP_MYPYC`` (the editable dev install, the plain wheel) nothing is compiled. The module
list is ``COMPILED`` in ``app/compiled.py``; each worker's start-up log line and
``vop_hot_path_interpreted_modules`` on /metrics say what it imports.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup


def _ext_modules() -> list[object]:
    if os.environ.get("VOP_MYPYC", "") not in {"1", "true", "yes"}:
        return []
    from mypyc.build import mypycify  # noqa: PLC0415 (only a compiled build needs mypy)

    sys.path.insert(0, str(Path(__file__).parent))  # (the module list, from this tree)

    from app.compiled import COMPILED  # noqa: PLC0415

    # mypy reads the dependencies' types from the environment the wheel is for, which is not the
    # build tools' own where those are kept apart (the image's build stage: VOP_MYPYC_PYTHON).
    python = os.environ.get("VOP_MYPYC_PYTHON") or sys.executable
    sources = [m.replace(".", "/") + ".py" for m in COMPILED]
    return mypycify(["--python-executable", python, *sources], opt_level="3", debug_level="0")


setup(ext_modules=_ext_modules())
