"""``read_body``: stops once Content-Length bytes are in (granian's trailing empty message is not
awaited), reads to ``more_body=False`` without one, enforces the limit and the deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.asgi_io import ClientDisconnectedError, read_body, read_headers
from app.problems import ProblemError


class Receiver:
    def __init__(self, *messages: dict[str, Any], stall: bool = False) -> None:
        self.messages = list(messages)
        self.calls = 0
        self.stall = stall

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if not self.messages:
            if self.stall:
                await asyncio.sleep(10)
            raise AssertionError("receive() called after the last message")
        return self.messages.pop(0)


def chunk(body: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


def run(receive: Receiver, limit: int = 1000, expected: int = -1, deadline_s: float = 5.0) -> bytes:
    async def go() -> bytes:
        deadline = asyncio.get_running_loop().time() + deadline_s
        return await read_body(receive, limit, deadline, expected)

    return asyncio.run(go())


def test_complete_body_does_not_wait_for_the_trailing_message() -> None:
    receive = Receiver(chunk(b'{"a":1}', True), chunk(b"", False))
    assert run(receive, expected=7) == b'{"a":1}'
    assert receive.calls == 1


def test_without_content_length_reads_to_the_last_message() -> None:
    receive = Receiver(chunk(b"ab", True), chunk(b"cd", True), chunk(b"", False))
    assert run(receive) == b"abcd"
    assert receive.calls == 3


def test_chunks_up_to_content_length() -> None:
    receive = Receiver(chunk(b"ab", True), chunk(b"cd", True), chunk(b"", False))
    assert run(receive, expected=4) == b"abcd"
    assert receive.calls == 2


def test_limit_and_disconnect_and_deadline() -> None:
    with pytest.raises(ProblemError) as too_big:
        run(Receiver(chunk(b"x" * 600, True), chunk(b"x" * 600, False)), limit=1000)
    assert too_big.value.status == 413
    with pytest.raises(ClientDisconnectedError):
        run(Receiver(chunk(b"ab", True), {"type": "http.disconnect"}), expected=4)
    with pytest.raises(ProblemError) as late:
        run(Receiver(chunk(b"ab", True), stall=True), expected=4, deadline_s=0.05)
    assert late.value.status == 408


def test_content_length_header_parsing() -> None:
    def headers(*pairs: tuple[bytes, bytes]) -> Any:
        return {"headers": list(pairs)}

    assert read_headers(headers((b"content-length", b"42"))).content_length == 42
    assert read_headers(headers((b"content-length", b"-3"))).content_length == -1
    assert read_headers(headers()).content_length == -1
