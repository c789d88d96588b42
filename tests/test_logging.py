"""JSON logs: one object per line, request and trace id from the context, stdlib loggers routed
through the same renderer, personal data pseudonymised."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
from collections.abc import Iterator

import pytest

from app.observability.logging import (
    bind_request,
    clear_request,
    configure_logging,
    get_logger,
    granian_log_dictconfig,
    pseudonymise,
)
from tests.conftest import IBAN_PERSON


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buf = io.StringIO()
    configure_logging("info", stream=buf)
    yield buf
    clear_request()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_every_line_is_json_with_request_and_trace_id(stream: io.StringIO) -> None:
    bind_request("rid-1", "4bf92f3577b34da6a3ce929d0e0e4736")
    get_logger("vop.http").info("answered", status=200)
    logging.getLogger("litestar").warning("from litestar %d", 7)
    logging.getLogger("_granian").info("from granian")
    clear_request()
    logging.getLogger("vop.index").info("outside a request")
    logging.getLogger("vop.index").debug("below the level")
    out = lines(stream)
    assert [o["event"] for o in out] == ["answered", "from litestar 7", "from granian", "outside a request"]
    for o in out[:3]:
        assert o["request_id"] == "rid-1"
        assert o["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert {"timestamp", "level", "logger"} <= set(o)
    assert out[0]["status"] == 200
    assert out[1]["level"] == "warning"
    assert out[1]["logger"] == "litestar"
    assert "request_id" not in out[3]


def test_request_context_is_per_task(stream: io.StringIO) -> None:
    log = logging.getLogger("vop.http")

    async def handle(rid: str) -> None:
        bind_request(rid, None)
        await asyncio.sleep(0.01)
        log.info("done")

    async def main() -> None:
        await asyncio.gather(handle("a"), handle("b"))

    asyncio.run(main())
    assert sorted(str(o["request_id"]) for o in lines(stream)) == ["a", "b"]


def test_exceptions_render_as_a_field(stream: io.StringIO) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("vop.http").exception("failed")
    (o,) = lines(stream)
    assert "RuntimeError: boom" in str(o["exception"])


def test_pii_keys_are_pseudonymised(stream: io.StringIO) -> None:
    get_logger("vop.http").info("lookup", iban=IBAN_PERSON, name="Max Mustermann", code="NMTC")
    (o,) = lines(stream)
    text = json.dumps(o)
    assert IBAN_PERSON not in text
    assert "Mustermann" not in text
    assert o["iban"] == pseudonymise(IBAN_PERSON, kind="iban")
    assert o["code"] == "NMTC"


def test_pseudonymise_is_keyed_stable_and_canonical() -> None:
    key = {"VOP_LOG_PSEUDONYM_KEY": "k1"}
    a = pseudonymise("DE89 3704 0044 0532 0130 00", kind="iban", env=key)
    assert a == pseudonymise(IBAN_PERSON.lower(), kind="iban", env=key)
    assert a.startswith("iban:")
    assert len(a) == len("iban:") + 16
    assert a != pseudonymise(IBAN_PERSON, kind="iban", env={"VOP_LOG_PSEUDONYM_KEY": "k2"})
    assert pseudonymise("Max  Mustermann", env=key) == pseudonymise("max mustermann", env=key)


def test_granian_dictconfig_uses_the_json_formatter() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logging.config.dictConfig(granian_log_dictconfig("warning"))
        handler = logging.getLogger("_granian").handlers[0]
        assert type(handler.formatter).__name__ == "JsonFormatter"
        assert logging.getLogger("_granian").level == logging.WARNING
    finally:
        configure_logging("info")
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_rfc3339_ms_truncates_to_the_millisecond_and_caches_consistently() -> None:
    from datetime import UTC, datetime

    from app.timestamps import rfc3339_ms

    base = datetime(2026, 12, 1, 14, 16, 20, tzinfo=UTC).timestamp()
    assert rfc3339_ms(base + 0.1234) == "2026-12-01T14:16:20.123Z"
    assert rfc3339_ms(base + 0.1236) == "2026-12-01T14:16:20.123Z"  # same millisecond, cached
    assert rfc3339_ms(base + 0.9999) == "2026-12-01T14:16:20.999Z"
    assert rfc3339_ms(base + 1.0) == "2026-12-01T14:16:21.000Z"
    assert rfc3339_ms(base + 0.1234) == "2026-12-01T14:16:20.123Z"  # an earlier second again
