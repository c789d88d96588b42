"""Shared fixtures: a small hand-made index and the real ASGI app around it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from app.factory import create_app
from app.security.settings import SecuritySettings
from app.settings import DEMO_BIC, Settings
from matching.iban import with_check_digits
from matching.index import AccountIndex
from matching.sources.parquet import SNAPSHOT_SCHEMA

IBAN_PERSON = "DE89370400440532013000"
IBAN_JOINT = with_check_digits("FR", "20041010050500013M02606")
IBAN_ORG = with_check_digits("NL", "ABNA0417164300")
IBAN_CLOSED = with_check_digits("DE", "500105175407324931")
IBAN_BLOCKED = with_check_digits("ES", "21000418450200051332")
IBAN_UNKNOWN = with_check_digits("DE", "370400440532013001")
ORG_LEI = "529900T8BM49AURSDO55"
ORG_BIC = "NORDNL2AXXX"

ACCOUNTS: list[dict[str, Any]] = [
    {
        "iban": IBAN_PERSON,
        "names": ["Max Mustermann"],
        "type": "person",
        "status": "active",
        "lei": None,
        "any_bic": None,
        "org_ids": [],
    },
    {
        "iban": IBAN_JOINT,
        "names": ["Ioana Martínez", "Henrik Martínez"],
        "type": "person",
        "status": "active",
        "lei": None,
        "any_bic": None,
        "org_ids": [],
    },
    {
        "iban": IBAN_ORG,
        "names": ["Nordlicht Logistik GmbH", "Sonnenschein Brot"],
        "type": "organisation",
        "status": "active",
        "lei": ORG_LEI,
        "any_bic": ORG_BIC,
        "org_ids": ["TXID:DE123456789"],
    },
    {
        "iban": IBAN_CLOSED,
        "names": ["Franziska Rossi"],
        "type": "person",
        "status": "closed",
        "lei": None,
        "any_bic": None,
        "org_ids": [],
    },
    {
        "iban": IBAN_BLOCKED,
        "names": ["Jukka Romano"],
        "type": "person",
        "status": "blocked",
        "lei": None,
        "any_bic": None,
        "org_ids": [],
    },
]


def accounts_table(rows: list[dict[str, Any]] = ACCOUNTS) -> pa.Table:
    return pa.Table.from_pylist(
        rows,
        schema=SNAPSHOT_SCHEMA,
    )


@pytest.fixture(scope="session")
def index() -> AccountIndex:
    return AccountIndex.build(accounts_table(), source="test")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(psp_bics=(DEMO_BIC,))


# API tests that are not about security run with auth and audit off (allowed on loopback);
# tests/test_api_security.py covers the gate through the same routes.
NO_AUTH = SecuritySettings(auth=False, audit=False, rate_limit_rps=0, enum_max_names=1_000_000)


@pytest.fixture(scope="session")
def app(settings: Settings, index: AccountIndex) -> Litestar:
    return create_app(settings, index=index, security=NO_AUTH)


@pytest.fixture(params=["asgi", "rsgi"])
def client(app: Litestar, request: pytest.FixtureRequest) -> Iterator[TestClient[Litestar]]:
    """The app through Litestar's TestClient (ASGI), and the same app as granian's RSGI target
    (app.rsgi, in process): every API test runs over both interfaces."""
    if request.param == "rsgi":
        from app.rsgi import RsgiApp
        from tests.rsgi_client import RsgiTestClient

        with RsgiTestClient(RsgiApp(app)) as rc:
            yield rc  # type: ignore[misc]  # the same request/response surface as TestClient
        return
    with TestClient(app) as c:
        yield c


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def headers(**overrides: str) -> dict[str, str]:
    h = {
        "X-Request-ID": str(uuid.uuid4()),
        "X-Request-Timestamp": now_rfc3339(),
        "Content-Type": "application/json",
    }
    h.update(overrides)
    return h


def body(name: str | None = "Max Mustermann", iban: str = IBAN_PERSON, **extra: Any) -> dict[str, Any]:
    party: dict[str, Any] = {} if name is None else {"name": name}
    if "identification" in extra:
        party["identification"] = extra.pop("identification")
    b: dict[str, Any] = {
        "party": party,
        "partyAccount": {"iban": iban},
        "partyAgent": {"financialInstitutionId": {"bicfi": DEMO_BIC}},
        "requestingAgent": {"financialInstitutionId": {"bicfi": "REQBDEFFXXX"}},
    }
    b.update(extra)
    return b
