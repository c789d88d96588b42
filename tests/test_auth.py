"""JWT authentication: every kind of bad token is a 401, scopes are 403, BIC mismatch is
CLIENT_INCONSISTENT; JWKS from a file and over HTTP (refresh, rotation, failure); dev keys; XFCC."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from app.problems import ProblemError
from app.security.devkeys import DEV_KEYS_DIR, DEV_SIGNING_KEY, mint_dev_token
from app.security.gate import Principal, SecurityGate, dev_token_banner
from app.security.jwks import JwksCache, parse_jwks, url_fetcher
from app.security.settings import SecuritySettings
from app.security.tokens import TokenError, TokenVerifier
from app.security.xfcc import client_cert, parse_xfcc
from app.settings import SettingsError

ISSUER = "https://idp.example.test"
AUDIENCE = "vop-responder"
NOW = float(int(time.time()))
REQ_BIC = "REQBDEFFXXX"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _jwk(public: Any, kid: str, alg: str) -> dict[str, Any]:
    algo: Any = {"ES256": ECAlgorithm, "RS256": RSAAlgorithm, "EdDSA": OKPAlgorithm}[alg]
    jwk: dict[str, Any] = json.loads(algo.to_jwk(public))
    jwk.update(kid=kid, alg=alg, use="sig")
    return jwk


class Keys:
    """Test keys made at import time (no key material in the repository)."""

    def __init__(self) -> None:
        self.es = ec.generate_private_key(ec.SECP256R1())
        self.rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.other_es = ec.generate_private_key(ec.SECP256R1())
        self.by_alg: dict[str, tuple[Any, str]] = {
            "ES256": (self.es, "es-1"),
            "RS256": (self.rs, "rs-1"),
            "EdDSA": (self.ed, "ed-1"),
        }

    def jwks(self, *algs: str) -> dict[str, Any]:
        algs = algs or ("ES256", "RS256", "EdDSA")
        return {"keys": [_jwk(self.by_alg[a][0].public_key(), self.by_alg[a][1], a) for a in algs]}


KEYS = Keys()


def claims(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "psp-client-1",
        "iat": int(NOW) - 10,
        "nbf": int(NOW) - 10,
        "exp": int(NOW) + 300,
        "scope": "vop:verify vop:bulk",
        "bic": REQ_BIC,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def token(alg: str = "ES256", kid: str | None = None, key: Any = None, **over: Any) -> str:
    signing, default_kid = KEYS.by_alg[alg]
    return jwt.encode(claims(**over), key or signing, algorithm=alg, headers={"kid": kid or default_kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], body: dict[str, Any], sign: bytes | None = None) -> str:
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(body).encode())
    if sign is None:
        return head + "."
    return head + "." + _b64(hmac.new(sign, head.encode(), hashlib.sha256).digest())


def bearer(tok: str) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"authorization", b"Bearer " + tok.encode())]


def write_jwks(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc))
    return path


def make_gate(tmp_path: Path, clock: Clock | None = None, **over: Any) -> SecurityGate:
    jwks = over.pop("jwks_doc", None) or KEYS.jwks()
    tmp_path.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {
        "jwt_jwks": str(write_jwks(tmp_path / "jwks.json", jwks)),
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "data_dir": str(tmp_path / "var"),
        "audit": False,
    }
    values.update(over)
    return SecurityGate.from_settings(SecuritySettings(**values), clock=clock or Clock(), start_threads=False)


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[SecurityGate]:
    g = make_gate(tmp_path)
    yield g
    g.close()


def assert_401(
    g: SecurityGate,
    headers: list[tuple[bytes, bytes]],
    fragment: str = "",
    client: tuple[str, int] | None = ("192.0.2.50", 40000),
) -> ProblemError:
    with pytest.raises(ProblemError) as info:
        g.authenticate(headers, client, "vop:verify")
    err = info.value
    assert err.status == 401
    assert err.code == "CLIENT_INVALID"
    assert err.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert fragment in err.detail
    return err


# -- accepted tokens -------------------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_valid_token_each_algorithm(gate: SecurityGate, alg: str) -> None:
    p = gate.authenticate(bearer(token(alg)), ("10.0.0.5", 1), "vop:verify")
    assert p == Principal("psp-client-1", REQ_BIC, frozenset({"vop:verify", "vop:bulk"}))
    gate.check_requester(p, REQ_BIC)
    gate.check_requester(p, "REQBDEFF")  # 8-char form equals the 11-char XXX form


def test_scheme_is_case_insensitive_and_client_id_claims(gate: SecurityGate) -> None:
    tok = token(client_id="explicit-client")
    p = gate.authenticate([(b"authorization", b"bearer " + tok.encode())], None, "vop:verify")
    assert p.client_id == "explicit-client"


# -- 401s ------------------------------------------------------------------------------------------
def test_missing_token(gate: SecurityGate) -> None:
    assert_401(gate, [(b"content-type", b"application/json")], "missing")


def test_wrong_scheme(gate: SecurityGate) -> None:
    assert_401(gate, [(b"authorization", b"Basic dXNlcjpwYXNz")], "Bearer")


@pytest.mark.parametrize("garbage", ["garbage", "a.b.c", "", "e30.e30.", "x" * 9000])
def test_garbage(gate: SecurityGate, garbage: str) -> None:
    assert_401(gate, bearer(garbage))


def test_expired(gate: SecurityGate) -> None:
    assert_401(gate, bearer(token(exp=int(NOW) - 31)), "expired")


def test_expiry_within_leeway_is_accepted(gate: SecurityGate) -> None:
    gate.authenticate(bearer(token(exp=int(NOW) - 10)), None, "vop:verify")


def test_not_yet_valid(gate: SecurityGate) -> None:
    assert_401(gate, bearer(token(nbf=int(NOW) + 120)), "not valid yet")


def test_wrong_issuer(gate: SecurityGate) -> None:
    assert_401(gate, bearer(token(iss="https://evil.example")), "issuer")


def test_wrong_audience(gate: SecurityGate) -> None:
    assert_401(gate, bearer(token(aud="someone-else")), "audience")


def test_missing_exp(gate: SecurityGate) -> None:
    assert_401(gate, bearer(token(exp=None)), "exp")


def test_alg_none(gate: SecurityGate) -> None:
    tok = unsigned_token({"alg": "none", "kid": "es-1", "typ": "JWT"}, claims())
    assert_401(gate, bearer(tok), "not allowed")
    tok = unsigned_token({"alg": "None", "kid": "es-1"}, claims())
    assert_401(gate, bearer(tok), "not allowed")


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_hs256_signed_with_public_key(gate: SecurityGate, alg: str) -> None:
    signing, kid = KEYS.by_alg[alg]
    pem = signing.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk_text = json.dumps(KEYS.jwks(alg)["keys"][0]).encode()
    for secret in (pem, jwk_text):
        for header_alg in ("HS256", "HS384", "HS512"):
            tok = unsigned_token({"alg": header_alg, "kid": kid}, claims(), sign=secret)
            assert_401(gate, bearer(tok), "not allowed")


def test_unknown_kid(gate: SecurityGate) -> None:
    assert_401(gate, bearer(token(kid="nope")), "unknown key")


def test_no_kid(gate: SecurityGate) -> None:
    tok = jwt.encode(claims(), KEYS.es, algorithm="ES256")
    assert_401(gate, bearer(tok), "kid")


def test_wrong_key(gate: SecurityGate) -> None:
    assert_401(gate, bearer(token(key=KEYS.other_es)), "signature")


def test_algorithm_must_match_the_key(gate: SecurityGate) -> None:
    # An ES256 signature presented under the RSA key's kid.
    tok = jwt.encode(claims(), KEYS.es, algorithm="ES256", headers={"kid": "rs-1"})
    assert_401(gate, bearer(tok), "does not match")


def test_tampered_payload(gate: SecurityGate) -> None:
    head, _, sig = token().split(".")
    forged = _b64(json.dumps(claims(scope="vop:admin")).encode())
    assert_401(gate, bearer(f"{head}.{forged}.{sig}"), "signature")


# -- 403s ------------------------------------------------------------------------------------------
def test_valid_token_without_scope(gate: SecurityGate) -> None:
    with pytest.raises(ProblemError) as info:
        gate.authenticate(bearer(token(scope="")), None, "vop:verify")
    assert (info.value.status, info.value.code) == (403, "CLIENT_INVALID")
    assert "insufficient_scope" in info.value.headers["WWW-Authenticate"]


def test_admin_with_verify_only_token(gate: SecurityGate) -> None:
    tok = token(scope="vop:verify")
    gate.authenticate(bearer(tok), None, "vop:verify")
    with pytest.raises(ProblemError) as info:
        gate.authenticate(bearer(tok), None, "vop:admin")
    assert (info.value.status, info.value.code) == (403, "CLIENT_INVALID")
    admin = gate.authenticate(bearer(token(scope="vop:admin")), None, "vop:admin")
    assert "vop:admin" in admin.scopes


def test_bic_mismatch_is_client_inconsistent(gate: SecurityGate) -> None:
    p = gate.authenticate(bearer(token()), None, "vop:verify")
    with pytest.raises(ProblemError) as info:
        gate.check_requester(p, "OTHRDEFFXXX")
    assert (info.value.status, info.value.code) == (403, "CLIENT_INCONSISTENT")
    with pytest.raises(ProblemError):
        gate.check_requester(p, "REQBDEFF123")  # branch code differs


def test_token_without_bic_is_client_inconsistent(gate: SecurityGate) -> None:
    p = gate.authenticate(bearer(token(bic=None)), None, "vop:verify")
    assert p.bic is None
    with pytest.raises(ProblemError) as info:
        gate.check_requester(p, REQ_BIC)
    assert info.value.code == "CLIENT_INCONSISTENT"


def test_bic_claim_name_is_configurable(tmp_path: Path) -> None:
    g = make_gate(tmp_path, jwt_bic_claim="psp_bic")
    p = g.authenticate(bearer(token(bic=None, psp_bic="reqbdeff")), None, "vop:verify")
    assert p.bic == REQ_BIC
    g.check_requester(p, REQ_BIC)


# -- cache -----------------------------------------------------------------------------------------
def test_cache_skips_signature_check_until_exp(tmp_path: Path) -> None:
    clock = Clock()
    g = make_gate(tmp_path, clock)
    tok = bearer(token(exp=int(NOW) + 60))
    for _ in range(50):
        g.authenticate(tok, None, "vop:verify")
    assert g.metrics()["token_verifications"] == 1
    clock.now = NOW + 60 + 29  # inside the leeway
    g.authenticate(tok, None, "vop:verify")
    clock.now = NOW + 60 + 31
    assert_401(g, tok, "expired")


def test_cache_is_bounded(tmp_path: Path) -> None:
    g = make_gate(tmp_path, token_cache_size=8)
    for i in range(30):
        g.authenticate(bearer(token(sub=f"c{i}")), None, "vop:verify")
    assert len(g._tokens._cache) <= 8  # type: ignore[union-attr]


def test_rejected_token_is_not_rechecked(tmp_path: Path) -> None:
    g = make_gate(tmp_path)
    bad = bearer(token(key=KEYS.other_es))
    for _ in range(20):
        assert_401(g, bad, "signature")
    assert g.metrics()["token_verifications"] == 1


def test_key_removed_from_jwks_invalidates_cached_tokens(tmp_path: Path) -> None:
    path = write_jwks(tmp_path / "keys.json", KEYS.jwks())
    jwks = JwksCache(path.read_bytes)
    assert jwks.refresh()
    verifier = TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE, clock=Clock())
    tok = token("RS256").encode()
    verifier.verify(tok)
    write_jwks(path, KEYS.jwks("ES256", "EdDSA"))
    assert jwks.refresh()
    with pytest.raises(TokenError, match="unknown key"):
        verifier.verify(tok)


# -- JWKS --------------------------------------------------------------------------------------------
def test_jwks_ignores_unsafe_keys() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (must be refused)
    es384 = ec.generate_private_key(ec.SECP384R1())
    doc = KEYS.jwks("ES256")
    doc["keys"] += [
        {"kty": "oct", "kid": "hmac", "k": _b64(b"secret"), "alg": "HS256"},
        _jwk(weak.public_key(), "weak", "RS256"),
        {**_jwk(es384.public_key(), "p384", "ES256"), "alg": "ES384"},
        {**_jwk(KEYS.rs.public_key(), "enc", "RS256"), "use": "enc"},
        {**_jwk(KEYS.rs.public_key(), "mislabelled", "RS256"), "alg": "HS256"},
    ]
    assert set(parse_jwks(json.dumps(doc))) == {"es-1"}


def test_jwks_strips_private_members() -> None:
    private = json.loads(ECAlgorithm.to_jwk(KEYS.es))  # includes "d"
    private.update(kid="k", alg="ES256")
    key = parse_jwks({"keys": [private]})["k"].key
    assert isinstance(key, ec.EllipticCurvePublicKey)


def test_unreadable_jwks_file_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text("{not json")
    with pytest.raises(SettingsError):
        SecurityGate.from_settings(
            SecuritySettings(jwt_jwks=str(path), jwt_issuer=ISSUER, jwt_audience=AUDIENCE, audit=False)
        )


class _JwksServer:
    def __init__(self) -> None:
        self.doc: bytes = json.dumps(KEYS.jwks("ES256")).encode()
        self.status = 200
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(outer.doc)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks_server() -> Iterator[_JwksServer]:
    server = _JwksServer()
    yield server
    server.close()


def test_jwks_over_http_refresh_rotation_and_failure(jwks_server: _JwksServer) -> None:
    mono = Clock(1000.0)
    jwks = JwksCache(url_fetcher(jwks_server.url), refresh_s=3600, clock=mono)
    assert jwks.refresh()
    verifier = TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE, clock=Clock())
    verifier.verify(token("ES256").encode())
    # A token under a key the IdP has not published yet: 401; the refresher is woken early.
    jwks.start()
    try:
        jwks_server.doc = json.dumps(KEYS.jwks("ES256", "EdDSA")).encode()
        ed_token = token("EdDSA").encode()
        with pytest.raises(TokenError, match="unknown key"):
            verifier.verify(ed_token)  # within MIN_REFRESH_S of the last fetch: no early refresh
        mono.now += 31
        with pytest.raises(TokenError, match="unknown key"):
            verifier.verify(ed_token)  # wakes the refresher thread
        for _ in range(200):
            if jwks.get("ed-1") is not None:
                break
            threading.Event().wait(0.01)
        assert verifier.verify(ed_token).client_id == "psp-client-1"
        # The IdP fails: the last good keys stay.
        jwks_server.status = 500
        assert not jwks.refresh()
        assert jwks.kids == {"es-1", "ed-1"}
        assert verifier.verify(token("ES256", sub="again").encode()).client_id == "again"
    finally:
        jwks.close()


def test_gate_with_jwks_url(jwks_server: _JwksServer, tmp_path: Path) -> None:
    settings = SecuritySettings(
        jwt_jwks=jwks_server.url,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        audit=False,
        data_dir=str(tmp_path),
    )
    g = SecurityGate.from_settings(settings)
    try:
        assert g.authenticate(bearer(token()), None, "vop:verify").bic == REQ_BIC
    finally:
        g.close()


# -- settings that must not start -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"auth": False, "host": "0.0.0.0"}, "VOP_AUTH=off"),
        ({"host": "10.1.2.3"}, "VOP_JWT_JWKS must be set"),
        ({"jwt_jwks": "JWKS_FILE"}, "VOP_JWT_ISSUER"),
        ({"jwt_jwks": "http://idp.example/jwks", "jwt_issuer": "i", "jwt_audience": "a"}, "https"),
        ({"jwt_jwks": "/nonexistent/jwks.json", "jwt_issuer": "i", "jwt_audience": "a"}, "not found"),
        ({"xfcc_required": True}, "VOP_TRUSTED_PROXIES"),
        ({"trusted_proxies": ("10.0.0.0/33",)}, "CIDR"),
        ({"audit_nice": 20}, "VOP_AUDIT_NICE must be 0 to 19"),
        ({"audit_nice": -1}, "VOP_AUDIT_NICE must be 0 to 19"),
    ],
)
def test_unsafe_settings_refuse_to_start(tmp_path: Path, values: dict[str, Any], fragment: str) -> None:
    if values.get("jwt_jwks") == "JWKS_FILE":
        values["jwt_jwks"] = str(write_jwks(tmp_path / "j.json", KEYS.jwks()))
    with pytest.raises(SettingsError, match=fragment):
        SecurityGate.from_settings(SecuritySettings(audit=False, data_dir=str(tmp_path), **values))


# -- dev key -----------------------------------------------------------------------------------------
def test_dev_key_generated_private_and_used(tmp_path: Path) -> None:
    data = tmp_path / "var"
    g = SecurityGate.from_settings(SecuritySettings(data_dir=str(data), audit=False))
    try:
        key_file = data / DEV_KEYS_DIR / DEV_SIGNING_KEY
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        tok = mint_dev_token(data, ["vop:verify"], "REQBDEFF", 600)
        p = g.authenticate(bearer(tok), None, "vop:verify")
        assert p.bic == REQ_BIC
        assert p.scopes == frozenset({"vop:verify"})
        banner = dev_token_banner(g.settings)
        assert banner is not None
        ready = banner.split("Bearer ")[1].split("'")[0]
        assert g.authenticate(bearer(ready), None, "vop:bulk").client_id == "dev-client"
        # The same key is reused, not regenerated.
        before = key_file.read_bytes()
        SecurityGate.from_settings(SecuritySettings(data_dir=str(data), audit=False)).close()
        assert key_file.read_bytes() == before
    finally:
        g.close()


def test_dev_banner_absent_with_real_jwks(tmp_path: Path) -> None:
    g = make_gate(tmp_path)
    assert dev_token_banner(g.settings) is None
    g.close()


def test_auth_off_on_loopback(tmp_path: Path) -> None:
    g = SecurityGate.from_settings(SecuritySettings(auth=False, audit=False, data_dir=str(tmp_path)))
    p = g.authenticate([], ("127.0.0.1", 5000), "vop:admin")
    assert p.client_id == "anonymous@127.0.0.1"
    g.check_requester(p, "ANYBDEFFXXX")


# -- XFCC -------------------------------------------------------------------------------------------
CERT_HASH = hashlib.sha256(b"client certificate DER").hexdigest()
XFCC = (
    'By=spiffe://vop.bank/responder;Hash=0011;Subject="CN=old, O=Hop\\"1";URI=spiffe://old,'
    f'By=spiffe://vop.bank/responder;Hash={CERT_HASH};Subject="CN=REQBDEFF, O=Req Bank, C=DE";'
    "URI=;DNS=req.example;DNS=api.req.example"
)


def test_parse_xfcc() -> None:
    elements = parse_xfcc(XFCC)
    assert len(elements) == 2
    assert ("subject", 'CN=old, O=Hop"1') in elements[0]
    cert = client_cert(XFCC)
    assert cert is not None
    assert cert.hash == CERT_HASH
    assert cert.subject == "CN=REQBDEFF, O=Req Bank, C=DE"
    assert cert.dns == ("req.example", "api.req.example")
    assert cert.identity == "CN=REQBDEFF, O=Req Bank, C=DE"
    assert cert.x5t_s256 == _b64(bytes.fromhex(CERT_HASH))


def _xfcc_headers(tok: str) -> list[tuple[bytes, bytes]]:
    return [*bearer(tok), (b"x-forwarded-client-cert", XFCC.encode())]


def test_xfcc_trusted_only_from_configured_proxies(tmp_path: Path) -> None:
    g = make_gate(tmp_path, trusted_proxies=("10.0.0.0/24", "::1/128"))
    tok = token()
    from_proxy = g.authenticate(_xfcc_headers(tok), ("10.0.0.7", 1), "vop:verify")
    assert from_proxy.cert == "CN=REQBDEFF, O=Req Bank, C=DE"
    assert from_proxy.client_id == "psp-client-1"
    from_mapped = g.authenticate(_xfcc_headers(tok), ("::ffff:10.0.0.8", 1), "vop:verify")
    assert from_mapped.cert is not None
    spoofed = g.authenticate(_xfcc_headers(tok), ("192.0.2.1", 1), "vop:verify")
    assert spoofed.cert is None
    no_proxies = make_gate(tmp_path / "b", trusted_proxies=())
    assert no_proxies.authenticate(_xfcc_headers(tok), ("10.0.0.7", 1), "vop:verify").cert is None


def test_xfcc_required(tmp_path: Path) -> None:
    g = make_gate(tmp_path, trusted_proxies=("10.0.0.0/24",), xfcc_required=True)
    tok = token()
    g.authenticate(_xfcc_headers(tok), ("10.0.0.7", 1), "vop:verify")
    assert_401(g, bearer(tok), "client certificate")
    assert_401(g, _xfcc_headers(tok), "client certificate")  # XFCC from an untrusted peer
    assert_401(g, _xfcc_headers(tok), "client certificate", client=None)
    with pytest.raises(ProblemError):
        g.authenticate(_xfcc_headers(tok), ("192.0.2.1", 1), "vop:verify")


def test_certificate_bound_token(tmp_path: Path) -> None:
    g = make_gate(tmp_path, trusted_proxies=("10.0.0.0/24",))
    bound = token(cnf={"x5t#S256": _b64(bytes.fromhex(CERT_HASH))})
    g.authenticate(_xfcc_headers(bound), ("10.0.0.7", 1), "vop:verify")
    assert_401(g, bearer(bound), "bound")
    other = token(cnf={"x5t#S256": _b64(b"\x00" * 32)})
    with pytest.raises(ProblemError) as info:
        g.authenticate(_xfcc_headers(other), ("10.0.0.7", 1), "vop:verify")
    assert info.value.status == 401
