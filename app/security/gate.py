"""``SecurityGate``: the one object the HTTP routes call for authentication, authorisation, abuse
limits and the audit trail. Built once per worker with ``SecurityGate.from_settings``.

Cost on the hot path (bench/bench_auth.py): a repeated (cached) token is a header scan, a dict lookup
and a clock read; only a token seen for the first time pays for a signature check.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import msgspec

from app.problems import ProblemError
from app.security.audit import AuditTrail
from app.security.audit_process import AuditProcess
from app.security.devkeys import DEV_AUDIENCE, DEV_ISSUER, dev_jwks, ensure_dev_audit_key, mint_dev_token
from app.security.enumeration import EnumerationGuard
from app.security.jwks import JwksCache, JwksError, fetcher_for
from app.security.pseudonym import Pseudonymiser
from app.security.ratelimit import RateLimiter
from app.security.redis_backend import RedisBackend
from app.security.settings import SecuritySettings, parse_networks, validate_security_settings
from app.security.tokens import TokenError, TokenVerifier, normalise_bic
from app.security.xfcc import ClientCert, ProxyTrust, XfccError, client_cert
from app.settings import SettingsError
from matching.resilience import CircuitBreaker

log = logging.getLogger("vop.security")

SCOPE_VERIFY = "vop:verify"
SCOPE_BULK = "vop:bulk"
SCOPE_ADMIN = "vop:admin"
ALL_SCOPES = frozenset({SCOPE_VERIFY, SCOPE_BULK, SCOPE_ADMIN})
# Problem code the lead adds to app.problems.PROBLEM_CODES for 429 answers.
RATE_LIMITED_CODE = "RATE_LIMITED"

_INVALID_TOKEN = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class Principal(msgspec.Struct, frozen=True, gc=False):
    client_id: str
    bic: str | None
    scopes: frozenset[str]
    # Identity of the client certificate forwarded by a trusted proxy (XFCC), if any.
    cert: str | None = None


def _unauthorised(detail: str) -> ProblemError:
    return ProblemError("CLIENT_INVALID", detail, 401, _INVALID_TOKEN)


def audit_key_for(settings: SecuritySettings) -> bytes:
    """The audit key: ``VOP_AUDIT_KEY``, or on loopback the generated dev key file (for ``vop audit``)."""
    if settings.audit_key:
        return settings.audit_key.encode()
    if not settings.is_loopback:
        raise SettingsError("VOP_AUDIT_KEY must be set on a non-loopback bind")
    return ensure_dev_audit_key(settings.data_dir).encode()


def uses_dev_key(settings: SecuritySettings) -> bool:
    return settings.auth and not settings.jwt_jwks


def dev_token_banner(
    settings: SecuritySettings, bic: str = "REQBDEFFXXX", ttl_s: int = 8 * 3600
) -> str | None:
    """For ``vop serve`` on the dev key: a line with a ready token; None when a real JWKS is configured."""
    if not uses_dev_key(settings):
        return None
    token = mint_dev_token(
        settings.data_dir,
        ("vop:verify", "vop:bulk"),
        bic,
        ttl_s,
        issuer=settings.jwt_issuer or DEV_ISSUER,
        audience=settings.jwt_audience or DEV_AUDIENCE,
        bic_claim=settings.jwt_bic_claim,
    )
    return (
        f"Auth: local dev key (var/dev-keys/). Token for {bic}, scopes vop:verify vop:bulk, "
        f"valid {ttl_s // 3600} h — send it as\n  -H 'Authorization: Bearer {token}'\n"
        "Mint others with: vop token --scope vop:verify --bic <BIC> [--ttl SECONDS]"
    )


class SecurityGate:
    def __init__(
        self,
        settings: SecuritySettings,
        *,
        tokens: TokenVerifier | None,
        jwks: JwksCache | None,
        limiter: RateLimiter,
        guard: EnumerationGuard,
        trail: AuditTrail | AuditProcess | None,
        redis_backend: RedisBackend | None = None,
    ) -> None:
        self.settings = settings
        self._auth = settings.auth
        self._tokens = tokens
        self._jwks = jwks
        self._limiter = limiter
        self._guard = guard
        self._trail = trail
        self._redis = redis_backend
        self._helper: ThreadPoolExecutor | None = None  # made on first use (after the fork)
        self._warming: asyncio.Task[None] | None = None
        self._proxies = ProxyTrust(parse_networks(settings.trusted_proxies))
        self._xfcc_required = settings.xfcc_required

    @classmethod
    def from_settings(
        cls,
        settings: SecuritySettings,
        *,
        clock: Callable[[], float] = time.time,
        start_threads: bool = True,
    ) -> SecurityGate:
        """Validate ``settings`` (SettingsError if unsafe) and build the gate with its helpers."""
        validate_security_settings(settings)
        jwks: JwksCache | None = None
        tokens: TokenVerifier | None = None
        if settings.auth:
            if settings.jwt_jwks:
                jwks = JwksCache(
                    fetcher_for(settings.jwt_jwks), settings.jwks_refresh_s, name=settings.jwt_jwks
                )
                if not jwks.refresh():
                    if "://" not in settings.jwt_jwks:
                        raise SettingsError(f"VOP_JWT_JWKS {settings.jwt_jwks}: {jwks.last_error}")
                    log.error("JWKS not loaded yet (%s); tokens are refused until it is", jwks.last_error)
                if start_threads:
                    jwks.start()
                issuer, audience = settings.jwt_issuer or "", settings.jwt_audience or ""
            else:
                try:
                    jwks = JwksCache.static(dev_jwks(settings.data_dir))
                except (OSError, ValueError, JwksError) as exc:
                    raise SettingsError(f"dev key under {settings.data_dir}/dev-keys: {exc}") from None
                issuer = settings.jwt_issuer or DEV_ISSUER
                audience = settings.jwt_audience or DEV_AUDIENCE
            tokens = TokenVerifier(
                jwks,
                issuer=issuer,
                audience=audience,
                bic_claim=settings.jwt_bic_claim,
                leeway_s=settings.jwt_leeway_s,
                cache_size=settings.token_cache_size,
                clock=clock,
            )
        backend = (
            RedisBackend(
                settings.redis_url, timeout_s=settings.redis_timeout_s, retry_s=settings.redis_retry_s
            )
            if settings.redis_url
            else None
        )
        key = audit_key_for(settings) if settings.audit else None
        pseudonyms = Pseudonymiser(key if key is not None else _process_key())
        limiter = RateLimiter(
            settings.rate_limit_rps,
            settings.rate_limit_burst,
            max_clients=settings.rate_limit_max_clients,
            redis_backend=backend,
            prefix=settings.redis_prefix,
            clock=clock,
        )
        guard = EnumerationGuard(
            pseudonyms,
            settings.enum_max_names,
            settings.enum_window_s,
            max_keys=settings.enum_max_keys,
            redis_backend=backend,
            prefix=settings.redis_prefix,
            clock=clock,
        )
        trail = _audit_writer(settings, key, clock) if key is not None else None
        return cls(
            settings,
            tokens=tokens,
            jwks=jwks,
            limiter=limiter,
            guard=guard,
            trail=trail,
            redis_backend=backend,
        )

    # -- authentication / authorisation ---------------------------------------------------------
    def authenticate(
        self,
        headers: Iterable[tuple[bytes, bytes]],
        client: tuple[str, int] | None,
        required_scope: str,
    ) -> Principal:
        """The caller's Principal, or ProblemError 401 (no/invalid token) / 403 (scope missing)."""
        authorization: bytes | None = None
        forwarded: bytes | None = None
        for name, value in headers:
            if name == b"authorization":
                authorization = value
            elif name == b"x-forwarded-client-cert":
                forwarded = value
        cert = self._forwarded_cert(forwarded, client) if self._proxies else None
        if self._xfcc_required and cert is None:
            raise _unauthorised("a client certificate (mTLS through the trusted proxy) is required")
        if not self._auth or self._tokens is None:
            peer = client[0] if client else "unknown"
            ident = cert.identity if cert else f"anonymous@{peer}"
            return Principal(ident, None, ALL_SCOPES, cert.identity if cert else None)
        if authorization is None:
            raise _unauthorised("missing bearer token")
        if authorization[:7].lower() != b"bearer ":
            raise _unauthorised("authorization scheme must be Bearer")
        try:
            token = self._tokens.verify(authorization[7:].strip())
        except TokenError as exc:
            raise _unauthorised(exc.detail) from None
        if token.cert_thumbprint is not None and (cert is None or cert.x5t_s256 != token.cert_thumbprint):
            raise _unauthorised("token is bound to a client certificate that was not presented")
        if required_scope not in token.scopes:
            raise ProblemError(
                "CLIENT_INVALID",
                f"token lacks the {required_scope} scope",
                403,
                {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{required_scope}"'},
            )
        return Principal(token.client_id, token.bic, token.scopes, cert.identity if cert else None)

    def _forwarded_cert(self, value: bytes | None, client: tuple[str, int] | None) -> ClientCert | None:
        if value is None or client is None or not self._proxies.trusts(client[0]):
            return None
        try:
            return client_cert(value.decode("latin-1"))
        except XfccError as exc:
            log.warning("ignoring malformed x-forwarded-client-cert from %s: %s", client[0], exc)
            return None

    def check_requester(self, principal: Principal, requesting_bic: str) -> None:
        """403 CLIENT_INCONSISTENT unless the token's BIC is requestingAgent's (8/11-char forms equal)."""
        if not self._auth:
            return
        if principal.bic is None:
            raise ProblemError(
                "CLIENT_INCONSISTENT",
                f"token carries no {self.settings.jwt_bic_claim} claim to compare with requestingAgent",
                403,
            )
        if normalise_bic(requesting_bic) != principal.bic:
            raise ProblemError(
                "CLIENT_INCONSISTENT", "requestingAgent BIC differs from the authenticated client's BIC", 403
            )

    # -- abuse limits ---------------------------------------------------------------------------
    def rate_limit(self, principal: Principal, cost: int = 1) -> float | None:
        """None: allowed. Else seconds until it would be (answer 429 with Retry-After = ceil of it)."""
        return self._limiter.acquire(principal.client_id, cost)

    @property
    def rate_limit_enabled(self) -> bool:
        return self._limiter.enabled

    @property
    def limits_wait_on_redis(self) -> bool:
        """True when the rate limit and the enumeration guard ask Redis: then callers should not
        wait for them in the event loop (``app.security.client_batch``, ``*_many_async``)."""
        return self._redis is not None

    async def rate_limit_many_async(self, principal: Principal, costs: Sequence[int]) -> list[float | None]:
        """``rate_limit`` for each cost, in order; the event loop serves others while Redis answers."""
        return await self._limiter.acquire_many_async(principal.client_id, costs)

    def enumeration_guard(self, principal: Principal, iban: str, name: str) -> bool:
        """True: this client tried too many distinct names on this IBAN — answer NOAP, audit forced=True."""
        return self._guard.over_cap(principal.client_id, iban, name)

    def enumeration_guard_many(self, principal: Principal, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """``enumeration_guard`` for each (iban, name) of a bulk request, in order."""
        return self._guard.over_cap_many(principal.client_id, pairs)

    async def enumeration_guard_many_async(
        self, principal: Principal, pairs: Sequence[tuple[str, str]]
    ) -> list[bool]:
        """``enumeration_guard_many``; the event loop serves others while Redis answers."""
        return await self._guard.over_cap_many_async(principal.client_id, pairs)

    def enumeration_guard_many_future(
        self, principal: Principal, pairs: Sequence[tuple[str, str]]
    ) -> Future[list[bool]]:
        """``enumeration_guard_many`` started now; the future gives its answer (the bulk route's way:
        its event loop is busy matching meanwhile; single checks await ``*_many_async`` instead).

        With Redis the scripts run on a helper thread while the caller goes on: a 10,000-item bulk
        request waited ~100 ms on them (bench_bulk, VOP_REDIS_URL set). Without Redis the
        per-process guard answers here: it is Python throughout, and a thread would only take turns
        with the caller for the GIL."""
        if self._redis is None or not pairs:
            done: Future[list[bool]] = Future()
            done.set_result(self.enumeration_guard_many(principal, pairs))
            return done
        if self._helper is None:
            self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vop-enum-guard")
        return self._helper.submit(self.enumeration_guard_many, principal, pairs)

    # -- audit ----------------------------------------------------------------------------------
    def audit(
        self,
        *,
        request_id: str,
        principal: Principal,
        iban: str,
        name: str | None,
        code: str,
        reason: str,
        index_version: int,
        forced: bool,
    ) -> None:
        if self._trail is not None:
            self._trail.record(
                request_id=request_id,
                client_id=principal.client_id,
                iban=iban,
                name=name,
                code=code,
                reason=reason,
                index_version=index_version,
                forced=forced,
            )

    def audit_many(
        self,
        *,
        request_id: str,
        principal: Principal,
        index_version: int,
        entries: Sequence[tuple[str, str | None, str, str, bool]],
    ) -> None:
        """``audit`` for each (iban, name, code, reason, forced) of a bulk request, in one call."""
        if self._trail is not None and entries:
            self._trail.record_many(
                request_id=request_id,
                client_id=principal.client_id,
                index_version=index_version,
                entries=entries,
            )

    @property
    def audit_files(self) -> list[Path]:
        return list(self._trail.files) if self._trail is not None else []

    def breakers(self) -> list[CircuitBreaker]:
        """Circuit breakers of this gate's dependencies (for the metrics)."""
        return [self._redis.breaker] if self._redis is not None else []

    def metrics(self) -> dict[str, int]:
        """Counters for the metrics endpoint (all monotonic except redis_healthy)."""
        trail = self._trail
        return {
            "audit_written": trail.written if trail else 0,
            "audit_dropped": trail.dropped if trail else 0,
            "audit_write_errors": trail.write_errors if trail else 0,
            "audit_pending": trail.pending if trail else 0,
            "audit_writer_restarts": trail.restarts if trail else 0,
            "rate_limited": self._limiter.limited,
            "enumeration_forced": self._guard.forced,
            "token_verifications": self._tokens.verifications if self._tokens else 0,
            "jwks_generation": self._jwks.generation if self._jwks else 0,
            "redis_failures": self._redis.failures if self._redis else 0,
            "redis_healthy": int(self._redis.healthy) if self._redis else 0,
        }

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the audit trail's shipping on the worker's event loop (app start-up, inside the loop;
        ``AuditProcess.attach``): no thread of this process wakes per batch."""
        if isinstance(self._trail, AuditProcess):
            self._trail.attach(loop)
        if self._redis is not None:  # connect and load the single checks' scripts before traffic
            scripts = [self._guard.async_script()]
            if self._limiter.enabled:
                scripts.append(self._limiter.async_script())
            self._warming = loop.create_task(self._redis.warm_async(scripts))

    async def aclose(self) -> None:
        """``close`` from the event loop, closing the asyncio Redis connections there first."""
        if self._warming is not None:
            self._warming.cancel()
        if self._redis is not None:
            await self._redis.aclose()
        self.close()

    def close(self) -> None:
        """Flush and close the audit trail, stop the JWKS refresher, close Redis. Idempotent."""
        if self._trail is not None:
            self._trail.close()
        if self._jwks is not None:
            self._jwks.close()
        if self._helper is not None:
            self._helper.shutdown(wait=True)
        if self._redis is not None:
            self._redis.close()


def _process_key() -> bytes:
    return secrets.token_bytes(32)


class _WriterFactory(Protocol):
    def __call__(
        self,
        directory: Path,
        key: bytes,
        *,
        queue_size: int,
        block_s: float,
        rotate_bytes: int,
        clock: Callable[[], float],
    ) -> AuditTrail | AuditProcess: ...


def _audit_writer(
    settings: SecuritySettings, key: bytes, clock: Callable[[], float]
) -> AuditTrail | AuditProcess:
    """The audit trail's writer: a child process (the default; at its own niceness) or a thread."""
    factory: _WriterFactory = (
        functools.partial(AuditProcess, nice=settings.audit_nice)
        if settings.audit_writer == "process"
        else AuditTrail
    )
    return factory(
        settings.audit_path,
        key,
        queue_size=settings.audit_queue_size,
        block_s=settings.audit_block_s,
        rotate_bytes=settings.audit_rotate_bytes,
        clock=clock,
    )
