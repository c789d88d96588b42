"""Local development keys under ``<data_dir>/dev-keys/`` (git-ignored with ``var/``, mode 0600).

``make run`` on a loopback bind with no JWKS configured uses a generated ES256 key, so a newcomer gets
a working, *authenticated* service; ``mint_dev_token`` signs tokens with it (``vop token``). The same
folder holds a generated audit key when ``VOP_AUDIT_KEY`` is unset on loopback. Files are created
atomically (written aside, then hard-linked into place), so concurrent workers agree on one key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

DEV_KEYS_DIR = "dev-keys"
DEV_SIGNING_KEY = "jwt-es256.pem"
DEV_AUDIT_KEY = "audit.key"
DEV_ISSUER = "vop-dev"
DEV_AUDIENCE = "vop-responder"
DEV_SUBJECT = "dev-client"
DEFAULT_DEV_SCOPES = ("vop:verify", "vop:bulk")
DEFAULT_DEV_BIC = "REQBDEFFXXX"


def dev_keys_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / DEV_KEYS_DIR


def _create_once(path: Path, content: bytes) -> None:
    """Write ``path`` with mode 0600 unless it exists; atomic against concurrent creators."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_private(path: Path) -> bytes:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        os.chmod(path, 0o600)
    return path.read_bytes()


def ensure_dev_signing_key(data_dir: str | Path) -> ec.EllipticCurvePrivateKey:
    path = dev_keys_dir(data_dir) / DEV_SIGNING_KEY
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _create_once(path, pem)
    loaded = serialization.load_pem_private_key(_read_private(path), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
        raise ValueError(f"{path} is not a P-256 private key")
    return loaded


def ensure_dev_audit_key(data_dir: str | Path) -> str:
    path = dev_keys_dir(data_dir) / DEV_AUDIT_KEY
    if not path.exists():
        _create_once(path, secrets.token_hex(32).encode())
    return _read_private(path).decode().strip()


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    """The public JWK with ``kid`` = RFC 7638 thumbprint, ``alg`` ES256, ``use`` sig."""
    jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    thumb_input = json.dumps(
        {k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True
    )

    digest = hashlib.sha256(thumb_input.encode()).digest()
    jwk["kid"] = jwt.utils.base64url_encode(digest).decode()
    jwk["alg"] = "ES256"
    jwk["use"] = "sig"
    return jwk


def dev_jwks(data_dir: str | Path) -> dict[str, Any]:
    return {"keys": [public_jwk(ensure_dev_signing_key(data_dir))]}


def mint_dev_token(
    data_dir: str | Path,
    scopes: tuple[str, ...] | list[str] = DEFAULT_DEV_SCOPES,
    bic: str | None = DEFAULT_DEV_BIC,
    ttl_s: int = 3600,
    *,
    issuer: str = DEV_ISSUER,
    audience: str = DEV_AUDIENCE,
    subject: str = DEV_SUBJECT,
    bic_claim: str = "bic",
) -> str:
    """A token signed with the local dev key (generated on first use), valid for ``ttl_s`` seconds."""
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    key = ensure_dev_signing_key(data_dir)
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + int(ttl_s),
        "scope": " ".join(scopes),
        "jti": secrets.token_hex(8),
    }
    if bic:
        claims[bic_claim] = bic.upper()
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": public_jwk(key)["kid"]})
