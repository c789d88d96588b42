"""The JWKS: public keys by ``kid``, from a file or an https URL, refreshed in the background.

Only asymmetric signature keys for the fixed allow-list (ES256 on P-256, RS256 with >= 2048-bit RSA,
EdDSA) are admitted; symmetric (``oct``) keys, encryption keys and other curves are ignored, and private
members are stripped. A failed refresh keeps the last good key set. An unknown ``kid`` wakes the
refresher early (at most once per ``MIN_REFRESH_S``) so a rotated-in key is picked up promptly.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt import PyJWK
from jwt.exceptions import PyJWKError

log = logging.getLogger("vop.security.jwks")

ALLOWED_ALGORITHMS = frozenset({"ES256", "RS256", "EdDSA"})
MIN_RSA_BITS = 2048
MIN_REFRESH_S = 30.0
RETRY_S = 5.0
MAX_JWKS_BYTES = 1 << 20
FETCH_TIMEOUT_S = 5.0
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class JwksError(Exception):
    """The JWKS could not be read or holds no usable key."""


class VerificationKey(msgspec.Struct, frozen=True):
    kid: str
    algorithm: str
    key: Any  # a cryptography public key object


def _algorithm_for(jwk: Mapping[str, Any]) -> str | None:
    kty = jwk.get("kty")
    if kty == "EC" and jwk.get("crv") == "P-256":
        inferred = "ES256"
    elif kty == "RSA":
        inferred = "RS256"
    elif kty == "OKP" and jwk.get("crv") in ("Ed25519", "Ed448"):
        inferred = "EdDSA"
    else:
        return None
    declared = jwk.get("alg", inferred)
    return inferred if declared == inferred else None


def parse_jwks(document: bytes | str | Mapping[str, Any]) -> dict[str, VerificationKey]:
    """Usable verification keys by kid. Raises JwksError when the document is malformed or empty."""
    try:
        data = json.loads(document) if isinstance(document, bytes | str) else document
    except ValueError as exc:
        raise JwksError(f"JWKS is not JSON: {exc}") from None
    keys = data.get("keys") if isinstance(data, Mapping) else None
    if not isinstance(keys, list):
        raise JwksError("JWKS has no 'keys' array")
    found: dict[str, VerificationKey] = {}
    for raw in keys:
        if not isinstance(raw, Mapping):
            continue
        kid = raw.get("kid")
        algorithm = _algorithm_for(raw)
        if not isinstance(kid, str) or not kid or algorithm is None or raw.get("use", "sig") != "sig":
            log.info("JWKS: ignoring key kid=%r kty=%r (not an allowed signature key)", kid, raw.get("kty"))
            continue
        public = {k: v for k, v in raw.items() if k not in _PRIVATE_MEMBERS}
        try:
            key = PyJWK(public, algorithm=algorithm).key
        except (PyJWKError, ValueError, TypeError) as exc:
            log.warning("JWKS: ignoring malformed key kid=%r: %s", kid, exc)
            continue
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            log.warning("JWKS: ignoring RSA key kid=%r shorter than %d bits", kid, MIN_RSA_BITS)
            continue
        if kid in found:
            raise JwksError(f"JWKS has two keys with kid {kid!r}")
        found[kid] = VerificationKey(kid, algorithm, key)
    if not found:
        raise JwksError("JWKS holds no usable key (ES256 / RS256 / EdDSA signature keys)")
    return found


def _der(key: Any) -> bytes:
    der: bytes = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def file_fetcher(path: str | Path) -> Callable[[], bytes]:
    def fetch() -> bytes:
        return Path(path).read_bytes()

    return fetch


def url_fetcher(url: str, timeout_s: float = FETCH_TIMEOUT_S) -> Callable[[], bytes]:
    def fetch() -> bytes:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (scheme checked in settings)
            body: bytes = response.read(MAX_JWKS_BYTES + 1)
        if len(body) > MAX_JWKS_BYTES:
            raise JwksError(f"JWKS at {url} exceeds {MAX_JWKS_BYTES} bytes")
        return body

    return fetch


def fetcher_for(source: str) -> Callable[[], bytes]:
    return url_fetcher(source) if "://" in source else file_fetcher(source)


class JwksCache:
    """Current keys by kid; ``generation`` increases whenever the key set changes."""

    def __init__(
        self,
        fetch: Callable[[], bytes],
        refresh_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        name: str = "jwks",
    ) -> None:
        self._fetch = fetch
        self._refresh_s = refresh_s
        self._clock = clock
        self._name = name
        self._keys: dict[str, VerificationKey] = {}
        self._fingerprint: tuple[tuple[str, str, bytes], ...] = ()
        self.generation = 0
        self.loaded_at: float | None = None
        self.last_error: str | None = None
        self._last_attempt = -1e18
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def static(cls, document: bytes | str | Mapping[str, Any]) -> JwksCache:
        """A cache over a fixed document (the dev key); never refreshed."""
        body = document if isinstance(document, bytes | str) else json.dumps(document)
        data = body.encode() if isinstance(body, str) else body
        cache = cls(lambda: data, refresh_s=float("inf"), name="static")
        cache.refresh()
        return cache

    def get(self, kid: str) -> VerificationKey | None:
        return self._keys.get(kid)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def refresh(self) -> bool:
        """Fetch and swap the key set now. True on success; on failure the old keys stay."""
        with self._lock:
            self._last_attempt = self._clock()
            try:
                keys = parse_jwks(self._fetch())
            except (OSError, JwksError, ValueError) as exc:
                self.last_error = str(exc)
                log.warning(
                    "JWKS refresh from %s failed (keeping %d keys): %s", self._name, len(self._keys), exc
                )
                return False
            fingerprint = tuple(sorted((k.kid, k.algorithm, _der(k.key)) for k in keys.values()))
            if fingerprint != self._fingerprint:
                self._keys = keys
                self._fingerprint = fingerprint
                self.generation += 1
                log.info("JWKS from %s: %d keys (%s)", self._name, len(keys), ", ".join(sorted(keys)))
            self.loaded_at = self._clock()
            self.last_error = None
            return True

    def request_refresh(self) -> None:
        """Ask the background refresher for an early refresh (unknown kid); rate-limited."""
        if self._clock() - self._last_attempt >= MIN_REFRESH_S:
            self._wake.set()

    def start(self) -> None:
        if self._thread is None and self._refresh_s != float("inf"):
            self._thread = threading.Thread(target=self._run, name="vop-jwks-refresh", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self._refresh_s if self.loaded_at is not None and self.last_error is None else RETRY_S
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.refresh()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
