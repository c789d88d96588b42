"""``POST /vop/v1/payee-verifications/bulk``: up to ``bulk_max_items`` checks for a payer's own
channels, answered in request order; a bad item gets its own problem and fails alone.

The whole batch is validated item by item (cheap: msgspec + regexes) and then verified in one
vectorised ``verify`` call against one index version.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

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


class _TypedBulk(msgspec.Struct, frozen=True):
    checks: list[VerificationRequest]


_typed_decoder = msgspec.json.Decoder(_TypedBulk)


def decode_items(body: bytes, envelope: BulkRequest) -> list[VerificationRequest | msgspec.Raw]:
    """Every item decoded in one pass when the whole body is well-formed (measured: ~2x faster
    than item by item); otherwise the raw items, decoded one by one so each error stays its own."""
    try:
        return list(_typed_decoder.decode(body).checks)
    except msgspec.ValidationError:
        return list(envelope.checks)


def answer_bulk(verifier: Verifier, items: Sequence[VerificationRequest | msgspec.Raw]) -> BulkResponse:
    """Validate each item, verify the valid ones as one batch, keep request order."""
    results: list[BulkResult | None] = [None] * len(items)
    checks: list[Check] = []
    positions: list[int] = []
    for i, item in enumerate(items):
        try:
            request = _item_decoder.decode(item) if isinstance(item, msgspec.Raw) else item
            checks.append(verifier.check(request))
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
            response = answer_bulk(verifier, decode_items(body, request))
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
