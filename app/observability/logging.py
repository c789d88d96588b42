"""Structured JSON logs: structlog for our own lines, and every stdlib logger (granian's, Litestar's,
ours) rendered by the same processor chain, so each line is one JSON object with ``timestamp``,
``level``, ``logger``, ``event`` and — inside a request — ``request_id`` and ``trace_id``.

Request context is one ``ContextVar`` holding ``(request_id, trace_id)`` (one ``set`` per request,
~0.05 µs; structlog's ``bind_contextvars`` would cost a context var per key). Each ASGI request runs
in its own task, so the value never leaks into another request.

No personal data in logs: never log names or IBANs. If a line must correlate with an account, log
``pseudonymise(iban)`` — a keyed HMAC-SHA256 (key: ``VOP_LOG_PSEUDONYM_KEY``). As a safety net the
``redact_pii`` processor replaces the values of well-known personal-data keys (``iban``, ``name``,
``matched_name``, …) with their pseudonyms on every line.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import sys
import unicodedata
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar, Token
from typing import IO, Any, Final

import orjson
import structlog
from structlog.types import EventDict, Processor, WrappedLogger

__all__ = [
    "LEVEL_ENV",
    "PII_KEYS",
    "PSEUDONYM_KEY_ENV",
    "JsonFormatter",
    "bind_request",
    "clear_request",
    "configure_logging",
    "current_request",
    "get_logger",
    "granian_log_dictconfig",
    "pseudonymise",
]

LEVEL_ENV: Final = "VOP_LOG_LEVEL"
PSEUDONYM_KEY_ENV: Final = "VOP_LOG_PSEUDONYM_KEY"
#: Keys whose values are personal data; ``redact_pii`` pseudonymises them on every line.
PII_KEYS: Final = frozenset(
    {"iban", "name", "names", "matched_name", "matchedName", "party_name", "payee_name", "holder"}
)
#: stdlib loggers routed into the root JSON handler (their own handlers are removed).
ROUTED_LOGGERS: Final = ("_granian", "granian", "granian.access", "litestar", "vop", "asyncio")

_REQUEST: ContextVar[tuple[str | None, str | None]] = ContextVar("vop_request", default=(None, None))
_key_cache: dict[str, bytes] = {}


# ---- request context ------------------------------------------------------------------------
#: What ``bind_request`` returns and ``clear_request`` takes back.
LogContext = Token[tuple[str | None, str | None]]


def bind_request(request_id: str | None, trace_id: str | None = None) -> LogContext:
    """Attach the request id and trace id to every log line of the current context."""
    return _REQUEST.set((request_id, trace_id))


def clear_request(token: LogContext | None = None) -> None:
    if token is not None:
        _REQUEST.reset(token)
    else:
        _REQUEST.set((None, None))


def current_request() -> tuple[str | None, str | None]:
    return _REQUEST.get()


def add_request_context(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    rid, tid = _REQUEST.get()
    if rid is not None:
        event.setdefault("request_id", rid)
    if tid:
        event.setdefault("trace_id", tid)
    return event


# ---- pseudonyms -----------------------------------------------------------------------------
def _key(env: Mapping[str, str]) -> bytes:
    raw = env.get(PSEUDONYM_KEY_ENV, "")
    cached = _key_cache.get(raw)
    if cached is not None:
        return cached
    # Without a configured key: a random per-process key (pseudonyms correlate within one
    # process only, and can never be reversed by guessing IBANs offline).
    key = raw.encode() if raw else secrets.token_bytes(32)
    _key_cache[raw] = key
    return key


def _canonical(value: str) -> str:
    text = unicodedata.normalize("NFKC", value).casefold()
    return "".join(text.split())


def pseudonymise(value: str, *, kind: str = "pii", env: Mapping[str, str] | None = None) -> str:
    """A stable keyed pseudonym (``kind:`` + 16 hex chars of HMAC-SHA256) for an IBAN or a name.

    Spacing and case do not matter (``"DE89 3704…"`` and ``"de893704…"`` give the same pseudonym),
    so lines about one account correlate; without the key the value cannot be recovered."""
    digest = hmac.new(_key(os.environ if env is None else env), _canonical(value).encode(), hashlib.sha256)
    return f"{kind}:{digest.hexdigest()[:16]}"


def redact_pii(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    for key in PII_KEYS.intersection(event):
        value = event[key]
        if isinstance(value, str):
            event[key] = pseudonymise(value, kind=key)
        elif isinstance(value, list | tuple):
            event[key] = [pseudonymise(str(v), kind=key) for v in value]
        elif value is not None:
            event[key] = "[redacted]"
    return event


# ---- rendering ------------------------------------------------------------------------------
def _serialize(obj: Any, **_kw: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        add_request_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_pii,
    ]


def _renderer(json: bool) -> Processor:
    if json:
        return structlog.processors.JSONRenderer(serializer=_serialize)
    return structlog.dev.ConsoleRenderer(colors=False)


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """A stdlib ``logging.Formatter`` writing the same JSON lines (usable from ``dictConfig``)."""

    def __init__(self, *args: Any, json: bool = True, **kwargs: Any) -> None:
        super().__init__(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _renderer(json),
            ],
            foreign_pre_chain=_shared_processors(),
        )


def _level(level: str) -> int:
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}")
    return value


def configure_logging(level: str | None = None, json: bool = True, *, stream: IO[str] | None = None) -> None:
    """Route structlog and all stdlib logging through one JSON renderer on ``stream`` (stderr).

    ``level`` defaults to ``VOP_LOG_LEVEL`` (``info``). Idempotent: calling again replaces the
    handler. Call once per process (each granian worker calls it from the app factory)."""
    lvl = _level(level or os.environ.get(LEVEL_ENV, "info"))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(json=json))
    handler.set_name("vop-json")
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(lvl)
    for name in ROUTED_LOGGERS:
        lg = logging.getLogger(name)
        for old in list(lg.handlers):
            lg.removeHandler(old)
        lg.propagate = True
        lg.setLevel(logging.NOTSET)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    """A structlog logger: ``get_logger("vop.http").info("index_swapped", version=3)``."""
    return structlog.stdlib.get_logger(name)


def granian_log_dictconfig(level: str | None = None) -> dict[str, Any]:
    """The ``log_dictconfig`` to give ``Granian(...)``, so its main process and workers log JSON
    through :class:`JsonFormatter` from their first line (before the app factory runs)."""
    lvl = (level or os.environ.get(LEVEL_ENV, "info")).upper()
    handlers: MutableMapping[str, Any] = {
        "json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "app.observability.logging.JsonFormatter"}},
        "handlers": handlers,
        "loggers": {
            "_granian": {"handlers": ["json"], "level": lvl, "propagate": False},
            "granian.access": {"handlers": ["json"], "level": lvl, "propagate": False},
        },
        "root": {"handlers": ["json"], "level": lvl},
    }
