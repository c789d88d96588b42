"""Service configuration: one msgspec Struct, read from ``VOP_*`` environment variables.

Every field has a ``vop serve`` flag of the same name (``VOP_PSP_BICS`` ↔ ``--psp-bics``); the CLI
overlays flags on top of the environment, so the two always agree.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec

ENV_PREFIX = "VOP_"
DEMO_BIC = "VOPBDEFFXXX"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class SettingsError(ValueError):
    """A configuration value is missing or malformed (one readable line)."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    # granian's interface to the workers: rsgi (the hot routes natively, the rest through an ASGI
    # bridge; ~1.1x the checks/s of asgi, bench/RESULTS.md) or asgi.
    interface: str = "rsgi"
    # Parquet snapshot path or Redis URL (redis://, rediss://, redis+sentinel://host:port/service);
    # unset: a generated demo snapshot under ``data_dir``.
    index: str | None = None
    # Key prefix of the Redis layout (hashes ``<prefix>acct:<IBAN>``, stream ``<prefix>changes``).
    index_prefix: str = "vop:"
    # Past the feed's maximum staleness: keep serving and flag it (serve), answer NOAP (noap),
    # or fail readiness (unready). See the README for why serve is the default.
    stale_policy: str = "serve"
    # BICs this responder answers for (partyAgent must be one of them).
    psp_bics: tuple[str, ...] = (DEMO_BIC,)
    # Where generated files (demo snapshot) live; git-ignored.
    data_dir: str = "var"
    demo_accounts: int = 100_000
    # Largest request body accepted, in bytes; larger bodies get 413.
    max_body_bytes: int = 16_384
    # How far X-Request-Timestamp may be from our clock, in seconds (TIMESTAMP_INVALID beyond).
    max_clock_skew_s: float = 300.0
    log_level: str = "info"
    # Bulk endpoint (a payer's own channels): most items per request and largest body.
    bulk_max_items: int = 10_000
    bulk_max_body_bytes: int = 8 * 1024 * 1024
    # Backpressure: checks in flight per worker (a bulk counts its size; a bulk larger than
    # this is admitted only when the worker is otherwise idle). Beyond it: 503 + Retry-After.
    max_in_flight: int = 16_384
    # Every request is answered within this deadline, with an error if need be.
    deadline_ms: float = 1000.0
    # Micro-batching of concurrent single checks in one worker: window in ms (0 = off) and size.
    # Measured (bench/RESULTS.md): +10 % throughput and a lower p99 at 64 connections, p99
    # unchanged at 1 connection; so on by default.
    microbatch_ms: float = 0.5
    microbatch_max: int = 256
    # granian's own knobs, per worker (measured in bench/RESULTS.md, "granian settings"): Rust
    # runtime threads and mode (auto: st for RSGI with one thread), the event loop, the listen
    # backlog, and backpressure (connections a worker takes on at once; 0: backlog / workers).
    runtime_threads: int = 1
    runtime_mode: str = "auto"
    loop: str = "uvloop"
    backlog: int = 1024
    backpressure: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError(f"VOP_PORT must be 1-65535, got {self.port}")
        if self.workers < 1:
            raise SettingsError(f"VOP_WORKERS must be at least 1, got {self.workers}")
        if self.interface not in ("rsgi", "asgi"):
            raise SettingsError(f"VOP_INTERFACE must be rsgi or asgi, got {self.interface!r}")
        if not self.psp_bics:
            raise SettingsError("VOP_PSP_BICS must name at least one BIC")
        if self.max_body_bytes < 1024:
            raise SettingsError(f"VOP_MAX_BODY_BYTES must be at least 1024, got {self.max_body_bytes}")
        if self.max_clock_skew_s <= 0:
            raise SettingsError("VOP_MAX_CLOCK_SKEW_S must be positive")
        if self.bulk_max_items < 1 or self.bulk_max_body_bytes < self.max_body_bytes:
            raise SettingsError(
                "VOP_BULK_MAX_ITEMS must be >= 1 and VOP_BULK_MAX_BODY_BYTES >= VOP_MAX_BODY_BYTES"
            )
        if self.stale_policy not in ("serve", "noap", "unready"):
            raise SettingsError(f"VOP_STALE_POLICY must be serve, noap or unready, got {self.stale_policy!r}")
        if self.max_in_flight < 1:
            raise SettingsError("VOP_MAX_IN_FLIGHT must be at least 1")
        if not 0 < self.deadline_ms <= 5000:
            raise SettingsError("VOP_DEADLINE_MS must be in (0, 5000] (the scheme's limit is 5 s)")
        if self.runtime_threads < 1 or self.backlog < 1 or self.backpressure < 0:
            raise SettingsError(
                "VOP_RUNTIME_THREADS and VOP_BACKLOG must be at least 1, VOP_BACKPRESSURE at least 0"
            )
        if self.runtime_mode not in ("auto", "st", "mt"):
            raise SettingsError(f"VOP_RUNTIME_MODE must be auto, st or mt, got {self.runtime_mode!r}")
        if self.loop not in ("uvloop", "asyncio"):
            raise SettingsError(f"VOP_LOOP must be uvloop or asyncio, got {self.loop!r}")
        if self.microbatch_ms < 0 or self.microbatch_max < 1:
            raise SettingsError("VOP_MICROBATCH_MS must be >= 0 and VOP_MICROBATCH_MAX >= 1")

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")

    def replace(self, **changes: Any) -> Settings:
        return msgspec.structs.replace(self, **changes)


_TRUE = frozenset({"1", "on", "true", "yes"})
_FALSE = frozenset({"0", "off", "false", "no"})
S = TypeVar("S", bound=msgspec.Struct)


def _coerce(key: str, raw: str, default: Any) -> Any:
    """``raw`` (a variable's text) as the type of the field's ``default``."""
    text = raw.strip()
    if isinstance(default, bool):
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise SettingsError(f"{key} must be on or off, got {raw!r}")
    if isinstance(default, tuple):
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise SettingsError(f"{key} must be an integer, got {raw!r}") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise SettingsError(f"{key} must be a number, got {raw!r}") from None
    if default is None:
        return text or None
    return text


def struct_from_env(
    cls: type[S],
    env: Mapping[str, str],
    prefix: str = ENV_PREFIX,
    *,
    transforms: Mapping[str, Callable[[Any], Any]] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> S:
    """A settings Struct from ``<prefix><FIELD>`` variables, each parsed as its default's type;
    ``overrides`` (values or their text; None means unset) win over the environment. One
    readable SettingsError for anything malformed. The one reader of every ``VOP_*`` group."""
    defaults = cls()
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        key = prefix + field.name.upper()
        raw = (overrides or {}).get(field.name)
        if raw is None and key in env:
            raw = env[key]
        if raw is None:
            continue
        value = _coerce(key, raw, getattr(defaults, field.name)) if isinstance(raw, str) else raw
        transform = (transforms or {}).get(field.name)
        values[field.name] = transform(value) if transform else value
    try:
        return cls(**values)
    except (TypeError, msgspec.ValidationError) as exc:
        raise SettingsError(str(exc)) from None


def settings_from(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``env`` (default: ``os.environ``) with explicit ``overrides`` on top.

    Overrides whose value is None are ignored, so unset flags fall through to the environment.
    """
    return struct_from_env(
        Settings,
        os.environ if env is None else env,
        transforms={"psp_bics": lambda bics: tuple(b.upper() for b in bics)},
        overrides=overrides,
    )
