"""``POST /vop/v1/payee-verifications``: one Verification of Payee check, as an ASGI-level route.

Measured (in-process ASGI calls, bench/RESULTS.md): a typed Litestar handler costs ~56 µs of
framework time per request, ``request.body()`` + a Response ~42 µs, an ``@asgi`` route ~6 µs. The
check itself is ~15 µs, so the framework would dominate; this route therefore reads the body,
decodes it with a module-level msgspec decoder (validation at the edge as before: types, presence,
lengths) and writes the answer itself. Routing, the other endpoints and the exception handlers stay
Litestar's; the OpenAPI description of this route is built from the same Structs (app/openapi.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec
from litestar import asgi
from litestar.handlers import ASGIRouteHandler
from litestar.types import Receive, Scope, Send

from app.problems import PROBLEM_MEDIA_TYPE, ProblemError, echoable_request_id
from app.service import Verifier
from app.settings import Settings
from app.validation import check_request_id, check_timestamp
from app.wire import VerificationRequest

PATH = "/vop/v1/payee-verifications"
log = logging.getLogger("vop.http")

_decoder = msgspec.json.Decoder(VerificationRequest)
_encoder = msgspec.json.Encoder()
_JSON = (b"content-type", b"application/json")
_PROBLEM_JSON = (b"content-type", PROBLEM_MEDIA_TYPE.encode())


def response_timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError
        chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
        size += len(chunk)
        if size > limit:
            raise ProblemError("FORMAT_ERROR", f"request body exceeds {limit} bytes", 413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _problem_bytes(err: ProblemError) -> bytes:
    return _encoder.encode(err.to_problem())


def verification_route(settings: Settings, verifier: Verifier) -> ASGIRouteHandler:
    limit = settings.max_body_bytes
    skew = settings.max_clock_skew_s

    async def send_answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        rid: str | None = None
        try:
            if scope.get("method") != "POST":
                raise ProblemError("METHOD_NOT_ALLOWED", "use POST", 405, {"Allow": "POST"})
            ts: str | None = None
            length = 0
            for name, value in scope["headers"]:
                if name == b"x-request-id":
                    rid = value.decode("latin-1")
                elif name == b"x-request-timestamp":
                    ts = value.decode("latin-1")
                elif name == b"content-length":
                    length = int(value) if value.isdigit() else 0
            if length > limit:
                raise ProblemError("FORMAT_ERROR", f"request body exceeds {limit} bytes", 413)
            body = await _read_body(receive, limit)
            try:
                request = _decoder.decode(body)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise ProblemError("FORMAT_ERROR", str(exc)) from None
            rid = check_request_id(rid)
            check_timestamp(ts, skew)
            answer = _encoder.encode(verifier.answer(request))
            await send_answer(
                send,
                200,
                answer,
                [
                    _JSON,
                    (b"x-request-id", rid.encode()),
                    (b"x-response-timestamp", response_timestamp().encode()),
                ],
            )
        except ProblemError as err:
            headers = [_PROBLEM_JSON, *((k.lower().encode(), v.encode()) for k, v in err.headers.items())]
            echo = echoable_request_id(rid)
            if echo:
                headers.append((b"x-request-id", echo.encode()))
            await send_answer(send, err.status, _problem_bytes(err), headers)
        except ConnectionAbortedError:
            return
        except Exception:  # never crash, never leak internals
            log.exception("unhandled error in payee verification")
            failure = ProblemError("INTERNAL_ERROR", "internal error", 500)
            await send_answer(send, 500, _problem_bytes(failure), [_PROBLEM_JSON])

    handler: Callable[[Scope, Receive, Send], Awaitable[None]] = handle
    return asgi(PATH, is_mount=False, copy_scope=False, name="verify_payee")(handler)
