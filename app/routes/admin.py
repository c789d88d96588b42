"""Operator controls (scope ``vop:admin``): index status and a forced full reload."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State

from app.index_holder import IndexHolder
from app.problems import ProblemError
from app.security.gate import SCOPE_ADMIN, SecurityGate


def _authorise(request: Request[Any, Any, State]) -> None:
    security: SecurityGate = request.app.state.security
    security.authenticate(request.scope["headers"], request.scope.get("client"), SCOPE_ADMIN)


def index_status(holder: IndexHolder) -> dict[str, Any]:
    index = holder.current
    body: dict[str, Any] = {
        "loaded": index is not None,
        "version": index.version if index else None,
        "accounts": len(index) if index else 0,
        "source": index.source if index else None,
        "builtAt": index.built_at if index else None,
        "error": holder.error,
    }
    if holder.feed is not None:
        body["feed"] = msgspec.to_builtins(holder.feed.status())
    return body


@get("/admin/index", include_in_schema=False)
async def admin_index(request: Request[Any, Any, State]) -> dict[str, Any]:
    _authorise(request)
    return index_status(request.app.state.holder)


@post("/admin/index/reload", include_in_schema=False, status_code=202)
async def admin_reload(request: Request[Any, Any, State]) -> Response[dict[str, str]]:
    _authorise(request)
    holder: IndexHolder = request.app.state.holder
    if holder.feed is None:
        raise ProblemError("NOT_FOUND", "this index has no feed to reload (a snapshot file is static)", 404)
    holder.feed.request_reload()
    return Response({"status": "reload requested"}, status_code=202)
