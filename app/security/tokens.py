"""Bearer-token verification (PyJWT) with a cache of verified tokens.

A token is accepted only when: its header ``alg`` is on the fixed allow-list (ES256, RS256, EdDSA — so
``none`` and every HMAC are refused before any key is touched); its ``kid`` names a JWKS key whose own
algorithm equals that ``alg`` (a public key is never used as an HMAC secret); the signature verifies;
``iss`` equals the configured issuer, ``aud`` contains the configured audience; ``exp`` is present and
not past, ``nbf`` (if present) not in the future, both with the configured leeway.

Verified tokens are cached until ``exp`` (+ leeway) in a bounded dict keyed by the token bytes, so a
repeated token costs a dict lookup and a clock read. The cache is emptied whenever the JWKS key set
changes, so a key withdrawn from the JWKS stops admitting its tokens at the next refresh. Tokens that
failed for a lasting reason (bad signature, wrong iss/aud, expired) are remembered briefly too, so a
flood of one bad token does not cost a signature check each.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt
import msgspec
from jwt.exceptions import (
    ImmatureSignatureError,
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidSignatureError,
    InvalidTokenError,
    MissingRequiredClaimError,
)

from app.security.jwks import ALLOWED_ALGORITHMS, JwksCache

MAX_TOKEN_BYTES = 8192
NEGATIVE_CACHE_SIZE = 4096
NEGATIVE_TTL_S = 30.0
_OPTIONS: Any = {
    "verify_signature": True,
    "verify_exp": False,  # checked below against the injectable clock, with the same leeway
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": True,
    "verify_iss": True,
    "require": ["exp", "iss", "aud"],
}


class TokenError(Exception):
    """The token is not acceptable; ``detail`` is safe to show the client."""

    def __init__(self, detail: str, lasting: bool = True) -> None:
        super().__init__(detail)
        self.detail = detail
        self.lasting = lasting


class VerifiedToken(msgspec.Struct, frozen=True, gc=False):
    client_id: str
    bic: str | None  # 11-character form
    scopes: frozenset[str]
    deadline: float  # exp + leeway: usable from the cache until then
    cert_thumbprint: str | None = None  # RFC 8705 cnf.x5t#S256: the token is bound to this client cert


def normalise_bic(bic: str) -> str:
    bic = bic.strip().upper()
    return bic + "XXX" if len(bic) == 8 else bic


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"claim {name} must be a number")
    return float(value)


class TokenVerifier:
    def __init__(
        self,
        jwks: JwksCache,
        *,
        issuer: str,
        audience: str,
        bic_claim: str = "bic",
        leeway_s: float = 30.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._bic_claim = bic_claim
        self._leeway = leeway_s
        self._cache_size = cache_size
        self._clock = clock
        self._cache: dict[bytes, VerifiedToken] = {}
        self._rejected: dict[bytes, tuple[float, str]] = {}
        self._generation = jwks.generation
        self.verifications = 0  # signature checks done (cache misses that got that far)

    def verify(self, token: bytes) -> VerifiedToken:
        now = self._clock()
        if self._generation != self._jwks.generation:
            self._cache.clear()
            self._rejected.clear()
            self._generation = self._jwks.generation
        hit = self._cache.get(token)
        if hit is not None:
            if hit.deadline > now:
                return hit
            del self._cache[token]
            raise TokenError("token expired")
        rejected = self._rejected.get(token)
        if rejected is not None:
            if rejected[0] > now:
                raise TokenError(rejected[1])
            del self._rejected[token]
        try:
            verified = self._verify(token, now)
        except TokenError as exc:
            if exc.lasting:
                if len(self._rejected) >= NEGATIVE_CACHE_SIZE:
                    self._rejected.pop(next(iter(self._rejected)))
                self._rejected[token] = (now + NEGATIVE_TTL_S, exc.detail)
            raise
        if self._cache_size:
            if len(self._cache) >= self._cache_size:
                self._evict(now)
            self._cache[token] = verified
        return verified

    def _evict(self, now: float) -> None:
        expired = [t for t, v in self._cache.items() if v.deadline <= now]
        for t in expired:
            del self._cache[t]
        while len(self._cache) >= self._cache_size:
            self._cache.pop(next(iter(self._cache)))  # oldest inserted first

    def _verify(self, token: bytes, now: float) -> VerifiedToken:
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenError("token too large")
        try:
            header = jwt.get_unverified_header(token)
        except InvalidTokenError:
            raise TokenError("token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise TokenError(f"token algorithm {str(alg)[:16]!r} is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("token header has no kid")
        key = self._jwks.get(kid)
        if key is None:
            self._jwks.request_refresh()
            raise TokenError("token signed with an unknown key", lasting=False)
        if key.algorithm != alg:
            raise TokenError("token algorithm does not match its key")
        self.verifications += 1
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options=_OPTIONS,
            )
        except InvalidSignatureError:
            raise TokenError("token signature is invalid") from None
        except InvalidIssuerError:
            raise TokenError("token issuer is not accepted") from None
        except InvalidAudienceError:
            raise TokenError("token audience is not accepted") from None
        except MissingRequiredClaimError as exc:
            raise TokenError(f"token lacks the {exc.claim} claim") from None
        except ImmatureSignatureError:
            raise TokenError("token is not valid yet", lasting=False) from None
        except InvalidTokenError:
            raise TokenError("token is invalid") from None
        exp = _number(claims, "exp")
        if exp is None or exp + self._leeway <= now:
            raise TokenError("token expired")
        nbf = _number(claims, "nbf")
        if nbf is not None and nbf - self._leeway > now:
            raise TokenError("token is not valid yet", lasting=False)
        return self._principal_of(claims, exp)

    def _principal_of(self, claims: Mapping[str, Any], exp: float) -> VerifiedToken:
        client = claims.get("client_id") or claims.get("azp") or claims.get("sub")
        if not isinstance(client, str) or not client:
            raise TokenError("token names no client (client_id, azp or sub)")
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise TokenError("claim scope must be a space-separated string")
        bic = claims.get(self._bic_claim)
        if bic is not None and not isinstance(bic, str):
            raise TokenError(f"claim {self._bic_claim} must be a string")
        cnf = claims.get("cnf")
        thumbprint = cnf.get("x5t#S256") if isinstance(cnf, Mapping) else None
        if thumbprint is not None and not isinstance(thumbprint, str):
            raise TokenError("claim cnf.x5t#S256 must be a string")
        return VerifiedToken(
            client_id=client,
            bic=normalise_bic(bic) if bic else None,
            scopes=frozenset(scope.split()),
            deadline=exp + self._leeway,
            cert_thumbprint=thumbprint,
        )
