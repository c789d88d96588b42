"""Wire schemas of the inter-PSP VoP API (EPC v1.1.1 shape, DESIGN.md §1) as msgspec Structs.

Decoding checks types, presence and lengths; the rules msgspec cannot express (IBAN check digits,
BIC shape, Latin script) live in ``app.validation``. Unknown fields are ignored so that optional
fields of the scheme we do not use never reject a valid request.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

MAX_NAME = 140
NonEmpty35 = Annotated[str, msgspec.Meta(min_length=1, max_length=35)]
NameText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
IdText = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
MatchCode = Literal["MTCH", "CMTC", "NMTC", "NOAP"]


class FinancialInstitutionId(msgspec.Struct, frozen=True, gc=False):
    bicfi: Annotated[str, msgspec.Meta(min_length=1, max_length=11)]


class Agent(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    financial_institution_id: FinancialInstitutionId


class OtherId(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    identification: IdText
    scheme_name_code: Annotated[str, msgspec.Meta(min_length=1, max_length=35)]


class OrganisationId(msgspec.Struct, frozen=True, gc=False, rename={"any_bic": "anyBIC"}):
    lei: Annotated[str, msgspec.Meta(min_length=1, max_length=20)] | None = None
    any_bic: Annotated[str, msgspec.Meta(min_length=1, max_length=11)] | None = None
    others: Annotated[list[OtherId], msgspec.Meta(min_length=1, max_length=10)] | None = None


class PartyIdentification(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    organisation_id: OrganisationId


class Party(msgspec.Struct, frozen=True, gc=False):
    name: NameText | None = None
    identification: PartyIdentification | None = None


class PartyAccount(msgspec.Struct, frozen=True, gc=False):
    iban: Annotated[str, msgspec.Meta(min_length=1, max_length=34)]


class VerificationRequest(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    """``POST /vop/v1/payee-verifications`` body: the payee as the payer typed it."""

    party: Party
    party_account: PartyAccount
    party_agent: Agent
    requesting_agent: Agent


class VerificationResponse(msgspec.Struct, frozen=True, gc=False, omit_defaults=True, rename="camel"):
    """Exactly one of ``partyNameMatch`` / ``partyIdMatch``; ``matchedName`` iff ``CMTC``."""

    party_name_match: MatchCode | None = None
    party_id_match: Literal["MTCH", "NMTC", "NOAP"] | None = None
    matched_name: str | None = None


class BulkRequest(msgspec.Struct, frozen=True, gc=False):
    """``POST /vop/v1/payee-verifications/bulk``: single-check bodies, answered in order.

    Items stay raw here and are decoded one by one, so a malformed item fails alone."""

    checks: Annotated[list[msgspec.Raw], msgspec.Meta(min_length=1)]


class Problem(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """RFC 9457 problem details carrying the scheme's error ``code``."""

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None


REQUEST_EXAMPLE = {
    "party": {"name": "Max Mustermann"},
    "partyAccount": {"iban": "DE89370400440532013000"},
    "partyAgent": {"financialInstitutionId": {"bicfi": "VOPBDEFFXXX"}},
    "requestingAgent": {"financialInstitutionId": {"bicfi": "REQBDEFFXXX"}},
}


class BulkResult(msgspec.Struct, frozen=True, gc=False, omit_defaults=True, rename="camel"):
    """One bulk item: the single-check answer fields, or ``error`` with that item's problem."""

    party_name_match: MatchCode | None = None
    party_id_match: Literal["MTCH", "NMTC", "NOAP"] | None = None
    matched_name: str | None = None
    error: Problem | None = None


class BulkResponse(msgspec.Struct, frozen=True, gc=False):
    results: list[BulkResult]
