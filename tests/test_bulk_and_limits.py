"""Bulk endpoint, backpressure, deadlines and micro-batching."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

import app.routes.bulk as bulk_route_module
from app.backpressure import LoadGate
from app.factory import create_app
from app.microbatch import MicroBatcher
from app.problems import ProblemError
from app.settings import Settings
from matching.index import AccountIndex
from matching.memory import collector_paused
from matching.model import Check, Outcome
from tests.conftest import (
    IBAN_CLOSED,
    IBAN_JOINT,
    IBAN_ORG,
    IBAN_PERSON,
    IBAN_UNKNOWN,
    NO_AUTH,
    body,
    headers,
)

BULK = "/vop/v1/payee-verifications/bulk"
SINGLE = "/vop/v1/payee-verifications"
Client = TestClient[Litestar]


def bulk(client: Client, checks: list[Any], **hdrs: str) -> Any:
    return client.post(BULK, json={"checks": checks}, headers=headers(**hdrs))


def test_bulk_answers_in_request_order(client: Client) -> None:
    checks = [
        body("Max Mustermann"),
        body("Henrik Martinex", IBAN_JOINT),
        body("Franziska Rossi", IBAN_CLOSED),
        body("Erika Schmidt"),
        body(None, IBAN_ORG, identification={"organisationId": {"lei": "529900T8BM49AURSDO55"}}),
        body("Max Mustermann", IBAN_UNKNOWN),
    ]
    resp = bulk(client, checks)
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"] == [
        {"partyNameMatch": "MTCH"},
        {"partyNameMatch": "CMTC", "matchedName": "Henrik Martínez"},
        {"partyNameMatch": "NOAP"},
        {"partyNameMatch": "NMTC"},
        {"partyIdMatch": "MTCH"},
        {"partyNameMatch": "NOAP"},
    ]


def test_bulk_item_errors_do_not_fail_the_batch(client: Client) -> None:
    bad_iban = body(iban="DE00370400440532013000")
    wrong_type = body()
    wrong_type["party"]["name"] = 7
    resp = bulk(client, [bad_iban, body(), wrong_type, "not an object"])
    assert resp.status_code == 200
    results = resp.json()["results"]
    assert results[1] == {"partyNameMatch": "MTCH"}
    for i in (0, 2, 3):
        assert results[i]["error"]["code"] == "FORMAT_ERROR"
        assert results[i]["error"]["detail"].startswith(f"item {i}:")
        assert "partyNameMatch" not in results[i]


def test_bulk_equals_single_answers(client: Client) -> None:
    names = ["Max Mustermann", "Max Mustermen", "M. Mustermann", "Erika Schmidt", "Mustermann, Max"]
    singles = [client.post(SINGLE, json=body(n), headers=headers()).json() for n in names]
    assert bulk(client, [body(n) for n in names]).json()["results"] == singles


def test_bulk_over_item_limit_is_413(index: AccountIndex) -> None:
    app = create_app(Settings(bulk_max_items=3), index=index, security=NO_AUTH)
    with TestClient(app) as c:
        resp = bulk(c, [body()] * 4)
        assert resp.status_code == 413
        assert resp.json()["code"] == "FORMAT_ERROR"
        assert bulk(c, [body()] * 3).status_code == 200


@pytest.mark.parametrize("payload", [{"checks": []}, {"checks": "x"}, {}, []])
def test_bulk_malformed_envelope(client: Client, payload: Any) -> None:
    resp = client.post(BULK, json=payload, headers=headers())
    assert resp.status_code == 400
    assert resp.json()["code"] == "FORMAT_ERROR"


@pytest.mark.parametrize("raw", [b"{", b'{"checks": [{"party": ', b"\xff\xfe", b'{"checks": [1, 2] '])
def test_bulk_body_that_is_not_json(client: Client, raw: bytes) -> None:
    resp = client.post(BULK, content=raw, headers=headers())
    assert resp.status_code == 400
    assert resp.json()["code"] == "FORMAT_ERROR"


def test_bulk_item_errors_keep_their_place_when_the_typed_pass_fails(client: Client) -> None:
    # One item of the wrong shape makes the one-pass typed decode fail; the rest are still answered.
    resp = client.post(
        BULK, json={"checks": [body(), {"party": 1}, body("Max Mustermen")]}, headers=headers()
    )
    results = resp.json()["results"]
    assert resp.status_code == 200
    assert results[0] == {"partyNameMatch": "MTCH"}
    assert results[1]["error"]["code"] == "FORMAT_ERROR"
    assert results[1]["error"]["detail"].startswith("item 1:")
    assert results[2]["partyNameMatch"] == "CMTC"


def test_bulk_needs_request_headers(client: Client) -> None:
    h = headers()
    del h["X-Request-Timestamp"]
    resp = client.post(BULK, json={"checks": [body()]}, headers=h)
    assert resp.status_code == 400
    assert resp.json()["code"] == "TIMESTAMP_INVALID"


def test_bulk_wrong_method(client: Client) -> None:
    resp = client.get(BULK)
    assert resp.status_code == 405
    assert resp.headers["allow"] == "POST"


def test_load_gate_sheds_beyond_bound_and_recovers() -> None:
    gate = LoadGate(2)
    gate.acquire()
    gate.acquire()
    with pytest.raises(ProblemError) as exc:
        gate.acquire()
    assert exc.value.status == 503
    assert exc.value.headers["Retry-After"] == "1"
    assert gate.shed == 1
    gate.release()
    gate.acquire()
    assert gate.in_flight == 2


def test_load_gate_admits_an_oversized_bulk_when_idle() -> None:
    gate = LoadGate(10)
    gate.acquire(50)
    with pytest.raises(ProblemError):
        gate.acquire(1)
    gate.release(50)
    assert gate.in_flight == 0


def test_service_at_capacity_answers_503(index: AccountIndex) -> None:
    app = create_app(Settings(max_in_flight=1), index=index, security=NO_AUTH)
    app.state.load_gate.acquire()  # one check already in flight
    with TestClient(app) as c:
        resp = c.post(SINGLE, json=body(), headers=headers())
        assert resp.status_code == 503
        assert resp.headers["retry-after"] == "1"
        assert resp.json()["code"] == "SERVICE_UNAVAILABLE"
    app.state.load_gate.release()


def test_deadline_exceeded_answers_error_not_late(
    index: AccountIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(Settings(deadline_ms=5, microbatch_ms=0), index=index, security=NO_AUTH)
    verifier = app.state.verifier
    real = verifier.outcomes

    def slow(checks: Any) -> tuple[int, list[Outcome]]:
        import time

        time.sleep(0.02)
        return real(checks)

    monkeypatch.setattr(verifier, "outcomes", slow)
    with TestClient(app) as c:
        resp = c.post(SINGLE, json=body(), headers=headers())
        assert resp.status_code == 503
        assert "deadline" in resp.json()["detail"]


def test_microbatcher_gathers_concurrent_checks_into_one_batch() -> None:
    calls: list[int] = []

    def run(checks: Any) -> tuple[int, list[Outcome]]:
        calls.append(len(checks))
        return 7, [Outcome("name", "MTCH", "exact") for _ in checks]

    async def main() -> list[tuple[int, Outcome]]:
        batcher = MicroBatcher(run, window_s=0.005, max_size=100)
        return await asyncio.gather(*(batcher.submit(Check(IBAN_PERSON, "x")) for _ in range(10)))

    out = asyncio.run(main())
    assert len(out) == 10
    assert calls == [10]
    assert all(version == 7 for version, _ in out)


def test_microbatcher_flushes_at_max_size_and_propagates_errors() -> None:
    calls: list[int] = []

    def run(checks: Any) -> tuple[int, list[Outcome]]:
        calls.append(len(checks))
        raise ProblemError("SERVICE_UNAVAILABLE", "index not loaded", 503)

    async def main() -> list[Any]:
        batcher = MicroBatcher(run, window_s=10.0, max_size=4)
        return await asyncio.gather(
            *(batcher.submit(Check(IBAN_PERSON, "x")) for _ in range(8)), return_exceptions=True
        )

    out = asyncio.run(main())
    assert calls == [4, 4]
    assert all(isinstance(o, ProblemError) for o in out)


def test_microbatching_on_gives_the_same_answers(index: AccountIndex) -> None:
    app = create_app(Settings(microbatch_ms=1.0), index=index, security=NO_AUTH)
    with TestClient(app) as c:
        for name, expected in [
            ("Max Mustermann", "MTCH"),
            ("Max Mustermen", "CMTC"),
            ("Erika Schmidt", "NMTC"),
        ]:
            assert c.post(SINGLE, json=body(name), headers=headers()).json()["partyNameMatch"] == expected


@pytest.mark.parametrize("url", [SINGLE, BULK])
def test_unexpected_failure_is_a_500_problem_without_internals(
    index: AccountIndex, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    app = create_app(Settings(microbatch_ms=0), index=index, security=NO_AUTH)

    def broken(checks: Any) -> tuple[int, list[Outcome]]:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(app.state.verifier, "outcomes", broken)
    payload = body() if url == SINGLE else {"checks": [body()]}
    with TestClient(app) as c:
        resp = c.post(url, json=payload, headers=headers())
    assert resp.status_code == 500
    assert resp.json()["code"] == "INTERNAL_ERROR"
    assert "secret" not in resp.text


def test_bulk_items_answer_as_single_checks_do_errors_included(client: Client) -> None:
    """The batch validation (app.validation.to_checks) end to end: every item, valid or not, gets
    what the single route answers for the same body (an error as ``item i: <the single detail>``)."""
    lower = body(iban=IBAN_PERSON.lower())
    short_bic = body()
    short_bic["partyAgent"]["financialInstitutionId"]["bicfi"] = short_bic["partyAgent"][
        "financialInstitutionId"
    ]["bicfi"][:8]
    other_psp = body()
    other_psp["partyAgent"]["financialInstitutionId"]["bicfi"] = "OTHRDEFFXXX"
    bad_requester = body()
    bad_requester["requestingAgent"]["financialInstitutionId"]["bicfi"] = "bad!"
    by_lei = body(None, identification={"organisationId": {"lei": "5493001KJTIIGC8Y1R12"}})
    items = [
        body(),
        body("李小龙"),
        body("--"),
        body("Max\nMustermann"),
        body(iban=IBAN_PERSON[:-1] + "9"),
        body(iban="DÉ89370400440532013000"),
        lower,
        short_bic,
        other_psp,
        bad_requester,
        by_lei,
        body(None),
        body("Erika Musterfrau", iban=IBAN_ORG),
        body("Max Mustermann", iban=IBAN_UNKNOWN),
    ]
    got = bulk(client, items).json()["results"]
    assert len(got) == len(items)
    for i, item in enumerate(items):
        single = client.post(SINGLE, json=item, headers=headers())
        if single.status_code == 200:
            assert got[i] == single.json(), i
        else:
            problem = single.json()
            assert got[i]["error"]["code"] == problem["code"], i
            assert got[i]["error"]["detail"] == f"item {i}: {problem['detail']}", i


def test_collector_paused_restores_the_previous_state() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError, match="boom"), collector_paused():
        raise ValueError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()


def test_bulk_requests_leave_the_collector_running(
    client: Client, index: AccountIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bulk route pauses the cyclic collector for its synchronous work only: while it answers
    the collector is off; after answers, errors and a 413, it runs again."""
    seen: list[bool] = []
    real = bulk_route_module.answer_bulk

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(bulk_route_module, "answer_bulk", spy)
    assert bulk(client, [body()] * 3).status_code == 200
    assert seen == [False]
    assert gc.isenabled()
    assert client.post(BULK, content=b"{", headers=headers()).status_code == 400
    assert gc.isenabled()
    assert bulk(client, [body(), {"party": 1}]).status_code == 200
    assert gc.isenabled()
    app = create_app(Settings(bulk_max_items=1), index=index, security=NO_AUTH)
    with TestClient(app) as c:
        assert bulk(c, [body()] * 2).status_code == 413
    assert gc.isenabled()
