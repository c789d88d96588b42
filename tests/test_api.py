"""API tests through the real ASGI app: one per rule of the wire contract and of validation."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from app.factory import create_app
from app.settings import Settings
from matching.index import AccountIndex
from tests.conftest import (
    IBAN_BLOCKED,
    IBAN_CLOSED,
    IBAN_JOINT,
    IBAN_ORG,
    IBAN_PERSON,
    IBAN_UNKNOWN,
    NO_AUTH,
    ORG_LEI,
    body,
    headers,
)

URL = "/vop/v1/payee-verifications"
Client = TestClient[Litestar]


def post(client: Client, payload: Any, **hdrs: str) -> Any:
    return client.post(URL, json=payload, headers=headers(**hdrs))


def assert_problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    doc = resp.json()
    assert doc["code"] == code
    assert doc["status"] == status
    assert doc["type"].endswith(code)
    assert doc["title"]
    return dict(doc)


# ---- answers ---------------------------------------------------------------------------------


def test_exact_name_is_match_without_matched_name(client: Client) -> None:
    resp = post(client, body("Max Mustermann"))
    assert resp.status_code == 200
    assert resp.json() == {"partyNameMatch": "MTCH"}


def test_request_id_echoed_and_response_timestamp_added(client: Client) -> None:
    rid = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
    resp = post(client, body(), **{"X-Request-ID": rid})
    assert resp.headers["x-request-id"] == rid
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", resp.headers["x-response-timestamp"])


def test_close_match_returns_registered_name(client: Client) -> None:
    resp = post(client, body("Max Mustermen"))
    assert resp.json() == {"partyNameMatch": "CMTC", "matchedName": "Max Mustermann"}


def test_no_match_reveals_nothing(client: Client) -> None:
    assert post(client, body("Erika Schmidt")).json() == {"partyNameMatch": "NMTC"}


def test_joint_account_any_holder_matches(client: Client) -> None:
    assert post(client, body("Henrik Martínez", IBAN_JOINT)).json() == {"partyNameMatch": "MTCH"}


def test_joint_account_close_match_names_the_closest_holder(client: Client) -> None:
    resp = post(client, body("Henrik Martinex", IBAN_JOINT))
    assert resp.json() == {"partyNameMatch": "CMTC", "matchedName": "Henrik Martínez"}


def test_trade_name_matches(client: Client) -> None:
    assert post(client, body("Sonnenschein Brot", IBAN_ORG)).json() == {"partyNameMatch": "MTCH"}


@pytest.mark.parametrize("iban", [IBAN_CLOSED, IBAN_BLOCKED, IBAN_UNKNOWN])
def test_closed_blocked_and_unknown_accounts_are_noap(client: Client, iban: str) -> None:
    name = {IBAN_CLOSED: "Franziska Rossi", IBAN_BLOCKED: "Jukka Romano"}.get(iban, "Max Mustermann")
    assert post(client, body(name, iban)).json() == {"partyNameMatch": "NOAP"}


def org_id(**org: Any) -> dict[str, Any]:
    return {"organisationId": org}


@pytest.mark.parametrize(
    ("org", "expected"),
    [
        ({"lei": ORG_LEI}, "MTCH"),
        ({"lei": "5493001KJTIIGC8Y1R12"}, "NMTC"),
        ({"anyBIC": "NORDNL2AXXX"}, "MTCH"),
        ({"anyBIC": "NORDNL2A"}, "MTCH"),
        ({"anyBIC": "OTHRNL2AXXX"}, "NMTC"),
        ({"others": [{"identification": "DE123456789", "schemeNameCode": "TXID"}]}, "MTCH"),
        ({"others": [{"identification": "DE999999999", "schemeNameCode": "TXID"}]}, "NMTC"),
        ({"others": [{"identification": "HRB 1234", "schemeNameCode": "COID"}]}, "NOAP"),
        ({"lei": ORG_LEI, "anyBIC": "OTHRNL2AXXX"}, "NMTC"),
    ],
)
def test_organisation_identifier_check(client: Client, org: dict[str, Any], expected: str) -> None:
    resp = post(client, body(None, IBAN_ORG, identification=org_id(**org)))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"partyIdMatch": expected}


def test_identifier_wins_over_name(client: Client) -> None:
    resp = post(client, body("Completely Different Name", IBAN_ORG, identification=org_id(lei=ORG_LEI)))
    assert resp.json() == {"partyIdMatch": "MTCH"}


def test_identifier_on_account_without_ids_is_noap(client: Client) -> None:
    resp = post(client, body(None, IBAN_PERSON, identification=org_id(lei=ORG_LEI)))
    assert resp.json() == {"partyIdMatch": "NOAP"}


def test_identifier_check_on_closed_account_is_noap(client: Client) -> None:
    resp = post(client, body(None, IBAN_CLOSED, identification=org_id(lei=ORG_LEI)))
    assert resp.json() == {"partyIdMatch": "NOAP"}


def test_party_agent_must_be_served_here(client: Client) -> None:
    b = body()
    b["partyAgent"] = {"financialInstitutionId": {"bicfi": "OTHRDEFFXXX"}}
    assert_problem(post(client, b), 400, "FORMAT_ERROR")


def test_party_agent_eight_character_bic_is_ours(client: Client) -> None:
    b = body()
    b["partyAgent"] = {"financialInstitutionId": {"bicfi": "VOPBDEFF"}}
    assert post(client, b).json() == {"partyNameMatch": "MTCH"}


def test_lower_case_iban_is_accepted(client: Client) -> None:
    assert post(client, body(iban=IBAN_PERSON.lower())).json() == {"partyNameMatch": "MTCH"}


# ---- headers -------------------------------------------------------------------------------------


def test_missing_request_id(client: Client) -> None:
    h = headers()
    del h["X-Request-ID"]
    assert_problem(client.post(URL, json=body(), headers=h), 400, "FORMAT_ERROR")


def test_request_id_not_a_uuid(client: Client) -> None:
    assert_problem(post(client, body(), **{"X-Request-ID": "not-a-uuid"}), 400, "FORMAT_ERROR")


def test_missing_timestamp(client: Client) -> None:
    h = headers()
    del h["X-Request-Timestamp"]
    assert_problem(client.post(URL, json=body(), headers=h), 400, "TIMESTAMP_INVALID")


@pytest.mark.parametrize(
    "ts",
    [
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-12-01 10:00:00Z",
        (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+01:00"),
        (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    ],
    ids=["garbage", "bad-month", "no-T", "not-utc", "too-old"],
)
def test_invalid_timestamp(client: Client, ts: str) -> None:
    assert_problem(post(client, body(), **{"X-Request-Timestamp": ts}), 400, "TIMESTAMP_INVALID")


def test_timestamp_with_fraction_and_offset_zero_is_fine(client: Client) -> None:
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.123456789+00:00")
    assert post(client, body(), **{"X-Request-Timestamp": ts}).status_code == 200


# ---- body validation -----------------------------------------------------------------------------


def test_malformed_json(client: Client) -> None:
    resp = client.post(URL, content=b'{"party": ', headers=headers())
    assert_problem(resp, 400, "FORMAT_ERROR")


def test_json_array_instead_of_object(client: Client) -> None:
    assert_problem(post(client, [body()]), 400, "FORMAT_ERROR")


def test_wrong_type(client: Client) -> None:
    b = body()
    b["party"]["name"] = 42
    assert_problem(post(client, b), 400, "FORMAT_ERROR")


@pytest.mark.parametrize("drop", ["party", "partyAccount", "partyAgent", "requestingAgent"])
def test_missing_top_level_field(client: Client, drop: str) -> None:
    b = body()
    del b[drop]
    assert_problem(post(client, b), 400, "FORMAT_ERROR")


def test_missing_iban(client: Client) -> None:
    b = body()
    b["partyAccount"] = {}
    assert_problem(post(client, b), 400, "FORMAT_ERROR")


def test_no_name_and_no_identification(client: Client) -> None:
    assert_problem(post(client, body(None)), 400, "FORMAT_ERROR")


@pytest.mark.parametrize("name", ["", "   ", "..."], ids=["empty", "spaces", "punctuation-only"])
def test_empty_name(client: Client, name: str) -> None:
    assert_problem(post(client, body(name)), 400, "FORMAT_ERROR")


def test_name_over_140_characters(client: Client) -> None:
    assert_problem(post(client, body("A" * 141)), 400, "FORMAT_ERROR")


def test_name_of_140_characters_is_fine(client: Client) -> None:
    assert post(client, body("Max " + "M" * 136)).status_code == 200


@pytest.mark.parametrize(
    "name",
    ["Макс Мустерманн", "Μάξιμος Μουστερ", "马克斯", "Max\u0000Mustermann", "Max\nMustermann", "Max\u200bM"],
    ids=["cyrillic", "greek", "cjk", "nul", "newline", "zero-width"],
)
def test_name_outside_latin_script(client: Client, name: str) -> None:
    assert_problem(post(client, body(name)), 400, "FORMAT_ERROR")


@pytest.mark.parametrize(
    "name", ["Ärger Łukasz", "Řehoř Øster", "Zoë d'Aubigné-Nuñez", "Jürgen Groß & Söhne"]
)
def test_latin_diacritics_are_valid(client: Client, name: str) -> None:
    resp = post(client, body(name))
    assert resp.status_code == 200
    assert resp.json()["partyNameMatch"] in {"NMTC", "CMTC"}


@pytest.mark.parametrize(
    "iban",
    [
        "DE8937040044053201300",
        "DE89 3704 0044 0532 0130 00",
        "XX89370400440532013000",
        "DE00370400440532013000",
        "1234",
        "DE89370400440532013000123456789012345",
    ],
    ids=["too-short", "spaces", "unknown-country", "check-digits", "no-structure", "too-long"],
)
def test_invalid_iban(client: Client, iban: str) -> None:
    assert_problem(post(client, body(iban=iban)), 400, "FORMAT_ERROR")


@pytest.mark.parametrize("bic", ["REQB", "reqbdeffxxx", "REQBDEFFXX", "REQ1DEFFXXX"])
def test_malformed_requesting_bic(client: Client, bic: str) -> None:
    b = body()
    b["requestingAgent"] = {"financialInstitutionId": {"bicfi": bic}}
    assert_problem(post(client, b), 400, "FORMAT_ERROR")


def test_invalid_lei(client: Client) -> None:
    resp = post(client, body(None, IBAN_ORG, identification=org_id(lei="529900T8BM49AURSDO56")))
    assert_problem(resp, 400, "FORMAT_ERROR")


def test_empty_organisation_id(client: Client) -> None:
    assert_problem(post(client, body(None, IBAN_ORG, identification=org_id())), 400, "FORMAT_ERROR")


def test_body_over_size_limit(client: Client) -> None:
    b = body()
    b["padding"] = "x" * 20_000
    assert_problem(post(client, b), 413, "FORMAT_ERROR")


def test_unknown_path_is_problem(client: Client) -> None:
    assert_problem(client.get("/nope"), 404, "NOT_FOUND")


def test_wrong_method_is_problem(client: Client) -> None:
    assert_problem(client.get(URL), 405, "METHOD_NOT_ALLOWED")


def test_problem_type_is_documented(client: Client) -> None:
    doc = client.get("/vop/v1/problems/TIMESTAMP_INVALID").json()
    assert doc["code"] == "TIMESTAMP_INVALID"
    assert "RFC 3339" in doc["description"]


# ---- health and docs -----------------------------------------------------------------------------


def test_healthz(client: Client) -> None:
    assert client.get("/healthz").json() == {"status": "alive"}


def test_readyz_503_until_index_loaded(index: AccountIndex) -> None:
    gate = threading.Event()

    def slow_load() -> AccountIndex:
        gate.wait(10)
        return index

    app = create_app(Settings(), loader=slow_load, security=NO_AUTH)
    with TestClient(app) as c:
        assert c.get("/readyz").status_code == 503
        assert_problem(post(c, body()), 503, "SERVICE_UNAVAILABLE")
        gate.set()
        app.state.holder.wait(10)
        ready = c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["accounts"] == len(index)


def test_readyz_reports_failed_load() -> None:
    def broken() -> AccountIndex:
        raise ValueError("snapshot lacks required column(s): names")

    app = create_app(Settings(), loader=broken, security=NO_AUTH)
    with TestClient(app) as c:
        app.state.holder.wait(10)
        resp = c.get("/readyz")
        assert resp.status_code == 503
        assert resp.json()["status"] == "failed"


def test_openapi_documents_endpoint_examples_and_errors(client: Client) -> None:
    spec = client.get("/schema/openapi.json").json()
    op = spec["paths"][URL]["post"]
    assert {"200", "400", "405", "413", "503"} <= set(op["responses"])
    media = op["requestBody"]["content"]["application/json"]
    example = next(iter(media["examples"].values()))["value"]
    assert example["partyAccount"]["iban"]
    params = {p["name"] for p in op["parameters"]}
    assert {"X-Request-ID", "X-Request-Timestamp"} <= params
    schemas = spec["components"]["schemas"]
    assert {"Problem", "VerificationRequest", "VerificationResponse"} <= set(schemas)
    assert "FORMAT_ERROR" in schemas["Problem"]["properties"]["code"]["enum"]


def test_openapi_describes_every_served_route(app: Litestar) -> None:
    from app.openapi import build_openapi

    served = {route.path_format for route in app.routes}
    assert served == set(build_openapi()["paths"])


def test_example_request_is_valid_and_answered(client: Client) -> None:
    from app.wire import REQUEST_EXAMPLE

    resp = post(client, REQUEST_EXAMPLE)
    assert resp.status_code == 200
    assert resp.json() == {"partyNameMatch": "MTCH"}


# ---- robustness ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=15), children, max_size=4)
    ),
    max_leaves=12,
)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mutation=st.sampled_from(["party", "partyAccount", "partyAgent", "requestingAgent", "name", "iban"]),
    value=json_values,
)
def test_no_input_gives_a_5xx(client: Client, mutation: str, value: Any) -> None:
    b = body()
    if mutation == "name":
        b["party"]["name"] = value
    elif mutation == "iban":
        b["partyAccount"]["iban"] = value
    else:
        b[mutation] = value
    resp = post(client, b)
    assert resp.status_code < 500, resp.text
    if resp.status_code != 200:
        assert resp.json()["code"]


@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_no_raw_body_gives_a_5xx(client: Client, raw: bytes) -> None:
    resp = client.post(URL, content=raw, headers=headers())
    assert resp.status_code == 400
    assert resp.json()["code"] == "FORMAT_ERROR"


def test_fast_lane_serves_the_same_answers_as_litestar_routing(app: Litestar) -> None:
    from app.fastlane import fast_lane

    lane = fast_lane(app)
    with TestClient(lane) as fast, TestClient(app) as routed:  # type: ignore[arg-type]
        for payload in (body("Max Mustermann"), body("Max Mustermen"), body(iban="DE00370400440532013000")):
            a = fast.post(URL, json=payload, headers=headers())
            b = routed.post(URL, json=payload, headers=headers())
            assert (a.status_code, a.json()) == (b.status_code, b.json())
        assert fast.get("/healthz").json() == {"status": "alive"}  # everything else goes to Litestar
        assert fast.get(URL).status_code == 405
        resp = fast.post("/vop/v1/payee-verifications/bulk", json={"checks": [body()]}, headers=headers())
        assert resp.json() == {"results": [{"partyNameMatch": "MTCH"}]}
