"""``SecuritySettings``: every security knob with its default, read from ``VOP_*`` variables.

``validate_security_settings`` refuses unsafe combinations (auth off, or no JWKS/audit key, on a
non-loopback bind) with ``app.settings.SettingsError`` so the service never starts half-protected.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from app.settings import LOOPBACK_HOSTS, SettingsError, struct_from_env

MIN_AUDIT_KEY_CHARS = 32
AUDIT_WRITERS = ("process", "thread")


class SecuritySettings(msgspec.Struct, frozen=True, kw_only=True):
    # VOP_AUTH: on (JWT bearer tokens required) | off (loopback binds only).
    auth: bool = True
    # Bind address and data dir, shared with app.settings.Settings (loopback decides the dev defaults).
    host: str = "127.0.0.1"
    data_dir: str = "var"
    # JWKS: a file path or an https:// URL; unset on loopback: a generated dev key (var/dev-keys/).
    jwt_jwks: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Claim holding the PSP's BIC, compared with requestingAgent.
    jwt_bic_claim: str = "bic"
    # Allowed clock difference for exp / nbf, seconds.
    jwt_leeway_s: float = 30.0
    # How often the JWKS is re-read (file) or re-fetched (URL), seconds.
    jwks_refresh_s: float = 300.0
    # Verified tokens kept (until their exp) so a repeated token skips the signature check.
    token_cache_size: int = 10_000
    # CIDRs of the proxies (Envoy) whose x-forwarded-client-cert header is trusted; empty: never read.
    trusted_proxies: tuple[str, ...] = ()
    # When on, a request must arrive through a trusted proxy with a client certificate (XFCC).
    xfcc_required: bool = False
    # Per-client token bucket: sustained requests per second and burst size; rps 0 disables it.
    rate_limit_rps: float = 1000.0
    rate_limit_burst: int = 2000
    # Clients tracked by the per-process bucket (least recently seen forgotten first).
    rate_limit_max_clients: int = 100_000
    # Name-enumeration guard: at most this many distinct names per (client, IBAN) per window.
    enum_max_names: int = 5
    enum_window_s: float = 600.0
    # (client, IBAN) pairs tracked per process (least recently used forgotten first).
    enum_max_keys: int = 200_000
    # Audit trail: on | off (off only on a loopback bind); directory default <data_dir>/audit.
    audit: bool = True
    audit_dir: str | None = None
    # Audit key (>= 32 characters): HMAC for pseudonyms and the line MACs; unset on loopback: dev key file.
    audit_key: str | None = None
    # Who seals the lines: "process" (a child process per worker, off the worker's GIL) or "thread".
    audit_writer: str = "process"
    # Bounded queue between request handlers and the writer; full: block this long, then drop.
    audit_queue_size: int = 65_536
    audit_block_s: float = 0.005
    # Start a new file once the current one exceeds this size.
    audit_rotate_bytes: int = 256 * 1024 * 1024
    # The writer process's niceness above the worker's (0-19): on a shared core the request path goes
    # first, and the writer's bursts wait (at +5 it still gets ~25 % of a core it contends for, several
    # times the ~10 µs a record it needs against the worker's ~100+ µs a request).
    audit_nice: int = 5
    # Redis for the shared rate limit and enumeration guard; unset: per process.
    redis_url: str | None = None
    redis_prefix: str = "vop:"
    # Redis socket timeout; after a failure Redis is not tried again for redis_retry_s.
    redis_timeout_s: float = 0.05
    redis_retry_s: float = 5.0

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    @property
    def audit_path(self) -> Path:
        return Path(self.audit_dir) if self.audit_dir else Path(self.data_dir) / "audit"

    def replace(self, **changes: Any) -> SecuritySettings:
        return msgspec.structs.replace(self, **changes)


def is_loopback_host(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def security_settings_from(env: Mapping[str, str] | None = None) -> SecuritySettings:
    """SecuritySettings from ``env`` (default ``os.environ``); unknown variables are ignored."""
    settings = struct_from_env(SecuritySettings, os.environ if env is None else env)
    validate_security_settings(settings)
    return settings


def parse_networks(
    cidrs: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for cidr in cidrs:
        try:
            nets.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise SettingsError(f"VOP_TRUSTED_PROXIES: not an address or CIDR: {cidr!r}") from None
    return tuple(nets)


def validate_security_settings(s: SecuritySettings) -> None:
    """Raise SettingsError for a configuration that must not start (one readable line)."""
    loopback = s.is_loopback
    if not s.auth and not loopback:
        raise SettingsError(f"VOP_AUTH=off is only allowed on a loopback bind, not VOP_HOST={s.host}")
    if s.auth and not s.jwt_jwks and not loopback:
        raise SettingsError("VOP_JWT_JWKS must be set on a non-loopback bind (dev keys are loopback-only)")
    if s.jwt_jwks:
        if not (s.jwt_issuer and s.jwt_audience):
            raise SettingsError("VOP_JWT_ISSUER and VOP_JWT_AUDIENCE must be set with VOP_JWT_JWKS")
        if "://" in s.jwt_jwks:
            url = urlsplit(s.jwt_jwks)
            plain_local = url.scheme == "http" and is_loopback_host(url.hostname or "")
            if url.scheme != "https" and not plain_local:
                raise SettingsError("VOP_JWT_JWKS URL must be https:// (http:// only for a loopback host)")
        elif not Path(s.jwt_jwks).is_file():
            raise SettingsError(f"VOP_JWT_JWKS: file not found: {s.jwt_jwks}")
    if not s.jwt_bic_claim:
        raise SettingsError("VOP_JWT_BIC_CLAIM must not be empty")
    if not 0 <= s.jwt_leeway_s <= 300:
        raise SettingsError("VOP_JWT_LEEWAY_S must be between 0 and 300 seconds")
    if s.jwks_refresh_s < 1:
        raise SettingsError("VOP_JWKS_REFRESH_S must be at least 1 second")
    if s.token_cache_size < 0:
        raise SettingsError("VOP_TOKEN_CACHE_SIZE must not be negative")
    parse_networks(s.trusted_proxies)
    if s.xfcc_required and not s.trusted_proxies:
        raise SettingsError("VOP_XFCC_REQUIRED=on needs VOP_TRUSTED_PROXIES")
    if s.rate_limit_rps < 0:
        raise SettingsError("VOP_RATE_LIMIT_RPS must not be negative (0 disables the limit)")
    if s.rate_limit_rps > 0 and s.rate_limit_burst < 1:
        raise SettingsError("VOP_RATE_LIMIT_BURST must be at least 1")
    if s.rate_limit_max_clients < 1 or s.enum_max_keys < 1:
        raise SettingsError("VOP_RATE_LIMIT_MAX_CLIENTS and VOP_ENUM_MAX_KEYS must be at least 1")
    if s.enum_max_names < 1:
        raise SettingsError("VOP_ENUM_MAX_NAMES must be at least 1")
    if s.enum_window_s <= 0:
        raise SettingsError("VOP_ENUM_WINDOW_S must be positive")
    if not s.audit and not loopback:
        raise SettingsError("VOP_AUDIT=off is only allowed on a loopback bind")
    if s.audit_key is not None and len(s.audit_key) < MIN_AUDIT_KEY_CHARS:
        raise SettingsError(f"VOP_AUDIT_KEY must be at least {MIN_AUDIT_KEY_CHARS} characters")
    if s.audit and s.audit_key is None and not loopback:
        raise SettingsError("VOP_AUDIT_KEY must be set on a non-loopback bind")
    if s.audit_writer not in AUDIT_WRITERS:
        choices = ", ".join(AUDIT_WRITERS)
        raise SettingsError(f"VOP_AUDIT_WRITER must be one of {choices}, not {s.audit_writer!r}")
    if not 0 <= s.audit_nice <= 19:
        raise SettingsError(f"VOP_AUDIT_NICE must be 0 to 19, not {s.audit_nice}")
    if s.audit_queue_size < 1 or s.audit_block_s < 0 or s.audit_rotate_bytes < 4096:
        raise SettingsError(
            "VOP_AUDIT_QUEUE_SIZE >= 1, VOP_AUDIT_BLOCK_S >= 0, VOP_AUDIT_ROTATE_BYTES >= 4096 required"
        )
    if s.redis_url and not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("VOP_REDIS_URL must be a redis://, rediss:// or unix:// URL")
    if s.redis_timeout_s <= 0 or s.redis_retry_s < 0:
        raise SettingsError("VOP_REDIS_TIMEOUT_S must be positive and VOP_REDIS_RETRY_S not negative")
