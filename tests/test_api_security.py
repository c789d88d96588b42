"""The security gate through the real routes: tokens, scopes, requester identity, rate limit,
enumeration guard and the audit trail (dev key generated at test time in a temp dir)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from app.factory import create_app
from app.security.audit import verify_audit_files
from app.security.devkeys import mint_dev_token
from app.security.gate import audit_key_for
from app.security.settings import SecuritySettings
from app.settings import Settings
from matching.index import AccountIndex
from tests.conftest import IBAN_PERSON, body, headers
from tests.test_ratelimit import redis_server

SINGLE = "/vop/v1/payee-verifications"
BULK = "/vop/v1/payee-verifications/bulk"


def make(tmp: Path, index: AccountIndex, **security: Any) -> tuple[Litestar, SecuritySettings]:
    sec = SecuritySettings(data_dir=str(tmp), audit_dir=str(tmp / "audit"), **security)
    return create_app(Settings(data_dir=str(tmp)), index=index, security=sec), sec


@pytest.fixture
def secured(tmp_path: Path, index: AccountIndex) -> Iterator[tuple[TestClient[Litestar], Path]]:
    app, _ = make(tmp_path, index)
    with TestClient(app) as client:
        yield client, tmp_path


def token(tmp: Path, scopes: tuple[str, ...] = ("vop:verify",), bic: str | None = "REQBDEFFXXX") -> str:
    return mint_dev_token(tmp, scopes, bic, 600)


def call(client: TestClient[Litestar], tok: str | None, payload: Any = None, url: str = SINGLE) -> Any:
    h = headers()
    if tok is not None:
        h["Authorization"] = f"Bearer {tok}"
    return client.post(url, json=payload if payload is not None else body(), headers=h)


def test_valid_token_is_answered(secured: tuple[TestClient[Litestar], Path]) -> None:
    client, tmp = secured
    assert call(client, token(tmp)).json() == {"partyNameMatch": "MTCH"}


@pytest.mark.parametrize("tok", [None, "garbage", "a.b.c"], ids=["missing", "garbage", "three-parts"])
def test_missing_or_invalid_token_is_401(secured: tuple[TestClient[Litestar], Path], tok: str | None) -> None:
    client, _ = secured
    resp = call(client, tok)
    assert resp.status_code == 401
    assert resp.json()["code"] == "CLIENT_INVALID"
    assert resp.headers["www-authenticate"].startswith("Bearer")


def test_token_without_verify_scope_is_403(secured: tuple[TestClient[Litestar], Path]) -> None:
    client, tmp = secured
    resp = call(client, token(tmp, ("vop:bulk",)))
    assert resp.status_code == 403
    assert resp.json()["code"] == "CLIENT_INVALID"


def test_requesting_agent_must_be_the_token_bic(secured: tuple[TestClient[Litestar], Path]) -> None:
    client, tmp = secured
    resp = call(client, token(tmp, bic="OTHRDEFFXXX"))
    assert resp.status_code == 403
    assert resp.json()["code"] == "CLIENT_INCONSISTENT"


def test_bulk_needs_bulk_scope_and_checks_each_requester(secured: tuple[TestClient[Litestar], Path]) -> None:
    client, tmp = secured
    assert call(client, token(tmp), {"checks": [body()]}, BULK).status_code == 403
    other = body()
    other["requestingAgent"] = {"financialInstitutionId": {"bicfi": "OTHRDEFFXXX"}}
    resp = call(client, token(tmp, ("vop:bulk",)), {"checks": [body(), other]}, BULK)
    assert resp.status_code == 200
    first, second = resp.json()["results"]
    assert first == {"partyNameMatch": "MTCH"}
    assert second["error"]["code"] == "CLIENT_INCONSISTENT"
    # The verdict is reached once per distinct BIC; every item it refuses names its own position.
    resp = call(client, token(tmp, ("vop:bulk",)), {"checks": [other, body(), other]}, BULK)
    errors = [r.get("error") for r in resp.json()["results"]]
    assert [e["code"] if e else None for e in errors] == ["CLIENT_INCONSISTENT", None, "CLIENT_INCONSISTENT"]
    assert errors[0]["detail"].startswith("item 0:")
    assert errors[2]["detail"].startswith("item 2:")


@pytest.mark.parametrize("shared", [False, True], ids=["per-process", "redis"])
def test_bulk_enumeration_guard_forces_noap_per_item(
    tmp_path: Path, index: AccountIndex, shared: bool
) -> None:
    """Per-process, and through Redis (whose scripts run on the gate's helper thread while the
    batch is matched): the same answers and audit."""
    with contextlib.ExitStack() as stack:
        redis = {"redis_url": stack.enter_context(redis_server()).url} if shared else {}
        app, sec = make(tmp_path, index, enum_max_names=2, **redis)
        names = ("Erika Schmidt", "Max Mustermann", "Hans Meier", "Max Mustermann")
        with TestClient(app) as client:
            resp = call(client, token(tmp_path, ("vop:bulk",)), {"checks": [body(n) for n in names]}, BULK)
            assert [r["partyNameMatch"] for r in resp.json()["results"]] == ["NMTC", "MTCH", "NOAP", "MTCH"]
            metrics = app.state.security.metrics()
            assert metrics["enumeration_forced"] == 1
            assert metrics["redis_failures"] == 0
            assert metrics["redis_healthy"] == int(shared)
        app.state.security.close()
    files = sorted((tmp_path / "audit").rglob("*.jsonl"))
    report = verify_audit_files(files, audit_key_for(sec))
    assert report.ok, report.render()
    assert report.checks == 4
    text = "".join(f.read_text(encoding="utf-8") for f in files)
    assert text.count('"enum":true') == 1


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path, index: AccountIndex) -> None:
    # Recovery as the bucket refills is covered with an injected clock in tests/test_ratelimit.py.
    app, _ = make(tmp_path, index, rate_limit_rps=0.5, rate_limit_burst=3)
    with TestClient(app) as client:
        tok = token(tmp_path)
        responses = [call(client, tok) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[3].json()["code"] == "RATE_LIMITED"
    assert int(responses[3].headers["retry-after"]) >= 1


@pytest.mark.parametrize("shared", [False, True], ids=["per-process", "redis"])
def test_enumeration_guard_forces_noap_and_is_audited(
    tmp_path: Path, index: AccountIndex, shared: bool
) -> None:
    """Per-process, and through Redis (asked from the gate's helper thread, app.security.guard_batch)."""
    with contextlib.ExitStack() as stack:
        redis = {"redis_url": stack.enter_context(redis_server()).url} if shared else {}
        app, sec = make(tmp_path, index, enum_max_names=2, **redis)
        with TestClient(app) as client:
            tok = token(tmp_path)
            answers = [
                call(client, tok, body(n)).json()["partyNameMatch"]
                for n in ("Erika Schmidt", "Max Mustermann", "Hans Meier", "Max Mustermann")
            ]
            assert app.state.security.metrics()["redis_healthy"] == int(shared)
            assert app.state.security.metrics()["redis_failures"] == 0
    assert answers[:2] == ["NMTC", "MTCH"]
    assert answers[2] == "NOAP"  # a third distinct name on the same IBAN
    assert answers[3] == "MTCH"  # a name already tried keeps its real answer
    app.state.security.close()
    files = sorted((tmp_path / "audit").rglob("*.jsonl"))
    assert files
    report = verify_audit_files(files, audit_key_for(sec))
    assert report.ok, report.render()
    text = "".join(f.read_text(encoding="utf-8") for f in files)
    assert '"enum":true' in text
    assert '"reason":"enumeration_guard"' in text
    for secret in (IBAN_PERSON, "Mustermann", "Schmidt", "Meier"):
        assert secret not in text
