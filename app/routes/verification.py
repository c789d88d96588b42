"""``POST /vop/v1/payee-verifications``: one Verification of Payee check."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from litestar import Request, Response, post
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, HeaderParameter

from app.problems import PROBLEM_MEDIA_TYPE
from app.service import Verifier
from app.validation import check_request_id, check_timestamp
from app.wire import REQUEST_EXAMPLE, Problem, VerificationRequest, VerificationResponse


def response_timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _problem_spec(description: str) -> ResponseSpec:
    return ResponseSpec(
        Problem, description=description, media_type=PROBLEM_MEDIA_TYPE, generate_examples=False
    )


@post(
    "/vop/v1/payee-verifications",
    summary="Verify a payee name or organisation identifier against an IBAN held here",
    description=(
        "Answers `partyNameMatch` (MTCH, CMTC with `matchedName`, NMTC, NOAP) for a name, or "
        "`partyIdMatch` (MTCH, NMTC, NOAP) when `party.identification` is given (the name is then "
        "ignored). NOAP for closed, blocked and unknown accounts."
    ),
    status_code=200,
    tags=["verification"],
    responses={
        400: _problem_spec("FORMAT_ERROR or TIMESTAMP_INVALID: the request breaks the API's rules"),
        413: _problem_spec("FORMAT_ERROR: the body exceeds the size limit"),
        503: _problem_spec("SERVICE_UNAVAILABLE: the index is not loaded yet (Retry-After)"),
    },
)
async def verify_payee(
    request: Request[None, None, State],
    data: Annotated[
        VerificationRequest,
        Body(
            title="Payee verification request",
            examples=[Example(summary="name check", value=REQUEST_EXAMPLE)],
        ),
    ],
    x_request_id: Annotated[
        str | None, HeaderParameter(name="X-Request-ID", description="UUID of this request", required=False)
    ] = None,
    x_request_timestamp: Annotated[
        str | None,
        HeaderParameter(
            name="X-Request-Timestamp", description="RFC 3339 UTC time the request was sent", required=False
        ),
    ] = None,
) -> Response[VerificationResponse]:
    verifier: Verifier = request.app.state.verifier
    rid = check_request_id(x_request_id)
    check_timestamp(x_request_timestamp, request.app.state.settings.max_clock_skew_s)
    answer = verifier.answer(data)
    return Response(
        answer,
        headers={"X-Request-ID": rid, "X-Response-Timestamp": response_timestamp()},
    )
