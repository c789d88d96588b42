"""An in-process client for the RSGI app (app.rsgi.RsgiApp), shaped like Litestar's TestClient:
``post``/``get``/``request`` return ``httpx.Response`` objects, so the API tests run unchanged
over both interfaces. The scope and protocol objects follow granian's RSGI 1.x HTTP interface;
the real server is exercised by tests/test_serve.py."""

from __future__ import annotations

import asyncio
import json as jsonlib
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.rsgi import RsgiApp


class Headers:
    """granian's RSGIHeaders: a read-only map with lower-case names (first value wins on get).

    A value given as bytes stands for one granian cannot read as text (non-ASCII): as in granian,
    the name is ``in`` the map, ``get`` answers None and ``items`` leaves it out."""

    def __init__(self, pairs: Iterable[tuple[str, str | bytes]]) -> None:
        self._pairs = [(k.lower(), v) for k, v in pairs]

    def get(self, key: str, default: Any = None) -> Any:
        for k, v in self._pairs:
            if k == key:
                return None if isinstance(v, bytes) else v
        return default

    def __contains__(self, key: str) -> bool:
        return any(k == key for k, _ in self._pairs)

    def keys(self) -> list[str]:
        return [k for k, _ in self._pairs]

    def values(self) -> list[str]:
        return [v for _, v in self._pairs if isinstance(v, str)]

    def items(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self._pairs if isinstance(v, str)]


class Scope:
    proto = "http"
    rsgi_version = "1.5"
    http_version = "1.1"
    server = "127.0.0.1:8080"
    scheme = "http"
    authority = None

    def __init__(self, method: str, path: str, query: str, headers: Headers, client: str) -> None:
        self.method, self.path, self.query_string, self.headers, self.client = (
            method,
            path,
            query,
            headers,
            client,
        )


class Transport:
    def __init__(self, sink: list[bytes]) -> None:
        self._sink = sink

    async def send_bytes(self, data: bytes) -> None:
        self._sink.append(data)

    async def send_str(self, data: str) -> None:
        self._sink.append(data.encode())


class Protocol:
    """The request body in ``chunks``; records the one answer the app gives."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.calls = 0

    async def __call__(self) -> bytes:
        return b"".join(self._chunks)

    def __aiter__(self) -> AsyncIterator[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            for chunk in self._chunks:
                yield chunk

        return chunks()

    async def client_disconnect(self) -> None:
        await asyncio.Event().wait()

    def _answer(self, status: int, headers: list[tuple[str, str]]) -> None:
        assert self.status is None, "the app answered twice"
        self.calls += 1
        self.status, self.headers = status, list(headers)

    def response_empty(self, status: int, headers: list[tuple[str, str]]) -> None:
        self._answer(status, headers)

    def response_str(self, status: int, headers: list[tuple[str, str]], body: str) -> None:
        self._answer(status, headers)
        self.body.append(body.encode())

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self._answer(status, headers)
        self.body.append(body)

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> Transport:
        self._answer(status, headers)
        return Transport(self.body)


class RsgiTestClient:
    def __init__(self, app: RsgiApp, client: str = "127.0.0.1:5555") -> None:
        self.app = app
        self.peer = client
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> RsgiTestClient:
        self._loop = asyncio.new_event_loop()
        self.app.__rsgi_init__(self._loop)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._loop is not None
        self.app.__rsgi_del__(self._loop)
        self._loop.close()
        self._loop = None

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str | bytes] | None = None,
        chunks: list[bytes] | None = None,
    ) -> httpx.Response:
        """``chunks`` sends the body in pieces without a Content-Length (chunked transfer)."""
        assert self._loop is not None, "use the client as a context manager"
        pairs: list[tuple[str, str | bytes]] = list((headers or {}).items())
        if chunks is None:
            data = jsonlib.dumps(json).encode() if json is not None else content or b""
            data = data.encode() if isinstance(data, str) else data
            chunks = [data]
            if json is not None:
                pairs.append(("content-type", "application/json"))
            if data or method in ("POST", "PUT", "PATCH"):
                pairs.append(("content-length", str(len(data))))
        else:
            pairs.append(("transfer-encoding", "chunked"))
        parts = urlsplit(url)
        scope = Scope(method, parts.path, parts.query, Headers(pairs), self.peer)
        protocol = Protocol(chunks)
        self._loop.run_until_complete(self.app.__rsgi__(scope, protocol))  # type: ignore[arg-type]
        assert protocol.status is not None, "the app did not answer"
        return httpx.Response(protocol.status, headers=protocol.headers, content=b"".join(protocol.body))

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)
