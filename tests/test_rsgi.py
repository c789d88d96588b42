"""The RSGI side of serving: body reads and peer addresses (app.rsgi_io), the ASGI bridge for
Litestar's routes (app.rsgi_bridge), the lifespan driven from ``__rsgi_init__``/``__rsgi_del__``
(app.lifespan), and the hot routes answering the same as under ASGI. tests/test_api.py runs the
whole API suite over both interfaces; tests/test_serve.py serves both from real granian."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from litestar import Litestar, Request, get, post
from litestar.response import Stream
from litestar.testing import TestClient

from app.body_deadlines import SWEEP_S, BodyDeadlines
from app.exchange import ClientDisconnectedError
from app.factory import create_app
from app.lifespan import Lifespan, LifespanError
from app.problems import ProblemError
from app.rsgi import RsgiApp
from app.rsgi_bridge import AsgiBridge
from app.rsgi_io import peer, read_body
from app.settings import Settings
from matching.index import AccountIndex
from tests.conftest import NO_AUTH, body, headers
from tests.rsgi_client import Headers, Protocol, RsgiTestClient, Scope

URL = "/vop/v1/payee-verifications"


def test_peer_address_forms() -> None:
    assert peer("203.0.113.7:51234") == ("203.0.113.7", 51234)
    assert peer("[2001:db8::1]:443") == ("2001:db8::1", 443)
    assert peer("") is None
    assert peer("no-port") is None
    assert peer("host:abc") is None


class Closed(Protocol):
    async def __call__(self) -> bytes:
        from granian._granian import RSGIProtocolClosed

        raise RSGIProtocolClosed("gone")


class Stalled(Protocol):
    def __aiter__(self) -> Any:
        async def chunks() -> Any:
            yield b"ab"
            await asyncio.sleep(10)
            yield b"cd"

        return chunks()


def read(protocol: Protocol, limit: int = 1000, expected: int = -1, deadline_s: float = 5.0) -> bytes:
    async def go() -> bytes:
        deadline = asyncio.get_running_loop().time() + deadline_s
        return await read_body(protocol, BodyDeadlines(), limit, deadline, expected)  # type: ignore[arg-type]

    return asyncio.run(go())


def test_read_body_with_and_without_content_length() -> None:
    assert read(Protocol([b'{"a":1}']), expected=7) == b'{"a":1}'
    assert read(Protocol([b"ab", b"cd", b"ef"])) == b"abcdef"  # chunked: read to the end


def test_read_body_limit_deadline_and_disconnect() -> None:
    with pytest.raises(ProblemError) as chunked_too_big:
        read(Protocol([b"x" * 600, b"x" * 600]), limit=1000)
    assert chunked_too_big.value.status == 413
    with pytest.raises(ProblemError) as lying_length:  # more bytes than the Content-Length said
        read(Protocol([b"x" * 1200]), limit=1000, expected=10)
    assert lying_length.value.status == 413
    with pytest.raises(ProblemError) as late:
        read(Stalled([]), deadline_s=0.05)
    assert late.value.status == 408
    with pytest.raises(ClientDisconnectedError):
        read(Closed([]), expected=4)


class StalledWhole(Protocol):
    async def __call__(self) -> bytes:  # part of a Content-Length body arrived, then nothing
        await asyncio.sleep(10)
        return b""


def test_a_stalled_content_length_body_is_a_408_within_its_deadline() -> None:
    async def go() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        deadlines = BodyDeadlines()
        started = loop.time()
        with pytest.raises(ProblemError) as late:
            await read_body(StalledWhole([]), deadlines, 1000, started + 0.05, 10)  # type: ignore[arg-type]
        waited = loop.time() - started
        await asyncio.sleep(0.01)  # the deadline's cancellation was taken back: the task goes on
        fine = await read_body(Protocol([b"0123456789"]), deadlines, 1000, loop.time() + 5, 10)  # type: ignore[arg-type]
        assert fine == b"0123456789"
        return waited, late.value.status

    waited, status = asyncio.run(go())
    assert status == 408
    assert 0.05 <= waited < 0.05 + SWEEP_S + 0.2


def test_a_cancellation_that_is_not_the_deadline_stays_a_cancellation() -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.ensure_future(
            read_body(StalledWhole([]), BodyDeadlines(), 1000, loop.time() + 5, 10)  # type: ignore[arg-type]
        )
        await asyncio.sleep(0.01)
        reader.cancel()  # e.g. the worker shutting down
        with pytest.raises(asyncio.CancelledError):
            await reader

    asyncio.run(go())


def request(app: Any, method: str, path: str, chunks: list[bytes], **hdrs: str) -> Protocol:
    protocol = Protocol(chunks)
    scope = Scope(method, path, "", Headers(hdrs.items()), "127.0.0.1:5555")
    asyncio.run(app(scope, protocol))
    return protocol


def test_bridge_streams_bodies_both_ways() -> None:
    @post("/echo", status_code=200)
    async def echo(request: Request[Any, Any, Any]) -> bytes:
        return (await request.body())[::-1]

    @get("/stream")
    async def stream() -> Stream:
        async def parts() -> Any:
            for part in (b"one,", b"two,", b"three"):
                yield part

        return Stream(parts())

    bridge = AsgiBridge(Litestar([echo, stream], request_max_body_size=64), {})
    answered = request(bridge, "POST", "/echo", [b"abc", b"def"], **{"transfer-encoding": "chunked"})
    assert (answered.status, b"".join(answered.body)) == (200, b"fedcba")
    assert answered.calls == 1
    streamed = request(bridge, "GET", "/stream", [])
    assert (streamed.status, b"".join(streamed.body)) == (200, b"one,two,three")
    over = request(bridge, "POST", "/echo", [b"x" * 40, b"x" * 40], **{"transfer-encoding": "chunked"})
    assert over.status == 413  # Litestar's own limit, applied as the chunks stream in


def test_bridge_answers_500_when_the_app_fails_without_answering() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    answered = request(AsgiBridge(broken, {}), "GET", "/x", [])
    assert answered.status == 500
    assert b"INTERNAL_ERROR" in b"".join(answered.body)
    assert b"boom" not in b"".join(answered.body)


def test_bridge_decodes_the_path_and_passes_query_and_client() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)
        await send({"type": "http.response.start", "status": 204, "headers": [(b"x-a", b"1")]})
        await send({"type": "http.response.body", "body": b""})

    protocol = Protocol([])
    scope = Scope("GET", "/a%20b", "q=1", Headers([("X-Thing", "v")]), "[::1]:7")
    asyncio.run(AsgiBridge(app, {"k": 1})(scope, protocol))  # type: ignore[arg-type]
    assert (seen["path"], seen["raw_path"], seen["query_string"]) == ("/a b", b"/a%20b", b"q=1")
    assert seen["client"] == ("::1", 7)
    assert (b"x-thing", b"v") in seen["headers"]
    assert seen["state"] == {"k": 1}
    assert (protocol.status, protocol.headers) == (204, [("x-a", "1")])


def test_lifespan_runs_startup_and_shutdown_hooks() -> None:
    events: list[str] = []
    app = Litestar([], on_startup=[lambda: events.append("up")], on_shutdown=[lambda: events.append("down")])
    loop = asyncio.new_event_loop()
    lifespan = Lifespan(app)
    loop.run_until_complete(lifespan.startup())
    assert events == ["up"]
    loop.run_until_complete(lifespan.shutdown())
    assert events == ["up", "down"]
    loop.close()


def test_failed_startup_is_an_error_and_exits_the_worker() -> None:
    def fail() -> None:
        raise RuntimeError("no index")

    loop = asyncio.new_event_loop()
    with pytest.raises(LifespanError, match="startup failed"):
        loop.run_until_complete(Lifespan(Litestar([], on_startup=[fail])).startup())

    async def dies(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("crashed")

    with pytest.raises(LifespanError, match="ended during lifespan startup"):
        loop.run_until_complete(Lifespan(dies).startup())
    loop.close()

    app = create_app(Settings(), index=None, security=NO_AUTH)
    app.on_startup.append(fail)
    with pytest.raises(SystemExit) as exited:
        RsgiApp(app).__rsgi_init__(asyncio.new_event_loop())
    assert exited.value.code == 1


def test_websocket_upgrade_is_refused(app: Litestar) -> None:
    closed: list[int] = []

    class WsProtocol:
        def close(self, status: int) -> None:
            closed.append(status)

    scope = Scope("GET", URL, "", Headers([]), "127.0.0.1:1")
    scope.proto = "ws"  # type: ignore[misc]
    asyncio.run(RsgiApp(app).__rsgi__(scope, WsProtocol()))  # type: ignore[arg-type]
    assert closed == [403]


def test_hot_routes_answer_as_under_asgi(index: AccountIndex) -> None:
    app = create_app(Settings(), index=index, security=NO_AUTH)
    payloads = [body("Max Mustermann"), body("Max Mustermen"), body(iban="DE00370400440532013000"), {"x": 1}]
    with RsgiTestClient(RsgiApp(app)) as rsgi, TestClient(app) as asgi:
        for payload in payloads:
            a = rsgi.post(URL, json=payload, headers=headers())
            b = asgi.post(URL, json=payload, headers=headers())
            assert (a.status_code, a.json()) == (b.status_code, b.json())
            assert a.headers["content-type"] == b.headers["content-type"]
        chunked = rsgi.post(URL, chunks=[b'{"party": {"na', b'me": 1}}'], headers=headers())
        assert chunked.status_code == 400
        assert chunked.json()["code"] == "FORMAT_ERROR"
        big = rsgi.post(URL, content=b"x" * 20_000, headers=headers())
        assert big.status_code == 413
        bulk = rsgi.post(URL + "/bulk", json={"checks": [body(), {"x": 1}]}, headers=headers())
        assert bulk.json()["results"][0] == {"partyNameMatch": "MTCH"}
        assert bulk.json()["results"][1]["error"]["code"] == "FORMAT_ERROR"
        assert rsgi.get("/readyz").status_code == 200
        assert rsgi.get(URL).status_code == 405


def test_unreadable_header_values_fail_validation_not_presence(index: AccountIndex, tmp_path: Any) -> None:
    # granian hands a non-ASCII header value over as None although the header was sent.
    app = create_app(Settings(), index=index, security=NO_AUTH)
    with RsgiTestClient(RsgiApp(app)) as rsgi:
        bad_id = rsgi.post(URL, json=body(), headers={**headers(), "X-Request-ID": b"\xc3\xa9"})
        assert bad_id.status_code == 400
        assert "must be a UUID" in bad_id.json()["detail"]
        bad_ts = rsgi.post(URL, json=body(), headers={**headers(), "X-Request-Timestamp": b"\xff"})
        assert bad_ts.status_code == 400
        assert bad_ts.json()["code"] == "TIMESTAMP_INVALID"
    from app.security.settings import SecuritySettings

    secured = create_app(Settings(), index=index, security=SecuritySettings(data_dir=str(tmp_path)))
    with RsgiTestClient(RsgiApp(secured)) as rsgi:
        resp = rsgi.post(URL, json=body(), headers={**headers(), "Authorization": b"Bearer \xc3\xa9"})
        assert resp.status_code == 401
        assert "Bearer" in resp.json()["detail"]
