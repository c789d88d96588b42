"""A hot-route handler (``app.exchange``) served over ASGI: headers from the scope, bounded body
reads from ``receive``, the answer through ``send``."""

from __future__ import annotations

import asyncio
from functools import partial

from litestar import asgi
from litestar.handlers import ASGIRouteHandler
from litestar.types import ASGIApp, Receive, Scope, Send

from app.exchange import ClientDisconnectedError, Handler, RequestHeaders, content_length, too_large
from app.problems import ProblemError


def read_headers(scope: Scope) -> RequestHeaders:
    """One pass over the raw header list (cheaper than building a headers mapping)."""
    raw = scope["headers"]
    h = RequestHeaders(raw)  # type: ignore[arg-type]
    for name, value in raw:
        if name == b"x-request-id":
            h.request_id = value.decode("latin-1")
        elif name == b"x-request-timestamp":
            h.timestamp = value.decode("latin-1")
        elif name == b"content-length":
            h.content_length = content_length(value)
    return h


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


def asgi_route(handler: Handler) -> ASGIApp:
    """``handler`` as an ASGI app (served by app.fastlane, and registered in Litestar)."""

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        answer = await handler(
            scope.get("method", ""),  # type: ignore[arg-type]
            read_headers(scope),
            scope.get("client"),
            partial(read_body, receive),
        )
        if answer is None:
            return
        status, headers, body = answer
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return route


def hot_route(path: str, name: str, handler: Handler) -> ASGIRouteHandler:
    """``handler`` registered in Litestar at ``path`` (its OpenAPI entry comes from app.openapi; the
    scope is not copied: the handler only reads it)."""
    return asgi(path, is_mount=False, copy_scope=False, name=name)(asgi_route(handler))
