"""verify(batch): NOAP rules, id checks, batch equals singles, CMTC carries the registered name."""

from __future__ import annotations

from matching.index import AccountIndex
from matching.model import Check
from matching.verify import verify
from tests.conftest import IBAN_BLOCKED, IBAN_CLOSED, IBAN_JOINT, IBAN_ORG, IBAN_PERSON, IBAN_UNKNOWN


def test_status_and_unknown_give_noap_with_reason(index: AccountIndex) -> None:
    out = verify(
        index,
        [
            Check(IBAN_CLOSED, "Franziska Rossi"),
            Check(IBAN_BLOCKED, "Jukka Romano"),
            Check(IBAN_UNKNOWN, "Max Mustermann"),
        ],
    )
    assert [(o.code, o.reason) for o in out] == [
        ("NOAP", "account_closed"),
        ("NOAP", "account_blocked"),
        ("NOAP", "account_unknown"),
    ]
    assert all(o.matched_name is None for o in out)


def test_matched_name_only_on_cmtc(index: AccountIndex) -> None:
    out = verify(
        index,
        [
            Check(IBAN_PERSON, "Max Mustermann"),
            Check(IBAN_PERSON, "Max Mustermen"),
            Check(IBAN_PERSON, "Erika Schmidt"),
        ],
    )
    assert [o.code for o in out] == ["MTCH", "CMTC", "NMTC"]
    assert [o.matched_name for o in out] == [None, "Max Mustermann", None]


def test_batch_equals_singles_in_order(index: AccountIndex) -> None:
    checks = [
        Check(IBAN_JOINT, "Henrik Martinez"),
        Check(IBAN_UNKNOWN, "X Y"),
        Check(IBAN_ORG, lei="529900T8BM49AURSDO55"),
        Check(IBAN_PERSON, "Max Mustermann"),
        Check(IBAN_ORG, "Nordlicht Logistik GmbH"),
    ]
    batch = verify(index, checks)
    assert batch == [verify(index, [c])[0] for c in checks]
    assert [o.kind for o in batch] == ["name", "name", "id", "name", "name"]


def test_empty_batch(index: AccountIndex) -> None:
    assert verify(index, []) == []


def test_identifier_normalisation(index: AccountIndex) -> None:
    out = verify(
        index, [Check(IBAN_ORG, others=(("TXID", "de 123.456.789"),)), Check(IBAN_ORG, any_bic="nordnl2a")]
    )
    assert [o.code for o in out] == ["MTCH", "MTCH"]
