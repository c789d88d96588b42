"""The compiled build (app/compiled.py, setup.py): what it lists, and what a test run imports.

``make pytest-compiled`` runs the compiled modules' tests with ``VOP_EXPECT_COMPILED=1`` against the
compiled build; there every listed module must come from its C extension, or that run tests the
sources again. Everywhere else (``make pytest``, the dev tree) none may: a stray extension next to a
source would shadow every edit of it.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from litestar.testing import TestClient

from app.compiled import COMPILED, compiled_status, is_compiled
from app.factory import create_app
from app.settings import Settings
from matching.index import AccountIndex
from tests.conftest import NO_AUTH

ROOT = Path(__file__).resolve().parents[1]
EXPECT_COMPILED = os.environ.get("VOP_EXPECT_COMPILED") == "1"


def test_every_listed_module_is_a_source_of_this_tree() -> None:
    assert len(set(COMPILED)) == len(COMPILED)
    for module in COMPILED:
        assert module.split(".")[0] in {"app", "matching"}, module
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module


def test_this_run_imports_what_it_expects() -> None:
    status = compiled_status()
    if EXPECT_COMPILED:
        assert status == dict.fromkeys(COMPILED, True)
    else:
        assert status == dict.fromkeys(COMPILED, False)
    for path in sorted(p for d in ("app", "matching") for p in (ROOT / d).rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if module not in COMPILED:  # nothing else comes compiled (a stale build's leftovers)
            assert not is_compiled(module), module


def compiled_test_files(makefile: str) -> list[str]:
    """The Makefile's ``COMPILED_TESTS`` (the files ``make pytest-compiled`` runs), continuation
    lines joined."""
    joined = makefile.replace("\\\n", " ")
    found = re.search(r"^COMPILED_TESTS\s*:=(.*)$", joined, re.MULTILINE)
    assert found is not None, "the Makefile defines no COMPILED_TESTS"
    return found.group(1).split()


def imports_module(source: str, module: str) -> bool:
    """Whether a test module's source imports ``module`` itself (``import m``, ``from m import x``,
    ``from package import m``)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            named = {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            if module in named:
                return True
        if isinstance(node, ast.Import) and any(alias.name == module for alias in node.names):
            return True
    return False


def test_the_compiled_run_tests_every_compiled_module() -> None:
    """Each module of ``COMPILED`` is imported by a test file of the compiled run, so a module added
    to the build cannot go into the image untested compiled (the list sits in the Makefile)."""
    files = compiled_test_files((ROOT / "Makefile").read_text())
    assert "tests/test_compiled.py" in files  # (the check that the run imports the build)
    for name in files:
        assert (ROOT / name).is_file(), f"COMPILED_TESTS lists {name}, which does not exist"
    sources = {name: (ROOT / name).read_text() for name in files}
    untested = [m for m in COMPILED if not any(imports_module(src, m) for src in sources.values())]
    assert untested == [], f"compiled but no test of the compiled run imports it: {untested}"


def test_the_compiled_test_check_can_tell() -> None:
    makefile = "A := 1\nCOMPILED_TESTS := tests/a.py \\\n\ttests/b.py\nB := 2\n"
    assert compiled_test_files(makefile) == ["tests/a.py", "tests/b.py"]
    assert imports_module("from matching.scorer import x\n", "matching.scorer")
    assert imports_module("import matching.scorer as s\n", "matching.scorer")
    assert not imports_module("from matching.scorer_extra import x\n", "matching.scorer")
    assert not imports_module("# from matching.scorer import x\n", "matching.scorer")
    assert imports_module("from matching import policy, scorer\n", "matching.scorer")
    assert not imports_module("from matching import policy\n", "matching.scorer")


def test_is_compiled_tells_an_extension_from_a_source() -> None:
    assert not is_compiled("json")
    assert is_compiled("msgspec._core")


def test_no_extension_module_sits_in_the_source_tree() -> None:
    stray = [p for d in ("app", "matching") for p in (ROOT / d).rglob("*.so")]
    assert stray == []


def test_the_build_hook_compiles_only_when_asked() -> None:
    """Without VOP_MYPYC, setup.py asks for no extension modules (setup() replaced by a probe)."""
    script = (
        "import runpy, sys, setuptools\n"
        "setuptools.setup = lambda **kw: print(len(kw['ext_modules']))\n"
        "runpy.run_path('setup.py')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "VOP_MYPYC"}
    plain = subprocess.run(
        [sys.executable, "-c", script], check=False, cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip() == "0"


def test_metrics_and_log_say_which_build_serves(
    settings: Settings, index: AccountIndex, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vop.server")
    with TestClient(create_app(settings, index=index, security=NO_AUTH)) as client:  # start-up reports
        text = client.get("/metrics").text
    interpreted = 0 if EXPECT_COMPILED else len(COMPILED)
    assert f"vop_hot_path_interpreted_modules {float(interpreted)}" in text.splitlines()
    said = "hot path compiled" if EXPECT_COMPILED else f"hot path from source: {interpreted} of"
    assert any(said in r.getMessage() for r in caplog.records)
