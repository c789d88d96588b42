"""Small ASGI helpers shared by the ASGI-level routes: headers, bounded body reads, answers."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from litestar.types import Receive, Scope, Send

from app.observability.tracing import Span
from app.problems import PROBLEM_MEDIA_TYPE, ProblemError, echoable_request_id
from app.timestamps import now_rfc3339_ms

log = logging.getLogger("vop.http")
JSON = (b"content-type", b"application/json")
PROBLEM_JSON = (b"content-type", PROBLEM_MEDIA_TYPE.encode())
encoder = msgspec.json.Encoder()


class ClientDisconnectedError(Exception):
    """The client went away before the body arrived."""


class RequestHeaders(msgspec.Struct, gc=False):
    request_id: str | None = None
    timestamp: str | None = None
    content_length: int = -1  # -1: no (valid) Content-Length header
    authorization: str | None = None


def read_headers(scope: Scope) -> RequestHeaders:
    """One pass over the raw header list (cheaper than building a headers mapping)."""
    h = RequestHeaders()
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            h.request_id = value.decode("latin-1")
        elif name == b"x-request-timestamp":
            h.timestamp = value.decode("latin-1")
        elif name == b"content-length":
            h.content_length = int(value) if value.isdigit() else -1
        elif name == b"authorization":
            h.authorization = value.decode("latin-1")
    return h


def too_large(limit: int) -> ProblemError:
    return ProblemError("FORMAT_ERROR", f"request body exceeds {limit} bytes", 413)


async def read_body(receive: Receive, limit: int, deadline: float, expected: int = -1) -> bytes:
    """The whole body, at most ``limit`` bytes. A body that arrives in several chunks must be
    complete by ``deadline`` (event-loop time).

    ``expected`` is the request's Content-Length (-1: none). Once that many bytes have arrived the
    body is complete, so the read stops without waiting for the final empty message: granian sends
    every body as ``more_body=True`` followed by an empty ``more_body=False`` message, and that
    second receive under an ``asyncio.timeout`` was 7 % of the worker's GIL time under load
    (py-spy --gil, bench.http mix)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if chunks:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                async with asyncio.timeout(max(remaining, 0.0)):
                    message = await receive()
            except TimeoutError:
                raise ProblemError(
                    "FORMAT_ERROR", "request body did not arrive before the deadline", 408
                ) from None
        else:
            message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError
        chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if size == expected or not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def response_timestamp() -> str:
    return now_rfc3339_ms()


async def send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_answer(send: Send, body: bytes, request_id: str) -> None:
    await send_bytes(
        send,
        200,
        body,
        [
            JSON,
            (b"x-request-id", request_id.encode()),
            (b"x-response-timestamp", response_timestamp().encode()),
        ],
    )


async def send_problem(send: Send, err: ProblemError, request_id: str | None) -> None:
    headers = [PROBLEM_JSON, *((k.lower().encode(), v.encode()) for k, v in err.headers.items())]
    echo = echoable_request_id(request_id)
    if echo:
        headers.append((b"x-request-id", echo.encode()))
    await send_bytes(send, err.status, encoder.encode(err.to_problem()), headers)


async def send_failure(send: Send, exc: Exception, request_id: str | None, span: Span, route: str) -> int:
    """Answer a request that failed with ``exc`` (call it from the ``except`` block); returns the
    status for the metrics. A ProblemError is its own answer, a client gone gets nothing (499), and
    anything else is logged with its traceback and answered 500 without internals."""
    if isinstance(exc, ProblemError):
        await send_problem(send, exc, request_id)
        return exc.status
    if isinstance(exc, ClientDisconnectedError):
        return 499
    log.exception("unhandled error on %s", route)
    span.record_error(exc)
    await send_problem(send, ProblemError("INTERNAL_ERROR", "internal error", 500), None)
    return 500
