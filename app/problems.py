"""Scheme-shaped errors: every failure leaves as an RFC 9457 problem JSON with a ``code``.

``ProblemError`` is raised by validation and handlers; ``exception_handlers()`` maps it, Litestar's
own HTTP errors (404, 405, 413, body validation) and anything unexpected onto ``Problem`` bodies.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from app.wire import Problem

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "/vop/v1/problems/"
log = logging.getLogger("vop.errors")

# code -> (title, description). The descriptions are served at PROBLEM_BASE + code.
PROBLEM_CODES: dict[str, tuple[str, str]] = {
    "FORMAT_ERROR": (
        "Request is malformed",
        "The body or a header does not follow the VoP API: malformed JSON, a wrong type, a missing "
        "or empty field, a name over 140 characters or outside the Latin script, a malformed IBAN or "
        "BIC, a body over the size limit, or a partyAgent this responder does not serve.",
    ),
    "TIMESTAMP_INVALID": (
        "Request timestamp is invalid",
        "X-Request-Timestamp is missing, not an RFC 3339 UTC timestamp, or too far from our clock.",
    ),
    "CLIENT_INVALID": (
        "Client is not authorised",
        "The requesting client could not be authenticated or may not use this operation.",
    ),
    "CLIENT_INCONSISTENT": (
        "Client identity is inconsistent",
        "The requestingAgent BIC in the body differs from the authenticated client identity.",
    ),
    "RATE_LIMITED": (
        "Too many requests",
        "This client sent more requests than its rate limit allows; retry after Retry-After seconds.",
    ),
    "NOT_FOUND": ("Not found", "No resource is served at this path."),
    "METHOD_NOT_ALLOWED": ("Method not allowed", "This path does not accept this HTTP method."),
    "SERVICE_UNAVAILABLE": (
        "Service unavailable",
        "The responder cannot answer right now (index not loaded yet, shedding load, or draining).",
    ),
    "INTERNAL_ERROR": ("Internal error", "The responder failed unexpectedly; the failure was logged."),
}

_encoder = msgspec.json.Encoder()


class ProblemError(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        code: str,
        detail: str,
        status: int = 400,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        if code not in PROBLEM_CODES:
            raise ValueError(f"unknown problem code {code}")
        self.code = code
        self.detail = detail
        self.status = status
        self.headers = dict(headers or {})

    def to_problem(self, instance: str | None = None) -> Problem:
        return Problem(
            type=PROBLEM_BASE + self.code,
            title=PROBLEM_CODES[self.code][0],
            status=self.status,
            code=self.code,
            detail=self.detail,
            instance=instance,
        )


def problem_response(err: ProblemError, request_id: str | None = None) -> Response[bytes]:
    headers = dict(err.headers)
    if request_id:
        headers["X-Request-ID"] = request_id
    return Response(
        content=_encoder.encode(err.to_problem()),
        status_code=err.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def echoable_request_id(rid: str | None) -> str | None:
    """The request id to echo on an error: only something that looks like an id, never arbitrary text."""
    if rid and len(rid) <= 64 and rid.replace("-", "").isalnum():
        return rid
    return None


def _request_id(request: Request[Any, Any, Any]) -> str | None:
    return echoable_request_id(request.headers.get("x-request-id"))


def _on_problem(request: Request[Any, Any, Any], exc: ProblemError) -> Response[bytes]:
    return problem_response(exc, _request_id(request))


def _on_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    messages = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict) and item.get("message"):
            messages.append(str(item["message"]))
    detail = "; ".join(messages) or "request body is not valid JSON of the expected shape"
    return problem_response(ProblemError("FORMAT_ERROR", detail), _request_id(request))


_STATUS_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "FORMAT_ERROR", 503: "SERVICE_UNAVAILABLE"}


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    code = _STATUS_CODES.get(status, "FORMAT_ERROR" if 400 <= status < 500 else "INTERNAL_ERROR")
    detail = exc.detail if status != 413 else "request body exceeds the size limit"
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() == "allow"}
    return problem_response(ProblemError(code, str(detail), status, headers), _request_id(request))


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(ProblemError("INTERNAL_ERROR", "internal error", 500), _request_id(request))


def exception_handlers() -> ExceptionHandlersMap:
    return {
        ProblemError: _on_problem,
        ValidationException: _on_validation,
        HTTPException: _on_http,
        Exception: _on_unexpected,
    }
