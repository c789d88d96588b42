"""Names → canonical folded tokens.

Two layers, shared by registered names (at index build) and by queries (per check):

1. **Character folding** (``fold`` for one string, ``fold_many`` for a batch). Unicode NFKC, lower
   case, the scheme's transliterations (ß→ss, æ→ae, ø→o, ł→l, đ→d, þ→th, …), diacritics removed
   except the German umlauts ä/ö/ü, which are kept as single characters so that the scorer can
   treat them as equal to both ``a`` and ``ae`` (``Müller`` = ``Muller`` = ``Mueller``).
   Apostrophes vanish (``O'Brien`` → ``obrien``), dots vanish inside abbreviations
   (``B.V.`` → ``bv``) and separate words otherwise (``Dr.Müller`` → ``dr müller``), ``&`` and
   ``,`` become tokens of their own, ASCII punctuation breaks words, any other non-ASCII character
   left after NFKD (combining marks, other scripts, symbols) is dropped. One function
   (``_fold_chars``: bytes translate + a few guarded replaces) does it all; ``fold`` runs it on one
   name (cached), ``fold_many`` on a whole batch joined by NUL, a few C-level passes for
   thousands of names. ``tests/test_matching_properties.py`` proves with hypothesis that both give
   byte-identical output.

2. **Token rules** (``person_holders`` / ``organisation_tokens``): titles, joint-name connectors,
   "Surname, First", surname particles, legal forms. These are dictionary look-ups on a handful of
   tokens, run once per distinct folded string (``functools.lru_cache``).

The canonical string that ``prepare_registered`` stores for a registered name:

* person: space-joined tokens; several holders written in one name ("Anna und Jan Nowak") are
  separated by `` + ``.
* organisation: space-joined body tokens, with each recognised legal form replaced by one marker
  token ``#<canonical abbreviation>`` at the position where it was found (``#gmbh``, ``#spzoo``).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from typing import Final

from matching import legal_forms

__all__ = [
    "FORM_MARKER",
    "HOLDER_SEPARATOR",
    "fold",
    "fold_many",
    "organisation_tokens",
    "person_holders",
    "person_is_canonical",
    "prepare_query",
    "prepare_registered",
]

FORM_MARKER: Final = "#"
HOLDER_SEPARATOR: Final = " + "

# Letters that Unicode does not decompose, with the transliteration the scheme expects, and the
# non-ASCII punctuation that separates words (everything else non-ASCII is deleted after NFKD).
# ä/ö/ü are handled separately (kept as umlaut characters, see module docstring); ë ï ÿ are
# plain diaeresis and fold to the bare vowel (NFKD does that).
_SPECIAL_LETTERS: Final[dict[str, str]] = {
    "ß": "ss",
    "æ": "ae",
    "ø": "o",
    "œ": "oe",
    "ł": "l",
    "đ": "d",
    "ð": "d",
    "þ": "th",
    "ı": "i",
    "ħ": "h",
    "ŧ": "t",
    "ĸ": "k",
    "ŋ": "n",
    "·": "",  # Catalan l·l (NFKC turns ŀ into l·)
    "\u2010": " ",
    "\u2011": " ",
    "\u2012": " ",
    "\u2013": " ",
    "\u2014": " ",
    "\u2015": " ",
    "«": " ",
    "»": " ",
    "„": " ",
    "“": " ",
    "”": " ",
    "•": " ",
}
#: After NFKD no precomposed ä/ö/ü is left: a vowel + U+0308 goes straight to its stand-in letter.
_UMLAUT_PLACEHOLDER: Final[dict[str, str]] = {"a\u0308": "A", "o\u0308": "O", "u\u0308": "U"}
_ALLOWED_CLASS: Final = "a-z0-9äöü&, "

# Scalar path: after NFKD the text is taken to bytes; the umlauts travel as the stand-in letters A O U
# (no upper-case ASCII is left after lower()), every other non-ASCII character (combining marks,
# other scripts, symbols) is dropped by the ASCII encoding, one bytes.translate does the rest.
_KEEP_BYTES: Final = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789&, AOU")
_BYTE_TABLE: Final = bytes(c if c in _KEEP_BYTES else 0x20 for c in range(256))
_DOT_BEFORE_WORD_B: Final = re.compile(rb"\.([a-z0-9AOU]{2})")
_SPECIAL_SET: Final = frozenset(_SPECIAL_LETTERS)

#: Batch path: the names are folded as one string, joined by NUL (which no step alters or
#: merges with a neighbour: it is a starter for NFKC/NFKD, uncased, never part of a regex match
#: here, and kept by the byte table below); a batch whose names contain NUL is folded one by one.
_BATCH_SEP: Final = "\x00"
_BATCH_BYTE_TABLE: Final = b"\x00" + _BYTE_TABLE[1:]


def _fold_chars(s: str, table: bytes) -> str:
    """The character steps of folding (everything but collapsing runs of spaces).

    Every step acts on one character or on a run within one word, so folding a NUL-joined batch
    in one go gives each name's own result (``fold_many``; proven by a hypothesis property).
    """
    s = unicodedata.normalize("NFKC", s).lower()
    if not _SPECIAL_SET.isdisjoint(s):
        for k, v in _SPECIAL_LETTERS.items():  # all values ASCII: the order does not matter
            if k in s:
                s = s.replace(k, v)
    s = unicodedata.normalize("NFKD", s)
    if s.isascii():
        b = s.encode("ascii")
    else:
        for k, v in _UMLAUT_PLACEHOLDER.items():
            if k in s:
                s = s.replace(k, v)
        b = s.encode("ascii", "ignore")
    b = b.translate(None, b"'`")
    if b"&" in b:
        b = b.replace(b"&", b" & ")
    if b"," in b:
        b = b.replace(b",", b" , ")
    if b"." in b:
        b = _DOT_BEFORE_WORD_B.sub(rb" \1", b).replace(b".", b"")
    out = b.translate(table).decode("ascii")
    if "A" in out or "O" in out or "U" in out:
        out = out.replace("A", "ä").replace("O", "ö").replace("U", "ü")
    return out


@functools.lru_cache(maxsize=262_144)
def fold(text: str) -> str:
    """Character folding of one name (scalar path). Output: tokens joined by single spaces."""
    return " ".join(_fold_chars(text, _BYTE_TABLE).split())


#: Below this many names, folding them one by one (``fold``, cached) is as fast as the batch path.
BATCH_MIN: Final = 8


def fold_many(texts: Sequence[str], *, batched: bool | None = None) -> list[str]:
    """Character folding of a batch, the same as ``[fold(t) for t in texts]``.

    Large batches are folded as one NUL-joined string (a few C-level passes instead of a dozen
    calls per name); small ones, and batches with a NUL in a name, one by one.
    """
    use_batch = len(texts) >= BATCH_MIN if batched is None else batched
    if not use_batch or not texts:
        return [fold(t) for t in texts]
    joined = _BATCH_SEP.join(texts)
    if joined.count(_BATCH_SEP) != len(texts) - 1:
        return [fold(t) for t in texts]
    out = " ".join(_fold_chars(joined, _BATCH_BYTE_TABLE).split())  # NUL is not whitespace
    out = out.replace(" " + _BATCH_SEP, _BATCH_SEP).replace(_BATCH_SEP + " ", _BATCH_SEP).strip(" ")
    return out.split(_BATCH_SEP)


# ---------------------------------------------------------------------------------------------
# Token rules
# ---------------------------------------------------------------------------------------------

#: Titles and salutations (folded). Stripped only at the start of a person's name (or of a
#: comma part), and never when nothing would be left.
# fmt: off
TITLES: Final = frozenset({
    # en
    "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "professor", "doctor", "sir", "dame", "rev", "hon",
    "lord", "lady", "mister",
    # de / at / ch
    "herr", "frau", "hr", "fr", "frl", "ing", "mag", "dipl", "diplom", "dkfm", "univ", "dipling",
    "mba", "msc", "bsc", "phd",
    # fr / be / lu
    "mme", "mlle", "mmes", "monsieur", "madame", "mademoiselle", "me",
    # es / pt
    "sr", "sra", "srta", "snr", "senor", "senora", "senorita", "dona", "dna",
    # nl / be
    "dhr", "mevr", "mw", "mej", "drs", "ir",
    # it
    "sig", "sigra", "signor", "signora", "signorina", "dott", "dottssa", "dottore", "dottoressa",
    "avv", "geom", "rag",
    # pl / cz / sk / hu / nordic
    "pan", "pani", "mgr", "inz", "mudr", "judr", "phdr", "rndr", "bc", "fru", "frk",
})
# fmt: on
#: Two-token titles as they come out of folding ("Sig.ra" → "sig ra", "Dott.ssa" → "dott ssa").
TITLE_PAIRS: Final = frozenset({("sig", "ra"), ("sig", "na"), ("dott", "ssa"), ("sr", "ta"), ("dipl", "ing")})
#: French "M." is Monsieur only when at least two name tokens follow; "M. Dupont" keeps M as an initial.
TITLE_NEEDS_TWO_AFTER: Final = frozenset({"m"})

#: Joint-name connectors between holders (folded).
CONNECTORS: Final = frozenset({"&", "and", "und", "et", "y", "e", "en", "och", "og", "i", "u", "es", "ja"})

#: Surname particles: glued to the following token so that "van den Berg" is one surname token
#: ("vandenberg"), equal to "Vandenberg". One-letter particles (Irish Ó, d', l') are not glued:
#: they cannot be told from an initial ("L. de Vries", "O. Nowak"); an apostrophe already joins
#: them ("O'Brien" → "obrien") and "O Brien" vs "O'Brien" is a split word (close match).
# fmt: off
PARTICLES: Final = frozenset({
    "van", "von", "vom", "zum", "zur", "zu", "de", "der", "den", "del", "dela", "della", "delle", "dello",
    "dei", "degli", "di", "da", "das", "dos", "do", "du", "des", "la", "le", "lo", "ten", "ter", "te",
    "het", "op", "mac", "mc", "ni", "nic", "ui", "bin", "ibn", "al", "el", "st", "ste",
})
# fmt: on


#: How many tokens must follow a title for it to be stripped (absent: not a title).
_TITLE_MIN_AFTER: Final[dict[str, int]] = {
    **dict.fromkeys(TITLES, 1),
    **dict.fromkeys(TITLE_NEEDS_TWO_AFTER, 2),
}


def _strip_titles(tokens: list[str]) -> list[str]:
    i = 0
    n = len(tokens)
    while i < n:
        if i + 1 < n and (tokens[i], tokens[i + 1]) in TITLE_PAIRS and n - i - 2 >= 1:
            i += 2
        elif n - i - 1 >= _TITLE_MIN_AFTER.get(tokens[i], n):
            i += 1
        else:
            break
    return tokens[i:]


def _glue_particles(tokens: list[str]) -> list[str]:
    out: list[str] = []
    pending = ""
    for i, tok in enumerate(tokens):
        if tok in PARTICLES and i + 1 < len(tokens):
            pending += tok
            continue
        out.append(pending + tok)
        pending = ""
    return out


def _split_holders(tokens: list[str]) -> list[list[str]]:
    """Split at connectors: "anna und jan nowak" → [[anna, nowak], [jan, nowak]].

    A split is taken only when the last holder has a surname to share (≥ 2 tokens) and every
    holder is non-empty; otherwise the connector is kept as an ordinary token ("Ortega y Gasset").
    """
    parts: list[list[str]] = [[]]
    for tok in tokens:
        if tok in CONNECTORS:
            parts.append([])
        else:
            parts[-1].append(tok)
    if len(parts) == 1:
        return parts
    if any(not p for p in parts) or len(parts[-1]) < 2:
        return [tokens]
    shared = parts[-1][1:]
    return [p + shared if len(p) == 1 else p for p in parts[:-1]] + [parts[-1]]


@functools.lru_cache(maxsize=262_144)
def person_holders(folded: str) -> tuple[tuple[str, ...], ...]:
    """Token rules for a person (or several holders written in one name)."""
    tokens = folded.split(" ") if folded else []
    if "," in tokens:
        comma_parts = [_strip_titles(_glue_particles(p)) for p in _split_on(tokens, ",") if p]
        if len(comma_parts) == 2:  # "Surname, First" → "First Surname"
            tokens = comma_parts[1] + comma_parts[0]
        else:
            tokens = [t for p in comma_parts for t in p]
    # particles first, so that "M. da Silva" counts one surname after "M" (an initial, not Monsieur)
    tokens = _strip_titles(_glue_particles(tokens))
    holders = _split_holders(tokens)
    return tuple(tuple(_strip_titles(_glue_particles(h))) for h in holders if h)


def _split_on(tokens: list[str], sep: str) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for t in tokens:
        if t == sep:
            out.append([])
        else:
            out[-1].append(t)
    return out


@functools.lru_cache(maxsize=262_144)
def organisation_tokens(folded: str) -> tuple[str, ...]:
    """Token rules for an organisation: legal forms at end / start → ``#form`` markers; connectors dropped."""
    tokens = folded.split()
    if "&" in folded or "," in folded:
        tokens = [t for t in tokens if t not in ("&", ",")]
    tokens = legal_forms.mark_forms(tokens, FORM_MARKER)
    # a connector between two words of the name ("Müller und Söhne")
    if len(tokens) > 2 and not CONNECTORS.isdisjoint(tokens[1:-1]):
        tokens = [tokens[0], *(t for t in tokens[1:-1] if t not in CONNECTORS), tokens[-1]]
    return tuple(tokens)


