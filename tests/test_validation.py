"""Batch validation (``to_checks``) against the single-check rule (``to_check``), item by item."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.problems import ProblemError
from app.validation import to_check, to_checks
from app.wire import (
    Agent,
    FinancialInstitutionId,
    OrganisationId,
    Party,
    PartyAccount,
    PartyIdentification,
    VerificationRequest,
)
from matching.iban import with_check_digits
from matching.model import Check

PSP = frozenset({"VOPBDEFFXXX"})
GOOD_IBAN = with_check_digits("DE", "370400440532013000")
IBANS = st.sampled_from(
    [GOOD_IBAN, GOOD_IBAN.lower(), GOOD_IBAN[:-1] + "1", "NL91ABNA0417164300", "DE89", "Ä" + GOOD_IBAN[1:]]
)
BICS = st.sampled_from(["VOPBDEFFXXX", "VOPBDEFF", "REQBDEFFXXX", "vopbdeff", "BAD!", "REQBDEFF"])
NAMES = st.one_of(
    st.sampled_from(["Max Mustermann", "Müller GmbH", "--", "Łukasz Żółw", "李小龙", "", "a\nb", " ."]),
    st.text(st.characters(max_codepoint=0x2FFF, exclude_categories=("Cs",)), max_size=12),
    st.none(),
)
IDENTS = st.one_of(
    st.none(),
    st.builds(
        lambda lei, bic: PartyIdentification(OrganisationId(lei=lei, any_bic=bic)),
        st.sampled_from([None, "5493001KJTIIGC8Y1R12", "5493001KJTIIGC8Y1R13"]),
        st.sampled_from([None, "VOPBDEFFXXX", "nope"]),
    ),
)


def _request(
    iban: str, name: str | None, ident: PartyIdentification | None, agent: str, req: str
) -> VerificationRequest:
    return VerificationRequest(
        party=Party(name=name, identification=ident),
        party_account=PartyAccount(iban),
        party_agent=Agent(FinancialInstitutionId(agent)),
        requesting_agent=Agent(FinancialInstitutionId(req)),
    )


REQUESTS = st.builds(_request, IBANS, NAMES, IDENTS, BICS, BICS)


def _single(request: VerificationRequest) -> Check | tuple[str, str, int]:
    try:
        return to_check(request, PSP)
    except ProblemError as err:
        return (err.code, err.detail, err.status)


def _as_compared(got: Check | ProblemError) -> Check | tuple[str, str, int]:
    return (got.code, got.detail, got.status) if isinstance(got, ProblemError) else got


@settings(max_examples=300, deadline=None)
@given(st.lists(REQUESTS, max_size=30))
def test_batch_equals_single_checks(requests: list[VerificationRequest]) -> None:
    assert [_as_compared(g) for g in to_checks(requests, PSP)] == [_single(r) for r in requests]


def test_a_bad_item_does_not_change_the_others() -> None:
    good = _request(GOOD_IBAN, "Max Mustermann", None, "VOPBDEFFXXX", "REQBDEFFXXX")
    bad_name = _request(GOOD_IBAN, "--", None, "VOPBDEFFXXX", "REQBDEFFXXX")
    bad_iban = _request(GOOD_IBAN[:-1] + "1", "Max Mustermann", None, "VOPBDEFFXXX", "REQBDEFFXXX")
    got = to_checks([good, bad_name, good, bad_iban], PSP)
    assert got[0] == got[2] == Check(GOOD_IBAN, "Max Mustermann")
    assert isinstance(got[1], ProblemError)
    assert "at least one letter" in got[1].detail
    assert isinstance(got[3], ProblemError)
    assert "mod-97" in got[3].detail
    assert to_checks([], PSP) == []
