"""``POST /vop/v1/payee-verifications/bulk``: up to ``bulk_max_items`` checks for a payer's own
channels, answered in request order; a bad item gets its own problem and fails alone.

The whole batch is validated item by item (cheap: msgspec + regexes) and then verified in one
vectorised ``verify`` call against one index version.
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
from app.problems import ProblemError
from app.routes.verification import method_not_allowed
from app.service import Verifier, to_response
from app.settings import Settings
from app.validation import check_request_id, check_timestamp
from app.wire import BulkRequest, BulkResponse, BulkResult, VerificationRequest
from matching.model import Check

PATH = "/vop/v1/payee-verifications/bulk"
log = logging.getLogger("vop.http")
_bulk_decoder = msgspec.json.Decoder(BulkRequest)
_item_decoder = msgspec.json.Decoder(VerificationRequest)


def answer_bulk(verifier: Verifier, items: list[msgspec.Raw]) -> BulkResponse:
    """Validate each item, verify the valid ones as one batch, keep request order."""
    results: list[BulkResult | None] = [None] * len(items)
    checks: list[Check] = []
    positions: list[int] = []
    for i, raw in enumerate(items):
        try:
            checks.append(verifier.check(_item_decoder.decode(raw)))
            positions.append(i)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            results[i] = BulkResult(error=ProblemError("FORMAT_ERROR", f"item {i}: {exc}").to_problem())
        except ProblemError as err:
            err.detail = f"item {i}: {err.detail}"
            results[i] = BulkResult(error=err.to_problem())
    if checks:
        for i, outcome in zip(positions, verifier.outcomes(checks), strict=True):
            r = to_response(outcome)
            results[i] = BulkResult(r.party_name_match, r.party_id_match, r.matched_name)
    return BulkResponse([r for r in results if r is not None])


def bulk_route(settings: Settings, verifier: Verifier, gate: LoadGate) -> ASGIRouteHandler:
    limit = settings.bulk_max_body_bytes
    max_items = settings.bulk_max_items
    skew = settings.max_clock_skew_s
    deadline_s = settings.deadline_ms / 1000

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        headers = read_headers(scope)
        cost = 0
        try:
            if scope.get("method") != "POST":
                raise method_not_allowed()
            if headers.content_length > limit:
                raise too_large(limit)
            body = await read_body(receive, limit, started + deadline_s)
            try:
                request = _bulk_decoder.decode(body)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise ProblemError("FORMAT_ERROR", str(exc)) from None
            if len(request.checks) > max_items:
                raise ProblemError(
                    "FORMAT_ERROR",
                    f"bulk request has {len(request.checks)} checks; the limit is {max_items}",
                    413,
                )
            rid = check_request_id(headers.request_id)
            check_timestamp(headers.timestamp, skew)
            gate.acquire(len(request.checks))
            cost = len(request.checks)
            response = answer_bulk(verifier, request.checks)
            elapsed = loop.time() - started
            if elapsed > deadline_s:
                raise deadline_exceeded(elapsed, deadline_s)
            await send_answer(send, encoder.encode(response), rid)
        except ProblemError as err:
            await send_problem(send, err, headers.request_id)
        except ClientDisconnectedError:
            return
        except Exception:
            log.exception("unhandled error in bulk payee verification")
            await send_problem(send, ProblemError("INTERNAL_ERROR", "internal error", 500), None)
        finally:
            if cost:
                gate.release(cost)

    return asgi(PATH, is_mount=False, copy_scope=False, name="verify_payee_bulk")(handle)
