"""IBAN structure: per-country lengths (ISO 13616 registry, SEPA area and neighbours) and mod-97."""

from __future__ import annotations

import re

# Total IBAN length per country (SWIFT IBAN registry). The SEPA scheme area plus the
# countries whose IBANs a euro-area PSP commonly meets.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip

_SHAPE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")
# A=10 … Z=35, as one str.translate table (profiled: a per-character int(ch, 36) loop was the
# largest pure-Python cost of a request).
_LETTER_DIGITS = str.maketrans({chr(c): str(c - 55) for c in range(ord("A"), ord("Z") + 1)})


def iso7064_mod97(text: str) -> int:
    """ISO 7064 MOD 97-10 remainder of upper-case alphanumerics (letters count as 10-35).

    Valid IBANs (rearranged) and LEIs (ISO 17442) leave 1."""
    return int(text.translate(_LETTER_DIGITS)) % 97


def mod97(iban: str) -> int:
    """ISO 7064 MOD 97-10 remainder of an IBAN (country + check digits moved to the end)."""
    return iso7064_mod97(iban[4:] + iban[:4])


def iban_problem(iban: str) -> str | None:
    """Why ``iban`` is not a valid IBAN, or None. Expects the electronic form (no spaces)."""
    if not _SHAPE.fullmatch(iban):
        return "IBAN must be 2 letters, 2 check digits and 11-30 upper-case letters or digits"
    expected = IBAN_LENGTHS.get(iban[:2])
    if expected is None:
        return f"IBAN country {iban[:2]} is not supported"
    if len(iban) != expected:
        return f"IBAN for {iban[:2]} must have {expected} characters, got {len(iban)}"
    if mod97(iban) != 1:
        return "IBAN check digits are wrong (mod-97)"
    return None


def with_check_digits(country: str, bban: str) -> str:
    """Build a valid IBAN from a country code and a BBAN by computing the check digits."""
    remainder = mod97(f"{country}00{bban}")
    return f"{country}{98 - remainder:02d}{bban}"
