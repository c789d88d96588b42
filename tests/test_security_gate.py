"""The gate end to end as a route uses it, settings from the environment, and no clear data in logs."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from app.problems import ProblemError
from app.security.gate import SecurityGate, audit_key_for
from app.security.settings import SecuritySettings, security_settings_from
from app.settings import SettingsError
from tests.test_auth import AUDIENCE, ISSUER, KEYS, REQ_BIC, Clock, bearer, token, write_jwks

IBAN = "DE89370400440532013000"
NAME = "Max Mustermann"


def test_route_flow_end_to_end(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    settings = SecuritySettings(
        jwt_jwks=str(write_jwks(tmp_path / "jwks.json", KEYS.jwks())),
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        data_dir=str(tmp_path / "var"),
        audit_key="k" * 40,
        rate_limit_rps=1.0,
        rate_limit_burst=8,
        enum_max_names=3,
    )
    gate = SecurityGate.from_settings(settings, clock=clock)
    headers = bearer(token())
    codes = []
    for i in range(8):
        principal = gate.authenticate(headers, ("10.0.0.1", 5555), "vop:verify")
        gate.check_requester(principal, "REQBDEFF")
        assert gate.rate_limit(principal) is None
        name = f"{NAME} {chr(65 + i)}"
        forced = gate.enumeration_guard(principal, IBAN, name)
        code = "NOAP" if forced else "NMTC"
        codes.append(code)
        gate.audit(
            request_id=f"rid-{i}",
            principal=principal,
            iban=IBAN,
            name=name,
            code=code,
            reason="enumeration" if forced else "different_name",
            index_version=3,
            forced=forced,
        )
    assert codes == ["NMTC"] * 3 + ["NOAP"] * 5
    retry = gate.rate_limit(principal)
    assert retry is not None
    assert math.ceil(retry) == 1
    gate.close()
    gate.close()  # idempotent
    metrics = gate.metrics()
    assert metrics["audit_written"] == 8
    assert metrics["enumeration_forced"] == 5
    assert metrics["token_verifications"] == 1
    from app.security.audit import verify_audit_files

    report = verify_audit_files(gate.audit_files, "k" * 40)
    assert report.ok, report.render()
    text = "".join(p.read_text() for p in gate.audit_files)
    assert text.count('"enum":true') == 5
    for clear in (IBAN, NAME, "Mustermann", REQ_BIC):
        assert clear not in text
        assert clear not in caplog.text


def test_rejections_leave_no_clear_data_in_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gate = SecurityGate.from_settings(
        SecuritySettings(
            jwt_jwks=str(write_jwks(tmp_path / "jwks.json", KEYS.jwks())),
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            data_dir=str(tmp_path),
            audit=False,
            trusted_proxies=("10.0.0.0/8",),
        )
    )
    bad = [(b"authorization", b"Bearer " + token(kid="missing").encode())]
    with pytest.raises(ProblemError):
        gate.authenticate(bad, None, "vop:verify")
    garbled = [*bearer(token()), (b"x-forwarded-client-cert", b'Subject="unterminated')]
    assert gate.authenticate(garbled, ("10.1.1.1", 1), "vop:verify").cert is None
    gate.close()
    assert IBAN not in caplog.text


def test_settings_from_env(tmp_path: Path) -> None:
    jwks = write_jwks(tmp_path / "jwks.json", KEYS.jwks())
    env = {
        "VOP_AUTH": "on",
        "VOP_HOST": "0.0.0.0",
        "VOP_JWT_JWKS": str(jwks),
        "VOP_JWT_ISSUER": ISSUER,
        "VOP_JWT_AUDIENCE": AUDIENCE,
        "VOP_JWT_BIC_CLAIM": "psp_bic",
        "VOP_JWT_LEEWAY_S": "10",
        "VOP_TRUSTED_PROXIES": "10.0.0.0/8, fd00::/8",
        "VOP_RATE_LIMIT_RPS": "50",
        "VOP_RATE_LIMIT_BURST": "100",
        "VOP_ENUM_MAX_NAMES": "4",
        "VOP_ENUM_WINDOW_S": "300",
        "VOP_AUDIT_DIR": str(tmp_path / "audit"),
        "VOP_AUDIT_KEY": "x" * 32,
        "VOP_REDIS_URL": "redis://127.0.0.1:1/0",
        "VOP_DATA_DIR": str(tmp_path / "var"),
        "VOP_UNRELATED": "ignored",
    }
    s = security_settings_from(env)
    assert s.auth is True
    assert s.host == "0.0.0.0"
    assert s.jwt_bic_claim == "psp_bic"
    assert s.jwt_leeway_s == 10.0
    assert s.trusted_proxies == ("10.0.0.0/8", "fd00::/8")
    assert (s.rate_limit_rps, s.rate_limit_burst) == (50.0, 100)
    assert (s.enum_max_names, s.enum_window_s) == (4, 300.0)
    assert s.audit_path == tmp_path / "audit"
    assert audit_key_for(s) == b"x" * 32


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"VOP_AUTH": "maybe"}, "on or off"),
        ({"VOP_RATE_LIMIT_RPS": "fast"}, "number"),
        ({"VOP_ENUM_MAX_NAMES": "0"}, "VOP_ENUM_MAX_NAMES"),
        ({"VOP_AUTH": "off", "VOP_HOST": "10.0.0.1"}, "loopback"),
        ({"VOP_HOST": "0.0.0.0"}, "VOP_JWT_JWKS"),
        ({"VOP_AUDIT_KEY": "short"}, "32"),
        ({"VOP_REDIS_URL": "http://x"}, "redis://"),
    ],
)
def test_bad_env_refuses(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        security_settings_from(env)


def test_non_loopback_needs_an_audit_key(tmp_path: Path) -> None:
    jwks = write_jwks(tmp_path / "jwks.json", KEYS.jwks())
    env = {"VOP_HOST": "0.0.0.0", "VOP_JWT_JWKS": str(jwks), "VOP_JWT_ISSUER": "i", "VOP_JWT_AUDIENCE": "a"}
    with pytest.raises(SettingsError, match="VOP_AUDIT_KEY"):
        security_settings_from(env)


def test_dev_audit_key_is_generated_on_loopback(tmp_path: Path) -> None:
    s = SecuritySettings(data_dir=str(tmp_path))
    key = audit_key_for(s)
    assert len(key) == 64
    assert audit_key_for(s) == key
    assert (tmp_path / "dev-keys" / "audit.key").stat().st_mode & 0o077 == 0


def test_unreachable_redis_never_fails_a_request(tmp_path: Path) -> None:
    gate = SecurityGate.from_settings(
        SecuritySettings(auth=False, audit=False, data_dir=str(tmp_path), redis_url="redis://127.0.0.1:1/0")
    )
    p = gate.authenticate([], ("127.0.0.1", 1), "vop:verify")
    assert gate.rate_limit(p) is None
    assert gate.enumeration_guard(p, IBAN, NAME) is False
    assert gate.metrics()["redis_healthy"] == 0
    gate.close()
