"""The Redis-backed index through HTTP: changes visible, staleness policy, operator controls."""

# ruff: noqa: F811  (pytest fixtures imported from tests.redis_server are parameter names)
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from app.factory import create_app
from app.security.devkeys import mint_dev_token
from app.security.settings import SecuritySettings
from app.settings import Settings
from matching.sources.redis_layout import connect, delete_account, upsert_account, write_accounts
from matching.sources.redis_source import RedisIndexSource, RedisSourceSettings
from tests.conftest import ACCOUNTS, IBAN_PERSON, accounts_table, body, headers
from tests.redis_server import RedisServer, redis_server, restartable_redis  # noqa: F401

SINGLE = "/vop/v1/payee-verifications"
FAST = RedisSourceSettings(block_ms=50, max_staleness_s=0.5, backoff_base_s=0.05, backoff_max_s=0.2,
                           socket_timeout_s=1.0, connect_timeout_s=0.5)  # fmt: skip


def make_client(
    tmp: Path, url: str, settings: Settings | None = None, feed_settings: RedisSourceSettings = FAST
) -> tuple[Litestar, RedisIndexSource]:
    feed = RedisIndexSource(url, "vop:", feed_settings)
    sec = SecuritySettings(data_dir=str(tmp), audit=False, rate_limit_rps=0, enum_max_names=1_000_000)
    app = create_app(settings or Settings(data_dir=str(tmp)), security=sec, feed=feed)
    return app, feed


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def answer(client: TestClient[Litestar], tok: str, name: str, iban: str = IBAN_PERSON) -> Any:
    h = {**headers(), "Authorization": f"Bearer {tok}"}
    return client.post(SINGLE, json=body(name, iban), headers=h).json()


@pytest.fixture
def loaded(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[TestClient[Litestar], str, Any]]:
    writer = connect(redis_server.url)
    write_accounts(writer, accounts_table())
    app, _ = make_client(tmp_path, redis_server.url)
    with TestClient(app) as client:
        wait_for(lambda: client.get("/readyz").status_code == 200)
        yield client, mint_dev_token(tmp_path, ("vop:verify", "vop:admin"), "REQBDEFFXXX", 600), writer


def test_upsert_rename_and_delete_are_visible_over_http(
    loaded: tuple[TestClient[Litestar], str, Any],
) -> None:
    client, tok, writer = loaded
    assert answer(client, tok, "Max Mustermann") == {"partyNameMatch": "MTCH"}
    renamed = {**ACCOUNTS[0], "names": ["Erika Mustermann"]}
    upsert_account(writer, renamed)
    wait_for(lambda: answer(client, tok, "Erika Mustermann") == {"partyNameMatch": "MTCH"})
    assert answer(client, tok, "Max Mustermann") == {"partyNameMatch": "NMTC"}
    new_iban = "DE02120300000000202051"
    upsert_account(writer, {**ACCOUNTS[0], "iban": new_iban, "names": ["Jan Nowak"]})
    wait_for(lambda: answer(client, tok, "Jan Nowak", new_iban) == {"partyNameMatch": "MTCH"})
    delete_account(writer, IBAN_PERSON)
    wait_for(lambda: answer(client, tok, "Erika Mustermann") == {"partyNameMatch": "NOAP"})


def test_admin_status_and_reload(loaded: tuple[TestClient[Litestar], str, Any], tmp_path: Path) -> None:
    client, tok, _ = loaded
    auth = {"Authorization": f"Bearer {tok}"}
    status = client.get("/admin/index", headers=auth).json()
    assert status["loaded"] is True
    assert status["accounts"] == len(ACCOUNTS)
    assert status["feed"]["connected"] is True
    before = status["feed"]["full_loads"]
    assert client.post("/admin/index/reload", headers=auth).status_code == 202
    wait_for(lambda: client.get("/admin/index", headers=auth).json()["feed"]["full_loads"] > before)
    assert client.get("/admin/index", headers=auth).json()["feed"]["reloads_requested"] == 1
    verify_only = mint_dev_token(tmp_path, ("vop:verify",), "REQBDEFFXXX", 600)
    denied = client.get("/admin/index", headers={"Authorization": f"Bearer {verify_only}"})
    assert denied.status_code == 403
    assert denied.json()["code"] == "CLIENT_INVALID"
    assert client.post("/admin/index/reload").status_code == 401


