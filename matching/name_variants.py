"""Given-name variants (nicknames, short forms) and the set of known given names.

Data: ``data/given_name_variants.csv`` built by ``scripts/build_name_variants.py`` (sources and
licences in ``data/README.md``). A pair is a variant in both directions (Bill → William and
William → Bill). Two names that only share a nickname are *not* variants of each other: William and
Robert both have "bill", yet William ≠ Robert.

Known names (the given names of that file and the surnames of ``data/known_surnames.csv``) let the
scorer refuse a "typo" that turns one real name into another.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources
from typing import Final

from matching.legal_forms import umlaut_forms
from matching.normalize import fold

__all__ = ["NameVariants", "are_variants", "is_known_given_name", "is_known_name", "load"]

DATA_FILE: Final = "given_name_variants.csv"
SURNAMES_FILE: Final = "known_surnames.csv"


@dataclass(frozen=True, slots=True)
class NameVariants:
    pairs: frozenset[tuple[str, str]]
    known: frozenset[str]
    surnames: frozenset[str]


def _spellings(name: str) -> set[str]:
    return {name, *umlaut_forms(name)}


@functools.cache
def load() -> NameVariants:
    """Load the packaged data file once (lazily, on first use)."""
    text = resources.files("matching").joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    pairs: set[tuple[str, str]] = set()
    known: set[str] = set()
    for row in csv.DictReader(text.splitlines()):
        names = _spellings(row["name"])
        known |= names
        if row["variant"]:
            variants = _spellings(row["variant"])
            known |= variants
            for a in names:
                for b in variants:
                    pairs.add((a, b))
                    pairs.add((b, a))
    surnames: set[str] = set()
    text = resources.files("matching").joinpath("data", SURNAMES_FILE).read_text(encoding="utf-8")
    for row in csv.DictReader(line for line in text.splitlines() if not line.startswith("#")):
        surnames |= _spellings(fold(row["surname"]).replace(" ", ""))
    return NameVariants(pairs=frozenset(pairs), known=frozenset(known), surnames=frozenset(surnames))


def are_variants(a: str, b: str) -> bool:
    """True when folded tokens ``a`` and ``b`` are a name and one of its short forms (either way)."""
    return (a, b) in load().pairs


def is_known_given_name(token: str) -> bool:
    return token in load().known


def is_known_name(token: str) -> bool:
    """A known given name or a known surname (``data/known_surnames.csv``)."""
    data = load()
    return token in data.known or token in data.surnames
