"""``POST /vop/v1/payee-verifications``: one Verification of Payee check, as an interface-neutral
handler (app.exchange) served over RSGI (app.rsgi_io) or ASGI (app.asgi_io).

Measured (in-process ASGI calls, bench/RESULTS.md): a typed Litestar handler costs ~56 µs of
framework time per request, ``request.body()`` + a Response ~42 µs, an ``@asgi`` route ~6 µs. The
check itself is ~15 µs, so the framework would dominate; this handler therefore reads the body,
decodes it with a module-level msgspec decoder (validation at the edge as before: types, presence,
lengths) and returns the answer itself. Routing, the other endpoints and the exception handlers stay
Litestar's; the OpenAPI description of this route is built from the same Structs (app/openapi.py).

Order of the gates: method and size, load (503), authentication and scope (401/403), rate limit
(429), body and headers (400), requester identity (403), then the check; the enumeration guard
may turn the answer into NOAP, and every answer is audited.
"""

from __future__ import annotations

import asyncio
import math

import msgspec

from app.backpressure import deadline_exceeded
from app.exchange import (
    Answer,
    BodyReader,
    Client,
    Handler,
    RequestHeaders,
    answer_failure,
    answer_json,
    encoder,
    finish_exchange,
    too_large,
)
from app.microbatch import MicroBatcher
from app.observability.logging import bind_request
from app.problems import ProblemError
from app.security.client_batch import ClientBatcher, redis_batchers
from app.security.gate import SCOPE_VERIFY, Principal, SecurityGate
from app.service import to_response
from app.services import Services
from app.validation import check_request_id, check_timestamp
from app.wire import VerificationRequest
from matching.model import Check, Outcome

PATH = "/vop/v1/payee-verifications"
_decoder = msgspec.json.Decoder(VerificationRequest)
ENUMERATION_NOAP = "enumeration_guard"


def method_not_allowed() -> ProblemError:
    return ProblemError("METHOD_NOT_ALLOWED", "use POST", 405, {"Allow": "POST"})


def rate_limited(wait_s: float) -> ProblemError:
    return ProblemError(
        "RATE_LIMITED",
        "too many requests from this client",
        429,
        {"Retry-After": str(max(1, math.ceil(wait_s)))},
    )


def guarded_name(check: Check) -> str | None:
    """The name the enumeration guard counts for this check: a name check's name; None for an
    identifier check (the guard does not apply)."""
    return check.name if check.name is not None and not check.is_id_check else None


def guarded(security: SecurityGate, principal: Principal, check: Check) -> bool:
    """True when the enumeration guard forces NOAP for this (name) check."""
    name = guarded_name(check)
    return name is not None and security.enumeration_guard(principal, check.iban, name)


async def _guarded_soon(
    batcher: ClientBatcher[tuple[str, str], bool], principal: Principal, check: Check
) -> bool:
    """``guarded``, with the Redis question gathered into the loop iteration's batch."""
    name = guarded_name(check)
    return name is not None and await batcher.ask(principal, (check.iban, name))


def verification_handler(services: Services) -> Handler:
    """The route's handler, for either interface (app.asgi_io, app.rsgi_io)."""
    settings, verifier, gate = services.settings, services.verifier, services.load
    security, metrics, tracer = services.security, services.metrics, services.tracer
    limit = settings.max_body_bytes
    skew = settings.max_clock_skew_s
    deadline_s = settings.deadline_ms / 1000
    batcher = (
        MicroBatcher(verifier.outcomes, settings.microbatch_ms / 1000, settings.microbatch_max)
        if settings.microbatch_ms > 0
        else None
    )
    batchers = redis_batchers(security)  # None without Redis: the limits answer in place
    rate_batcher = batchers.rate_limit if batchers is not None else None

    async def handle(
        method: str, headers: RequestHeaders, client: Client, read_body: BodyReader
    ) -> Answer | None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        admitted = False
        answer: Answer | None = None
        metrics.request_started()
        with tracer.span("POST " + PATH, headers.raw, _SPAN_ATTRIBUTES) as span:
            log_context = bind_request(headers.request_id, span.trace_id or None)
            try:
                if method != "POST":
                    raise method_not_allowed()
                if headers.content_length > limit:
                    raise too_large(limit)
                gate.acquire()
                admitted = True
                principal = security.authenticate(headers.raw, client, SCOPE_VERIFY)
                if rate_batcher is None:
                    wait = security.rate_limit(principal)
                else:  # the limit asks Redis: the loop serves others meanwhile
                    wait = await rate_batcher.ask(principal, 1)
                if wait is not None:
                    metrics.rate_limited()
                    raise rate_limited(wait)
                body = await read_body(limit, started + deadline_s, headers.content_length)
                try:
                    request = _decoder.decode(body)
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    raise ProblemError("FORMAT_ERROR", str(exc)) from None
                rid = check_request_id(headers.request_id)
                check_timestamp(headers.timestamp, skew)
                check = verifier.check(request)  # format errors (400) before identity (403)
                security.check_requester(principal, request.requesting_agent.financial_institution_id.bicfi)
                if batchers is None:
                    forced = guarded(security, principal, check)
                else:  # the guard asks Redis: the loop serves others meanwhile
                    forced = await _guarded_soon(batchers.guard, principal, check)
                if forced:
                    metrics.enumeration_guarded()
                    current = verifier.holder.current
                    version = current.version if current else 0
                    outcome = Outcome("id" if check.is_id_check else "name", "NOAP", ENUMERATION_NOAP)
                elif batcher is not None:
                    version, outcome = await batcher.submit(check)
                else:
                    version, outcomes = verifier.outcomes([check])
                    outcome = outcomes[0]
                elapsed = loop.time() - started
                if elapsed > deadline_s:
                    metrics.shed("deadline")
                    raise deadline_exceeded(elapsed, deadline_s)
                security.audit(
                    request_id=rid, principal=principal, iban=check.iban, name=check.name, code=outcome.code,
                    reason=outcome.reason, index_version=version, forced=forced,
                )  # fmt: skip
                answer = answer_json(encoder.encode(to_response(outcome)), rid)
                metrics.observe_outcome(outcome)
                span.set_attributes(
                    {
                        "vop.result.code": outcome.code,
                        "vop.result.reason": outcome.reason,
                        "vop.index.version": version,
                    }
                )
            except Exception as exc:  # every failure is answered; none crashes the worker
                answer = answer_failure(exc, headers.request_id, span, PATH)
            finally:
                if admitted:
                    gate.release()
                finish_exchange(answer, span, metrics, PATH, loop.time() - started, log_context=log_context)
        return answer

    return handle


_SPAN_ATTRIBUTES = {"http.route": PATH, "http.request.method": "POST"}