POLICIES = [("serve", 200, "MTCH"), ("noap", 200, "NOAP"), ("unready", 503, "MTCH")]


@pytest.mark.parametrize(("policy", "ready_status", "answer_code"), POLICIES)
def test_staleness_policy_when_redis_goes_away(
    restartable_redis: RedisServer, tmp_path: Path, policy: str, ready_status: int, answer_code: str
) -> None:
    write_accounts(connect(restartable_redis.url), accounts_table())
    app, _ = make_client(
        tmp_path, restartable_redis.url, Settings(data_dir=str(tmp_path), stale_policy=policy)
    )
    tok = mint_dev_token(tmp_path, ("vop:verify",), "REQBDEFFXXX", 600)
    with TestClient(app) as client:
        wait_for(lambda: client.get("/readyz").status_code == 200)
        restartable_redis.kill()
        wait_for(lambda: client.get("/readyz").json().get("stale") is True)
        time.sleep(0.15)  # the hot path re-reads staleness every 100 ms
        ready = client.get("/readyz")
        assert ready.status_code == ready_status
        assert answer(client, tok, "Max Mustermann")["partyNameMatch"] == answer_code
        restartable_redis.start()
        wait_for(lambda: client.get("/readyz").json().get("stale") is False, timeout=15)
        assert client.get("/readyz").status_code == 200
        time.sleep(0.15)
        assert answer(client, tok, "Max Mustermann") == {"partyNameMatch": "MTCH"}


def test_admin_reload_of_a_snapshot_is_404(tmp_path: Path) -> None:
    from matching.index import AccountIndex

    sec = SecuritySettings(data_dir=str(tmp_path), audit=False)
    app = create_app(
        Settings(data_dir=str(tmp_path)), index=AccountIndex.build(accounts_table()), security=sec
    )
    tok = mint_dev_token(tmp_path, ("vop:admin",), "REQBDEFFXXX", 600)
    with TestClient(app) as client:
        resp = client.post("/admin/index/reload", headers={"Authorization": f"Bearer {tok}"})
        assert resp.status_code == 404
        assert resp.json()["code"] == "NOT_FOUND"


def test_shared_limits_survive_a_redis_outage_and_show_the_breaker(
    restartable_redis: RedisServer, tmp_path: Path
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from matching.index import AccountIndex

    sec = SecuritySettings(
        data_dir=str(tmp_path), audit=False, redis_url=restartable_redis.url, redis_retry_s=30.0
    )
    app = create_app(
        Settings(data_dir=str(tmp_path)), index=AccountIndex.build(accounts_table()), security=sec
    )
    tok = mint_dev_token(tmp_path, ("vop:verify",), "REQBDEFFXXX", 600)

    def breaker_state(client: TestClient[Litestar]) -> float:
        text = client.get("/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if (
                    sample.name == "vop_circuit_breaker_state"
                    and sample.labels.get("breaker") == "redis_limits"
                ):
                    return sample.value
        raise AssertionError("vop_circuit_breaker_state{breaker=redis_limits} missing from /metrics")

    with TestClient(app) as client:
        assert answer(client, tok, "Max Mustermann") == {"partyNameMatch": "MTCH"}
        assert breaker_state(client) == 0  # closed
        restartable_redis.kill()
        answers = [answer(client, tok, "Max Mustermann") for _ in range(20)]
        assert answers == [{"partyNameMatch": "MTCH"}] * 20  # no check fails: per-process limits take over
        wait_for(lambda: breaker_state(client) == 2, timeout=5)  # open, exported
