"""An ASGI app (the Litestar app: health, metrics, admin, docs) called from granian's RSGI interface.

The request body is streamed to the app chunk by chunk, so the app's own body limit applies as
it reads; the answer goes out in one ``response_bytes`` call when the app sends it in one body
message, and as a stream otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

from granian._granian import RSGIHTTPProtocol as HTTPProtocol
from granian._granian import RSGIProtocolClosed as ProtocolClosed
from granian._granian import RSGIProtocolError as ProtocolError
from granian.rsgi import Scope
from litestar.types import ASGIApp

from app.exchange import answer_problem
from app.lifespan import ASGI_VERSION
from app.problems import ProblemError
from app.rsgi_io import peer

log = logging.getLogger("vop.http")


def asgi_scope(scope: Scope, state: dict[str, Any]) -> dict[str, Any]:
    """The ASGI HTTP scope of an RSGI request (``path`` percent-decoded, as ASGI servers do)."""
    raw_path = scope.path
    return {
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": scope.http_version,
        "method": scope.method,
        "scheme": scope.scheme,
        "path": unquote(raw_path) if "%" in raw_path else raw_path,
        "raw_path": raw_path.encode("latin-1"),
        "query_string": scope.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in scope.headers.items()],
        "client": peer(scope.client),
        "server": peer(scope.server),
        "state": dict(state),
    }


class _Exchange:
    """``receive`` and ``send`` of one request, over the RSGI protocol object."""

    __slots__ = ("_chunks", "_done", "_finished", "_headers", "_protocol", "_status", "_stream", "answered")

    def __init__(self, protocol: HTTPProtocol) -> None:
        self._protocol = protocol
        self._chunks: AsyncIterator[bytes] | None = None
        self._done = False
        self._status = 500
        self._headers: list[tuple[str, str]] = []
        self._stream: Any = None
        self._finished = asyncio.Event()
        self.answered = False

    async def receive(self) -> dict[str, Any]:
        if self._done:
            await self._disconnected()
            return {"type": "http.disconnect"}
        if self._chunks is None:
            self._chunks = self._protocol.__aiter__()
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        except (ProtocolClosed, ProtocolError):
            self._done = True
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def _disconnected(self) -> None:
        """Until the client goes away or the answer is complete (after which an ASGI server
        reports ``http.disconnect``: a streaming answer waits for it)."""
        if self._finished.is_set():
            return
        gone = asyncio.ensure_future(self._protocol.client_disconnect())
        finished = asyncio.ensure_future(self._finished.wait())
        try:
            await asyncio.wait({gone, finished}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (gone, finished):
                if not waiter.done():
                    waiter.cancel()
            if gone.done() and not gone.cancelled():
                gone.exception()  # a closed protocol is a disconnect too; retrieve, don't raise

    def _finish(self) -> None:
        self.answered = True
        self._finished.set()

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self._status = message["status"]
            self._headers = [
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ())
            ]
        elif kind == "http.response.body":
            body: bytes = message.get("body", b"")
            more: bool = message.get("more_body", False)
            if self._stream is None and not more:
                self._protocol.response_bytes(self._status, self._headers, body)
                self._finish()
                return
            if self._stream is None:
                self._stream = self._protocol.response_stream(self._status, self._headers)
                self.answered = True
            if body:
                await self._stream.send_bytes(body)
            if not more:
                self._finish()


class AsgiBridge:
    """Serve ``app`` (ASGI) to RSGI requests; ``state`` is the lifespan state copied into scopes."""

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self._app = app
        self._state = state

    async def __call__(self, scope: Scope, protocol: HTTPProtocol) -> None:
        exchange = _Exchange(protocol)
        try:
            await self._app(asgi_scope(scope, self._state), exchange.receive, exchange.send)  # type: ignore[arg-type]
        except Exception:  # the app answers its own errors; this is a last resort, never a crash
            log.exception("unhandled error on %s", scope.path)
        if not exchange.answered:
            protocol.response_bytes(
                *answer_problem(ProblemError("INTERNAL_ERROR", "internal error", 500), None)
            )
