"""Build ``matching/data/given_name_variants.csv`` from nicknames.csv and the EU supplement.

Usage::

    python scripts/build_name_variants.py [--nicknames ../shared/data/nicknames.csv] [--out ...]

* ``nicknames.csv`` (carltonnorthern/nicknames, Apache-2.0, CRLF, English only) lists each link
  once, as ``name1,has_nickname,name2``. Every row becomes one name↔variant pair; lookups are made
  symmetric at load time (``matching.name_variants``), which is the required inversion.
  Names that only *share* a nickname (william and robert both have "bill") are **not** linked:
  only direct name↔nickname pairs are written.
* ``matching/data/given_name_variants_supplement.csv`` adds the common short forms of the main EU
  languages (Hans/Johannes, Sepp/Josef, Paco/Francisco, Pepe/José, Beppe/Giuseppe, Kasia/Katarzyna,
  Gosia/Małgorzata, …) and known given names without a listed variant (empty ``variant``).
* All names are folded with ``matching.normalize.fold`` (the same folding as at match time).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from matching.normalize import fold  # noqa: E402

# The reference data sits beside the repository (../shared/data), as in CI.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _one_token(name: str) -> str:
    return fold(name).replace(" ", "")


def build(nicknames: Path, supplement: Path) -> list[tuple[str, str, str]]:
    rows: set[tuple[str, str, str]] = set()
    with nicknames.open(encoding="utf-8", newline="") as fh:  # newline="" copes with the CRLF endings
        for rec in csv.DictReader(fh):
            name, nick = _one_token(rec["name1"]), _one_token(rec["name2"])
            if name and nick and name != nick:
                rows.add((name, nick, "nicknames.csv"))
    with supplement.open(encoding="utf-8", newline="") as fh:
        for rec in csv.DictReader(line for line in fh if not line.startswith("#")):
            name = _one_token(rec["name"])
            variants = [_one_token(v) for v in rec["variants"].split()]
            if not variants:
                rows.add((name, "", f"supplement:{rec['lang']}"))
            for var in variants:
                if var and var != name:
                    rows.add((name, var, f"supplement:{rec['lang']}"))
    return sorted(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="build given_name_variants.csv")
    ap.add_argument("--nicknames", type=Path, default=SHARED_DATA / "nicknames.csv")
    ap.add_argument(
        "--supplement", type=Path, default=ROOT / "matching/data/given_name_variants_supplement.csv"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "matching/data/given_name_variants.csv")
    args = ap.parse_args(argv)
    rows = build(args.nicknames, args.supplement)
    with args.out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["name", "variant", "source"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