#: Tokens on which some person rule acts; a name without any of them is already canonical.
_PERSON_RULE_TOKENS: Final = TITLES | CONNECTORS | PARTICLES | TITLE_NEEDS_TWO_AFTER | {","}


def person_is_canonical(folded: str) -> bool:
    """True when no person rule applies to this folded name (its canonical string is itself)."""
    return _PERSON_RULE_TOKENS.isdisjoint(folded.split(" "))


def canonical(folded: str, kind: str) -> str:
    """Canonical string of one folded name for an account of ``kind``."""
    if kind != "organisation" and person_is_canonical(folded):
        return folded
    if kind == "organisation":
        return " ".join(organisation_tokens(folded))
    return HOLDER_SEPARATOR.join(" ".join(h) for h in person_holders(folded))


def prepare_registered(names: Sequence[str], kinds: Sequence[str]) -> list[str]:
    """For each registered account name (``kinds[i]`` is "person" or "organisation"), its canonical string.

    Character folding runs as one batch (``fold_many``); the token rules run once per
    distinct folded string. See the module docstring for the format.
    """
    if len(names) != len(kinds):
        raise ValueError("names and kinds differ in length")
    folded = fold_many(names)
    return [canonical(f, k) for f, k in zip(folded, kinds, strict=True)]


@functools.lru_cache(maxsize=262_144)
def prepare_query(name: str, kind: str) -> str:
    """The canonical string of what the payer typed, read with the rules of the account's kind."""
    return canonical(fold(name), kind)
