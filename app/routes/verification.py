"""``POST /vop/v1/payee-verifications``: one Verification of Payee check, as an ASGI-level route.

Measured (in-process ASGI calls, bench/RESULTS.md): a typed Litestar handler costs ~56 µs of
framework time per request, ``request.body()`` + a Response ~42 µs, an ``@asgi`` route ~6 µs. The
check itself is ~15 µs, so the framework would dominate; this route therefore reads the body,
decodes it with a module-level msgspec decoder (validation at the edge as before: types, presence,
lengths) and writes the answer itself. Routing, the other endpoints and the exception handlers stay
Litestar's; the OpenAPI description of this route is built from the same Structs (app/openapi.py).
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from litestar import asgi
from litestar.handlers import ASGIRouteHandler
from litestar.types import Receive, Scope, Send

from app.asgi_io import (
    ClientDisconnectedError,
    encoder,
    read_body,
    read_headers,
    send_answer,
    send_problem,
    too_large,
)
from app.backpressure import LoadGate, deadline_exceeded
from app.microbatch import MicroBatcher
from app.problems import ProblemError
from app.service import Verifier, to_response
from app.settings import Settings
from app.validation import check_request_id, check_timestamp
from app.wire import VerificationRequest

PATH = "/vop/v1/payee-verifications"
log = logging.getLogger("vop.http")
_decoder = msgspec.json.Decoder(VerificationRequest)


def method_not_allowed() -> ProblemError:
    return ProblemError("METHOD_NOT_ALLOWED", "use POST", 405, {"Allow": "POST"})


def verification_route(settings: Settings, verifier: Verifier, gate: LoadGate) -> ASGIRouteHandler:
    limit = settings.max_body_bytes
    skew = settings.max_clock_skew_s
    deadline_s = settings.deadline_ms / 1000
    batcher = (
        MicroBatcher(verifier.outcomes, settings.microbatch_ms / 1000, settings.microbatch_max)
        if settings.microbatch_ms > 0
        else None
    )

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        headers = read_headers(scope)
        admitted = False
        try:
            if scope.get("method") != "POST":
                raise method_not_allowed()
            if headers.content_length > limit:
                raise too_large(limit)
            gate.acquire()
            admitted = True
            body = await read_body(receive, limit, started + deadline_s)
            try:
                request = _decoder.decode(body)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise ProblemError("FORMAT_ERROR", str(exc)) from None
            rid = check_request_id(headers.request_id)
            check_timestamp(headers.timestamp, skew)
            check = verifier.check(request)
            outcome = await batcher.submit(check) if batcher else verifier.outcomes([check])[0]
            elapsed = loop.time() - started
            if elapsed > deadline_s:
                raise deadline_exceeded(elapsed, deadline_s)
            await send_answer(send, encoder.encode(to_response(outcome)), rid)
        except ProblemError as err:
            await send_problem(send, err, headers.request_id)
        except ClientDisconnectedError:
            return
        except Exception:  # never crash, never leak internals
            log.exception("unhandled error in payee verification")
            await send_problem(send, ProblemError("INTERNAL_ERROR", "internal error", 500), None)
        finally:
            if admitted:
                gate.release()

    return asgi(PATH, is_mount=False, copy_scope=False, name="verify_payee")(handle)
