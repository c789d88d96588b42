"""A hot-route handler (``app.exchange``) served over granian's RSGI interface: headers from the
scope's header map, the body from the protocol object, the answer in one ``response_bytes`` call.

Measured (bench/RESULTS.md): a do-nothing RSGI app on granian serves 1.38x the requests of the
same do-nothing app over ASGI; RSGI hands the body over in one call and takes the answer in one,
where ASGI needs a receive and two awaited sends, each a message dict and a future.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from granian._granian import RSGIHTTPProtocol as HTTPProtocol
from granian._granian import RSGIProtocolClosed as ProtocolClosed
from granian._granian import RSGIProtocolError as ProtocolError
from granian.rsgi import Scope

from app.body_deadlines import BodyDeadlines
from app.exchange import Client, ClientDisconnectedError, Handler, RequestHeaders, content_length, too_large
from app.problems import ProblemError

RSGIRoute = Callable[[Scope, HTTPProtocol], Coroutine[Any, Any, None]]
# The headers authentication and trace propagation read (app.security.gate, app.observability.tracing).
_RAW = tuple(
    (name, name.encode())
    for name in ("authorization", "x-forwarded-client-cert", "traceparent", "tracestate")
)


# granian's header map answers None to get() for a value that is not text (non-ASCII bytes) although
# the header is there; such a value stands in as one that fails validation, not as a missing header.
_UNREADABLE = "\ufffd"


def read_headers(scope: Scope) -> RequestHeaders:
    headers = scope.headers
    get = headers.get
    raw = []
    for name, key in _RAW:
        value = get(name)
        if value is not None:
            raw.append((key, value.encode("latin-1", "replace")))
        elif name in headers:
            raw.append((key, b"\xff"))
    length = get("content-length")
    return RequestHeaders(
        raw,
        _text(headers, "x-request-id"),
        _text(headers, "x-request-timestamp"),
        -1 if length is None else content_length(length),
    )


def _text(headers: Any, name: str) -> str | None:
    value: str | None = headers.get(name)
    if value is None and name in headers:
        return _UNREADABLE
    return value


def peer(client: str) -> Client:
    """``"203.0.113.7:51234"`` or ``"[2001:db8::1]:51234"`` as ``(host, port)``, ASGI's form."""
    host, _, port = client.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


async def read_body(
    protocol: HTTPProtocol, deadlines: BodyDeadlines, limit: int, deadline: float, expected: int = -1
) -> bytes:
    """The whole body, at most ``limit`` bytes (the caller has refused a larger Content-Length),
    complete by ``deadline`` (event-loop time) or a 408.

    With a Content-Length the server reads exactly that many bytes and hands them over at once;
    the deadline is kept by ``deadlines`` (one sweep per loop: a timer per request costs ~6 µs,
    measured). Without one (chunked), the chunks are read under an ``asyncio.timeout`` and the limit."""
    try:
        if expected >= 0:
            loop = asyncio.get_running_loop()
            task = asyncio.current_task(loop)
            if task is None:  # not in a task (cannot happen under granian): no deadline to keep
                body = await protocol()
            else:
                deadlines.watch(task, deadline, loop)
                try:
                    body = await protocol()
                except asyncio.CancelledError:
                    if deadlines.expired(task):
                        raise TimeoutError from None
                    raise
                finally:
                    deadlines.done(task)
            if len(body) > limit:
                raise too_large(limit)
            return body
        chunks: list[bytes] = []
        size = 0
        async with asyncio.timeout_at(deadline):
            async for chunk in protocol:
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
        return b"".join(chunks)
    except TimeoutError:
        raise ProblemError("FORMAT_ERROR", "request body did not arrive before the deadline", 408) from None
    except (ProtocolClosed, ProtocolError):
        raise ClientDisconnectedError from None


def rsgi_route(handler: Handler) -> RSGIRoute:
    """``handler`` as an RSGI HTTP route (served by app.rsgi)."""

    deadlines = BodyDeadlines()

    async def route(scope: Scope, protocol: HTTPProtocol) -> None:
        answer = await handler(
            scope.method, read_headers(scope), peer(scope.client), partial(read_body, protocol, deadlines)
        )
        if answer is not None:
            protocol.response_bytes(*answer)

    return route
