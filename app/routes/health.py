"""Liveness, readiness and the problem-type documents (described in app/openapi.py)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import PathParameter

from app.observability.readiness import Readiness
from app.problems import PROBLEM_CODES, ProblemError


@get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "alive"}


@get("/readyz", include_in_schema=False)
async def readyz(request: Request[None, None, State]) -> Response[dict[str, Any]]:
    """200 when the index is loaded, within the staleness policy and not draining; else 503."""
    readiness: Readiness = request.app.state.readiness
    report = readiness.check()
    return Response(report.body(), status_code=report.http_status, headers=report.headers())


@get("/vop/v1/problems/{code:str}", include_in_schema=False)
async def problem_type(code: Annotated[str, PathParameter()]) -> dict[str, str]:
    if code not in PROBLEM_CODES:
        raise ProblemError("NOT_FOUND", f"no problem type {code}", 404)
    title, description = PROBLEM_CODES[code]
    return {"code": code, "title": title, "description": description}
