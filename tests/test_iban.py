"""The batch IBAN rule (``valid_many``) against the scalar one (``iban_problem``)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from matching.iban import IBAN_LENGTHS, iban_problem, valid_many, with_check_digits

COUNTRIES = sorted(IBAN_LENGTHS)
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@st.composite
def valid_ibans(draw: st.DrawFn) -> str:
    country = draw(st.sampled_from(COUNTRIES))
    bban = draw(st.text(ALNUM, min_size=IBAN_LENGTHS[country] - 4, max_size=IBAN_LENGTHS[country] - 4))
    return with_check_digits(country, bban)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A valid IBAN with one mistake a client makes (or none), or any short text."""
    iban = draw(valid_ibans())
    how = draw(st.sampled_from(["none", "char", "drop", "add", "lower", "swap", "space", "any", "unicode"]))
    at = draw(st.integers(0, len(iban) - 1))
    if how == "char":
        return iban[:at] + draw(st.sampled_from(ALNUM + " -\x00é")) + iban[at + 1 :]
    if how == "drop":
        return iban[:at] + iban[at + 1 :]
    if how == "add":
        return iban[:at] + draw(st.sampled_from(ALNUM)) + iban[at:]
    if how == "lower":
        return iban.lower()
    if how == "swap" and at + 1 < len(iban):
        return iban[:at] + iban[at + 1] + iban[at] + iban[at + 2 :]
    if how == "space":
        return iban[:4] + " " + iban[4:]
    if how == "any":
        return draw(st.text(ALNUM + "a-ß", max_size=40))
    if how == "unicode":
        return draw(st.text(max_size=36))
    return iban


@settings(max_examples=300, deadline=None)
@given(st.lists(mutated(), max_size=40))
def test_batch_rule_equals_the_scalar_rule(ibans: list[str]) -> None:
    assert valid_many(ibans).tolist() == [iban_problem(s) is None for s in ibans]


def test_known_cases() -> None:
    cases = {
        "DE89370400440532013000": True,
        "DE89370400440532013001": False,  # check digits
        "NL91ABNA0417164300": True,  # letters in the BBAN
        "FR1420041010050500013M02606": True,
        "MT84MALT011000012345MTLCAST001S": True,
        "de89370400440532013000": False,  # the rule takes upper case (callers upper-case first)
        "DE8937040044053201300": False,  # length for DE
        "XX89370400440532013000": False,  # country
        "DE89370400440532013000\x00": False,
        "DÉ89370400440532013000": False,
        "A" * 40: False,
        "": False,
    }
    got = valid_many(list(cases))
    assert got.dtype == np.bool_
    assert got.tolist() == list(cases.values())
    assert valid_many([]).tolist() == []
