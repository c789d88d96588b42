"""Keyed pseudonyms (keyed BLAKE2b) for IBANs and names, and the key derivation for the audit key.

BLAKE2b in keyed mode is a MAC/PRF like HMAC-SHA256 and was measured at 0.46 µs against 1.24 µs
per pseudonym; a bulk request of 10,000 checks computes 20,000 of them (enumeration guard).

The audit key never touches data directly: separate sub-keys are derived for pseudonyms and for line
MACs (``derive_key``), so a key used to compute pseudonyms for an investigation cannot forge lines.
Pseudonyms are the first 16 bytes (128 bits) of the HMAC, hex: stable for one key, so an investigator
holding the key can ask "was this IBAN/name checked?" by computing ``iban()`` / ``name()`` and grepping.

Canonical forms hashed (documented in docs/security.md):
- IBAN: spaces removed, upper case.
- name: Unicode NFKC, case-folded, split into word characters, words sorted and joined by one space
  (so spacing, punctuation, case and word order do not make a "different" name).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Sequence

PSEUDONYM_BYTES = 16
_WORD = re.compile(r"\w+")


def derive_key(master: bytes, label: str) -> bytes:
    return hmac.digest(master, b"vop/v1/" + label.encode(), "sha256")


def canonical_iban(iban: str) -> str:
    return iban.replace(" ", "").upper()


def canonical_name(name: str) -> str:
    words = _WORD.findall(unicodedata.normalize("NFKC", name).casefold())
    return " ".join(sorted(words))


#: ASCII bytes that are not word characters (``\w``) become spaces; NUL (the batch separator of
#: ``canonical_names``) and the bytes of non-ASCII characters are kept.
_ASCII_NOT_WORD = bytes(
    c if c == 0 or c >= 0x80 or chr(c).isalnum() or chr(c) == "_" else 0x20 for c in range(256)
)


def canonical_names(names: Sequence[str]) -> list[str]:
    """``canonical_name`` of each name, the batch joined by NUL (unchanged by NFKC and case folding,
    never a word character) and normalised, case-folded and cleared of ASCII non-word characters
    in one C-level pass each, so that per name only a split, a sort and a join are left. When a
    non-ASCII character that is not a word character is left (a word character is ``str.isalnum`` or
    ``_``), or a name holds a NUL, the names go one by one (10,000 names: 9.1 against 11.9 ms one by
    one, interleaved). Proven equal by hypothesis
    (``tests/test_enumeration.py``)."""
    joined = "\x00".join(names)
    if len(names) < 2 or joined.count("\x00") != len(names) - 1:
        return [canonical_name(n) for n in names]
    folded = unicodedata.normalize("NFKC", joined).casefold()
    cleaned = (
        folded.encode("utf-8", "surrogatepass").translate(_ASCII_NOT_WORD).decode("utf-8", "surrogatepass")
    )
    left = cleaned.replace(" ", "").replace("\x00", "").replace("_", "")
    if left and not left.isalnum():  # (a non-ASCII separator or symbol: the regex decides)
        return [canonical_name(n) for n in names]
    join = " ".join
    return [join(sorted(part.split())) for part in cleaned.split("\x00")]


class Pseudonymiser:
    """Keyed BLAKE2b of ``b"<kind>\\x00" + canonical form``; the hash state after the key and the
    kind prefix is made once and copied per value (0.61 against 0.93 µs a pseudonym, measured)."""

    def __init__(self, master_key: bytes) -> None:
        self._key = derive_key(master_key, "pseudonym")
        self._iban = hashlib.blake2b(b"iban\x00", key=self._key, digest_size=PSEUDONYM_BYTES)
        self._name = hashlib.blake2b(b"name\x00", key=self._key, digest_size=PSEUDONYM_BYTES)

    def iban(self, iban: str) -> str:
        h = self._iban.copy()
        h.update(canonical_iban(iban).encode())
        return h.hexdigest()

    def name(self, name: str) -> str:
        h = self._name.copy()
        h.update(canonical_name(name).encode())
        return h.hexdigest()

    def names(self, names: Sequence[str]) -> list[str]:
        """``name`` of each name, canonicalised as one batch (``canonical_names``)."""
        out: list[str] = []
        for canonical in canonical_names(names):
            h = self._name.copy()
            h.update(canonical.encode())
            out.append(h.hexdigest())
        return out

    def optional_names(self, names: Sequence[str | None]) -> list[str | None]:
        """``names``, where a missing or empty name (an identifier check's) stays None."""
        given = [n for n in names if n]
        if len(given) == len(names):
            return list(self.names(given))  # (as a list of str | None)
        pseudonyms = iter(self.names(given))
        return [next(pseudonyms) if n else None for n in names]
