"""Build ``matching/data/legal_forms.csv`` from the ISO 20275 ELF code list (+ a small supplement).

Usage::

    python scripts/build_legal_forms.py [--elf ../shared/data/elf-code-list.csv] \
        [--out matching/data/legal_forms.csv]

What it does (all decisions documented in ``matching/data/README.md``):

* keeps ELF rows of the EU, EEA, Switzerland and the United Kingdom (ACTV and INAC: registered
  names keep old forms) that have at least one abbreviation;
* splits the abbreviation columns on ``;`` and on `` / ``, repairs the known glued entries (two
  ``"… & Co. X"`` forms without a ``;`` between them, e.g. DE 8Z6G
  ``UG (haftungsbeschränkt) & Co. KG AG & Co. KG``), and drops editorial notes in brackets after a
  dash (IE ``DAC – (limited by shares)`` → ``DAC``);
* takes the row's first Latin abbreviation as its canonical form, and writes one row per written
  variant (every abbreviation, the local name and the transliterated name, with and without a
  bracketed note), folded with ``matching.normalize.fold`` and with spaces dropped (the *key*);
* skips keys of one character (``I``: Swedish ideell förening, also a roman numeral) and variants of
  more than 8 words (never written out in account names);
* resolves a key claimed by several canonical forms: the supplement first, then the canonical equal
  to the key itself, then the most frequent, then alphabetical;
* adds ``legal_forms_supplement.csv`` (well-known forms the ELF list lacks, e.g. FR SARL).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from matching.normalize import fold  # noqa: E402

# The reference data sits beside the repository (../shared/data), as in CI.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# fmt: off
COUNTRIES = frozenset([
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO", "CH", "GB",
])
# fmt: on
MAX_TOKENS = 8
_DASH_NOTE = re.compile(r"\s*[–-]\s*\(.*?\)\s*$")
_BRACKETS = re.compile(r"\s*\([^)]*\)")


def split_abbreviations(field: str) -> list[str]:
    out: list[str] = []
    for part in field.split(";"):
        for raw in part.split(" / "):
            piece = _DASH_NOTE.sub("", raw).strip()
            if piece:
                out.extend(_unglue(piece))
    return out


def _unglue(text: str) -> list[str]:
    """Split "UG (haftungsbeschränkt) & Co. KG AG & Co. KG" (a missing ';') into its two forms."""
    words = text.split(" ")
    idx = [i for i, w in enumerate(words) if w == "&" and i + 1 < len(words) and words[i + 1] == "Co."]
    if len(idx) < 2:
        return [text]
    cut = idx[0] + 3  # "& Co. KG" ends two words after "&"
    return [" ".join(words[:cut]), *_unglue(" ".join(words[cut:]))]


def variants(text: str) -> list[str]:
    out = [text]
    stripped = _BRACKETS.sub("", text).strip()
    if stripped and stripped != text:
        out.append(stripped)
    return out


def key_of(text: str) -> tuple[str, int] | None:
    tokens = [t for t in fold(text).split(" ") if t and t not in ("&", ",")]
    key = "".join(tokens)
    if len(key) < 2 or key.isdigit() or len(tokens) > MAX_TOKENS:
        return None
    return key, len(tokens)


def build(elf: Path, supplement: Path) -> list[dict[str, str]]:
    claims: dict[str, Counter[str]] = defaultdict(Counter)
    info: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(
        lambda: {"kind": set(), "countries": set(), "codes": set(), "source": set()}
    )
    tokens_of: dict[str, int] = {}
    with elf.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            country = row["Country Code (ISO 3166-1)"]
            if country not in COUNTRIES:
                continue
            abbrs = split_abbreviations(row["Abbreviations Local language"]) + split_abbreviations(
                row["Abbreviations transliterated"]
            )
            keyed_abbrs = [k for a in abbrs for v in variants(a) if (k := key_of(v))]
            if not keyed_abbrs:
                continue
            canonical = min((k for k, _ in keyed_abbrs), key=len)
            names = [
                row["Entity Legal Form name Local name"],
                row["Entity Legal Form name Transliterated name (per ISO 01-140-10)"],
            ]
            written = [(k, "abbreviation") for k in keyed_abbrs] + [
                (k, "name") for n in names for v in variants(n) if (k := key_of(v))
            ]
            for (key, ntok), kind in written:
                claims[key][canonical] += 1
                tokens_of[key] = max(tokens_of.get(key, 0), ntok)
                meta = info[(key, canonical)]
                meta["kind"].add(kind)
                meta["countries"].add(country)
                meta["codes"].add(row["ELF Code"])
                meta["source"].add("elf")
    forced: dict[str, str] = {}
    with supplement.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(line for line in fh if not line.startswith("#")):
            keyed = key_of(row["written"])
            canon = key_of(row["canonical"])
            if keyed is None or canon is None:
                raise SystemExit(f"unusable supplement row: {row}")
            key, ntok = keyed
            forced[key] = canon[0]
            claims[key][canon[0]] += 1
            tokens_of[key] = max(tokens_of.get(key, 0), ntok)
            meta = info[(key, canon[0])]
            meta["kind"].add(row["kind"])
            meta["countries"].add(row["country"])
            meta["source"].add("supplement")
    rows: list[dict[str, str]] = []
    for key in sorted(claims):
        counts = claims[key]
        if key in forced:
            canonical = forced[key]
        elif key in counts:
            canonical = key
        else:
            canonical = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        meta = info[(key, canonical)]
        rows.append(
            {
                "key": key,
                "canonical": canonical,
                "tokens": str(tokens_of[key]),
                "kind": "|".join(sorted(meta["kind"])),
                "countries": "|".join(sorted(meta["countries"])),
                "elf_codes": "|".join(sorted(meta["codes"])),
                "source": "|".join(sorted(meta["source"])),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--elf", type=Path, default=SHARED_DATA / "elf-code-list.csv")
    ap.add_argument("--supplement", type=Path, default=ROOT / "matching/data/legal_forms_supplement.csv")
    ap.add_argument("--out", type=Path, default=ROOT / "matching/data/legal_forms.csv")
    args = ap.parse_args(argv)
    rows = build(args.elf, args.supplement)
    with args.out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} legal-form keys to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
