"""Liveness, readiness and the problem-type documents (described in app/openapi.py)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import PathParameter

from app.index_holder import IndexHolder
from app.problems import PROBLEM_CODES, ProblemError


@get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "alive"}


@get("/readyz", include_in_schema=False)
async def readyz(request: Request[None, None, State]) -> Response[dict[str, Any]]:
    holder: IndexHolder = request.app.state.holder
    index = holder.current
    if index is None:
        body: dict[str, Any] = {"status": "failed" if holder.error else "loading"}
        if holder.error:
            body["error"] = holder.error
        return Response(body, status_code=503, headers={"Retry-After": "1"})
    return Response(
        {"status": "ready", "indexVersion": index.version, "accounts": len(index), "builtAt": index.built_at}
    )


@get("/vop/v1/problems/{code:str}", include_in_schema=False)
async def problem_type(code: Annotated[str, PathParameter()]) -> dict[str, str]:
    if code not in PROBLEM_CODES:
        raise ProblemError("NOT_FOUND", f"no problem type {code}", 404)
    title, description = PROBLEM_CODES[code]
    return {"code": code, "title": title, "description": description}
