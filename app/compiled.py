"""Which modules the compiled build (mypyc, ``VOP_MYPYC=1``) turns into C extensions, and which of
them this process imports compiled.

The list is what a profile of the bulk route put on the matcher and the enumeration guard, kept
where compiling measured faster (bench/RESULTS.md, "Bulk, sixth session"): the scorer's many small
functions gain most; validation and the IBAN checks (mostly calls into str, re and numpy) measured
~1 ms slower per 10,000 compiled and stay interpreted, as do the route and the index. A module is
listed only if its tests pass compiled (``make test`` runs them against the compiled build too). The
interpreted sources stay the reference: a compiled module is the same code, with its annotations
enforced at run time.
"""

from __future__ import annotations

import importlib
import importlib.machinery

COMPILED: tuple[str, ...] = (
    "matching.normalize",
    "matching.name_variants",
    "matching.legal_forms",
    "matching.scorer",
    "matching.policy",
    "matching.verify",
    "app.security.pseudonym",
    "app.security.enumeration",
)


def is_compiled(module: str) -> bool:
    """Whether ``module`` is imported from a C extension (its compiled build) in this process."""
    origin = getattr(importlib.import_module(module), "__file__", None) or ""
    return origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def compiled_status() -> dict[str, bool]:
    """``is_compiled`` for each module of ``COMPILED``, in order."""
    return {m: is_compiled(m) for m in COMPILED}
