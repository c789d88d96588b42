"""One HTTP exchange of the hot routes, independent of the server interface (ASGI or RSGI).

A route handler is a coroutine ``handler(method, headers, client, read_body) -> Answer | None``:
it gets the request line's method, the few headers it needs (parsed once), the peer address and
a function that reads the body, and returns the answer (status, header pairs, body), or None when
the client went away and nobody is left to answer. ``app.asgi_io`` and ``app.rsgi_io`` turn a
handler into an ASGI or an RSGI route; the handler itself never sees either protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec

from app.observability.logging import LogContext, clear_request
from app.observability.tracing import Span
from app.problems import PROBLEM_MEDIA_TYPE, ProblemError, echoable_request_id
from app.timestamps import now_rfc3339_ms

if TYPE_CHECKING:
    from app.observability.metrics import Metrics

log = logging.getLogger("vop.http")
encoder = msgspec.json.Encoder()

# (status, header pairs, body). Header names are lower-case.
Answer = tuple[int, list[tuple[str, str]], bytes]
# read_body(limit, deadline, expected): the whole body, at most ``limit`` bytes; ``deadline`` is
# event-loop time, ``expected`` the Content-Length (-1: none).
BodyReader = Callable[[int, float, int], Awaitable[bytes]]
Client = tuple[str, int] | None
Handler = Callable[[str, "RequestHeaders", Client, BodyReader], Awaitable[Answer | None]]

_JSON = "application/json"


class ClientDisconnectedError(Exception):
    """The client went away before the body arrived."""


class RequestHeaders(msgspec.Struct, gc=False):
    """The request headers the hot routes read, parsed once per request.

    ``raw`` holds (name, value) byte pairs for authentication and trace propagation: the whole
    ASGI header list, or, under RSGI, just the headers those two read."""

    raw: list[tuple[bytes, bytes]]
    request_id: str | None = None
    timestamp: str | None = None
    content_length: int = -1  # -1: no (valid) Content-Length header


def content_length(value: str | bytes) -> int:
    return int(value) if value.isdigit() else -1


def too_large(limit: int) -> ProblemError:
    return ProblemError("FORMAT_ERROR", f"request body exceeds {limit} bytes", 413)


def answer_json(body: bytes, request_id: str) -> Answer:
    """A 200 answer with the request id echoed and our response timestamp."""
    return (
        200,
        [("content-type", _JSON), ("x-request-id", request_id), ("x-response-timestamp", now_rfc3339_ms())],
        body,
    )


def answer_problem(err: ProblemError, request_id: str | None) -> Answer:
    headers = [("content-type", PROBLEM_MEDIA_TYPE), *((k.lower(), v) for k, v in err.headers.items())]
    echo = echoable_request_id(request_id)
    if echo:
        headers.append(("x-request-id", echo))
    return err.status, headers, encoder.encode(err.to_problem())


def answer_failure(exc: Exception, request_id: str | None, span: Span, route: str) -> Answer | None:
    """The answer to a request that failed with ``exc`` (call it from the ``except`` block). A
    ProblemError is its own answer, a client gone gets none, and anything else is logged with its
    traceback and answered 500 without internals."""
    if isinstance(exc, ProblemError):
        return answer_problem(exc, request_id)
    if isinstance(exc, ClientDisconnectedError):
        return None
    log.exception("unhandled error on %s", route)
    span.record_error(exc)
    return answer_problem(ProblemError("INTERNAL_ERROR", "internal error", 500), None)


def finish_exchange(
    answer: Answer | None,
    span: Span,
    metrics: Metrics,
    route: str,
    seconds: float,
    *,
    log_context: LogContext,
) -> None:
    """The end of every hot-route exchange, answered or not: the status on the span and in the
    metrics (with the latency, ``Metrics.request_started``'s partner), the request's log context
    cleared. Nobody answered (the client went away) counts as 499, nginx's "client closed request"."""
    status = 499 if answer is None else answer[0]
    span.set_attribute("http.response.status_code", status)
    metrics.request_finished(route, status, seconds)
    clear_request(log_context)
