"""The throughput ceiling: a do-nothing ASGI app served by granian exactly as ``vop serve`` is.

``app`` is a plain ASGI callable (no framework): it drains the request body and answers a fixed
``{"partyNameMatch":"MTCH"}``, echoing the request's ``X-Request-ID`` as the real service does (the
locust suite counts a missing echo as a failure). ``python -m bench.noop_app --port P --workers N``
serves it with the same granian options as ``app.cli._serve`` (ASGI interface, uvloop, same worker count), so
the gap between this and ``vop serve`` is the cost of the service itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from granian import Granian
from granian.constants import Interfaces, Loops

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b'{"partyNameMatch":"MTCH"}'
_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]
_START: Message = {"type": "http.response.start", "status": 200, "headers": _HEADERS}
_BODY: Message = {"type": "http.response.body", "body": BODY, "more_body": False}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    while True:  # read the whole body, as a real handler would
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            break
    start = _START
    for name, value in scope["headers"]:
        if name == b"x-request-id":  # ASGI header names are lower-case
            start = {**_START, "headers": [*_HEADERS, (b"x-request-id", value)]}
            break
    await send(start)
    await send(_BODY)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.noop_app",
        description="Serve the do-nothing ASGI app on granian with vop serve's options.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="port (default 8081)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    Granian(
        "bench.noop_app:app",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=args.workers,
        loop=Loops.uvloop,
        log_level=args.log_level,
        respawn_failed_workers=True,
    ).serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
