"""Audit trail: a clean trail verifies; each kind of tampering is detected at the right line; the queue
policy (block briefly, then drop and count, with a chained ``dropped`` line); no clear data anywhere."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.security import audit
from app.security.audit import AuditTrail, seal, verify_audit_files
from app.security.audit_process import AuditProcess
from app.security.pseudonym import Pseudonymiser, derive_key

KEY = "an-audit-key-for-tests-0123456789abcdef"
IBANS = ["DE89370400440532013000", "FR1420041010050500013M02606", "NL91ABNA0417164300"]
NAMES = ["Max Mustermann", "Ioana Martínez", "Nordlicht Logistik GmbH"]


Writer = type[AuditTrail] | type[AuditProcess]


@pytest.fixture(params=[AuditTrail, AuditProcess], ids=["thread", "process"])
def writer(request: pytest.FixtureRequest) -> Writer:
    """Both writers produce the same files; every test that takes this fixture runs on both."""
    return request.param  # type: ignore[no-any-return]


def write_trail(
    directory: Path, n: int = 30, writer: Writer = AuditTrail, **kw: Any
) -> AuditTrail | AuditProcess:
    trail = writer(directory, KEY, **kw)
    for i in range(n):
        trail.record(
            request_id=f"00000000-0000-4000-8000-{i:012d}",
            client_id="psp-client-1",
            iban=IBANS[i % 3],
            name=NAMES[i % 3] if i % 5 else None,
            code=["MTCH", "CMTC", "NMTC", "NOAP"][i % 4],
            reason="exact",
            index_version=7,
            forced=i % 7 == 0,
        )
    trail.close()
    return trail


@pytest.fixture
def trail_file(tmp_path: Path, writer: Writer) -> Path:
    trail = write_trail(tmp_path / "audit", writer=writer)
    assert len(trail.files) == 1
    return trail.files[0]


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_clean_file_passes(trail_file: Path) -> None:
    report = verify_audit_files([trail_file], KEY)
    assert report.ok, report.render()
    assert report.checks == 30
    assert report.first_bad is None
    assert report.render().startswith("PASS")
    assert stat.S_IMODE(os.stat(trail_file).st_mode) == 0o600
    records = [json.loads(line) for line in lines_of(trail_file)]
    assert [r["t"] for r in records] == ["header"] + ["check"] * 30 + ["close"]
    check = records[1]
    assert list(check) == [
        "t", "seq", "ts", "rid", "client", "iban", "name", "code", "reason", "index", "enum", "prev", "mac",
    ]  # fmt: skip
    assert check["iban"] == Pseudonymiser(KEY.encode()).iban(IBANS[0])
    assert check["name"] is None  # i == 0: no name given
    assert records[2]["name"] == Pseudonymiser(KEY.encode()).name(NAMES[1])


def test_no_clear_name_or_iban_in_file_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, writer: Writer
) -> None:
    caplog.set_level(logging.DEBUG)
    trail = write_trail(tmp_path / "audit", writer=writer)
    data = b"".join(p.read_bytes() for p in trail.files).decode()
    for secret in [*IBANS, *NAMES, "Mustermann", "Martínez", "Nordlicht", "370400440532013000"]:
        assert secret not in data
        assert secret.lower() not in data.lower()
        assert secret not in caplog.text


def _assert_fails(path: Path, line: int, fragment: str, key: str = KEY) -> None:
    report = verify_audit_files([path], key)
    assert not report.ok
    assert report.first_bad is not None, report.render()
    assert report.first_bad.line == line, report.render()
    assert fragment in report.first_bad.reason, report.render()
    assert report.render().startswith("FAIL")


def _edit(lines: list[bytes]) -> list[bytes]:
    lines[10] = lines[10].replace(b'"code":"', b'"code":"X', 1)
    return lines


def _delete(lines: list[bytes]) -> list[bytes]:
    del lines[10]
    return lines


def _insert(lines: list[bytes]) -> list[bytes]:
    forged = json.loads(lines[10])
    forged["rid"] = "forged"
    lines.insert(11, json.dumps(forged, separators=(",", ":")).encode())
    return lines


def _insert_copy(lines: list[bytes]) -> list[bytes]:
    lines.insert(11, lines[10])  # a replayed, correctly MACed line
    return lines


def _reorder(lines: list[bytes]) -> list[bytes]:
    lines[10], lines[11] = lines[11], lines[10]
    return lines


def _truncate_tail(lines: list[bytes]) -> list[bytes]:
    return lines[:-3]


def _forge_with_other_key(lines: list[bytes]) -> list[bytes]:
    fields = json.loads(lines[10])
    fields.pop("mac")
    fields["code"] = "MTCH"
    lines[10] = seal(fields, b"attacker-key")
    return lines


@pytest.mark.parametrize(
    ("tamper", "line", "fragment"),
    [
        (_edit, 11, "MAC"),
        (_delete, 11, "hash link"),
        (_insert, 12, "MAC"),
        (_insert_copy, 12, "hash link"),
        (_reorder, 11, "hash link"),
        (_truncate_tail, 29, "close line"),
        (_forge_with_other_key, 11, "MAC"),
    ],
    ids=["edit", "delete", "insert", "replay", "reorder", "truncate-lines", "forged-mac"],
)
def test_tampering_is_detected(
    trail_file: Path, tamper: Callable[[list[bytes]], list[bytes]], line: int, fragment: str
) -> None:
    rewrite(trail_file, tamper(lines_of(trail_file)))
    _assert_fails(trail_file, line, fragment)


def test_truncated_mid_line(trail_file: Path) -> None:
    data = trail_file.read_bytes()
    trail_file.write_bytes(data[: len(data) - 40])
    _assert_fails(trail_file, 32, "truncated")


def test_wrong_key(trail_file: Path) -> None:
    _assert_fails(trail_file, 1, "wrong audit key", key="another-key-0123456789-0123456789-xx")


def test_edit_of_header_and_close(trail_file: Path) -> None:
    lines = lines_of(trail_file)
    original = list(lines)
    lines[0] = lines[0].replace(b'"part":1', b'"part":2')
    rewrite(trail_file, lines)
    _assert_fails(trail_file, 1, "MAC")
    lines = list(original)
    lines[-1] = lines[-1].replace(b'"shutdown"', b'"rotate"')
    rewrite(trail_file, lines)
    _assert_fails(trail_file, len(lines), "MAC")


def test_empty_file_and_no_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert not verify_audit_files([empty], KEY).ok
    assert not verify_audit_files([], KEY).ok


def test_rotation_chains_files(tmp_path: Path, writer: Writer) -> None:
    trail = write_trail(tmp_path / "audit", n=200, writer=writer, rotate_bytes=4096)
    files = trail.files
    assert len(files) >= 4
    report = verify_audit_files(list(reversed(files)), KEY)  # order given does not matter
    assert report.ok, report.render()
    assert (report.checks, report.files, report.chains) == (200, len(files), 1)
    # A missing middle file is detected at the next file's header.
    middle = verify_audit_files(files[:1] + files[2:], KEY)
    assert not middle.ok
    assert middle.first_bad is not None
    assert middle.first_bad.path == str(files[2])
    assert "missing" in middle.first_bad.reason
    # Verifying a later stretch alone passes with a note that earlier files were not given.
    tail = verify_audit_files(files[2:], KEY)
    assert tail.ok
    assert any("earlier files" in n for n in tail.notes)
    # Two files swapped in content (names kept): parts are out of order at the first of them.
    first, second = files[1].read_bytes(), files[2].read_bytes()
    files[1].write_bytes(second)
    files[2].write_bytes(first)
    assert verify_audit_files(files, KEY).ok  # grouped by header part, so the names do not matter
    files[2].write_bytes(second)
    duplicated = verify_audit_files(files, KEY)  # part 2 is gone, part 3 twice
    assert not duplicated.ok


def test_tail_deleted_across_rotation(tmp_path: Path) -> None:
    files = write_trail(tmp_path / "audit", n=200, rotate_bytes=4096).files
    rewrite(files[0], lines_of(files[0])[:-2] + lines_of(files[0])[-1:])
    report = verify_audit_files(files, KEY)
    assert not report.ok
    assert report.first_bad is not None
    assert report.first_bad.path == str(files[0])


def test_open_tail(tmp_path: Path) -> None:
    path = write_trail(tmp_path / "audit").files[0]
    rewrite(path, lines_of(path)[:-1])  # as a crashed writer leaves it
    assert not verify_audit_files([path], KEY).ok
    report = verify_audit_files([path], KEY, allow_open_tail=True)
    assert report.ok
    assert any("open tail" in n for n in report.notes)


def test_two_chains_verify_independently(tmp_path: Path) -> None:
    a = write_trail(tmp_path / "audit", n=5).files
    b = write_trail(tmp_path / "audit", n=6).files
    report = verify_audit_files([*a, *b], KEY)
    assert report.ok
    assert (report.chains, report.checks) == (2, 11)


def test_full_queue_blocks_briefly_then_drops_and_records_the_drop(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit", KEY, queue_size=4, block_s=0.001)
    gate = threading.Event()
    original = trail._write

    def stalled(checks: Any, stop: bool) -> None:
        gate.wait(5)
        original(checks, stop)

    trail._write = stalled  # type: ignore[method-assign]
    for i in range(50):
        trail.record(
            request_id=str(i),
            client_id="c",
            iban=IBANS[0],
            name=NAMES[0],
            code="MTCH",
            reason="exact",
            index_version=1,
            forced=False,
        )
    assert trail.dropped > 0
    dropped = trail.dropped
    gate.set()
    trail.close()
    assert trail.written + dropped == 50
    report = verify_audit_files(trail.files, KEY)
    assert report.ok, report.render()
    assert report.dropped == dropped
    assert report.checks == trail.written


def test_close_flushes_everything(tmp_path: Path, writer: Writer) -> None:
    trail = write_trail(tmp_path / "audit", n=5000, writer=writer)
    assert trail.written == 5000
    assert trail.dropped == 0
    assert verify_audit_files(trail.files, KEY).checks == 5000


def test_record_many_keeps_order_and_applies_the_full_queue_policy(tmp_path: Path, writer: Writer) -> None:
    trail = writer(tmp_path / "audit", KEY, queue_size=10, block_s=0.001)
    entries = [(IBANS[i % 3], NAMES[i % 3], "MTCH", "exact", False) for i in range(25)]
    trail.record_many(request_id="bulk-1", client_id="c", index_version=4, entries=entries)
    trail.close()
    assert trail.written + trail.dropped == 25
    assert trail.written >= 10  # whatever fitted (and what the writer took meanwhile) was kept
    report = verify_audit_files(trail.files, KEY)
    assert report.ok, report.render()
    assert (report.checks, report.dropped) == (trail.written, trail.dropped)
    lines = [json.loads(line) for p in trail.files for line in lines_of(p)]
    checks = [r for r in lines if r["t"] == "check"]
    pseudonyms = Pseudonymiser(KEY.encode())
    assert [r["iban"] for r in checks] == [pseudonyms.iban(e[0]) for e in entries[: len(checks)]]
    assert {r["rid"] for r in checks} == {"bulk-1"}


def test_pseudonyms_are_keyed_blake2b_of_kind_and_canonical_form() -> None:
    """The documented formula (docs/security.md), so that an investigator can recompute them."""
    p = Pseudonymiser(KEY.encode())
    key = derive_key(KEY.encode(), "pseudonym")
    for iban in ("DE89 3704 0044 0532 0130 00", "de89370400440532013000"):
        want = hashlib.blake2b(b"iban\x00DE89370400440532013000", key=key, digest_size=16).hexdigest()
        assert p.iban(iban) == want
    want = hashlib.blake2b(b"name\x00max m\xc3\xbcller", key=key, digest_size=16).hexdigest()
    assert p.name("Müller,  MAX") == want
    assert p.name("Müller,  MAX") == p.name("max müller")


def test_batch_pseudonyms_are_the_one_by_one_pseudonyms() -> None:
    """The writer pseudonymises a batch's names at once (``optional_names``); each value must be
    what ``name`` gives for it alone, a missing or empty name staying None."""
    p = Pseudonymiser(KEY.encode())
    names: list[str | None] = [NAMES[0], None, NAMES[1], "", "MÜLLER, max", NAMES[2]]
    assert p.optional_names(names) == [p.name(n) if n else None for n in names]
    assert p.optional_names([None, ""]) == [None, None]
    assert p.optional_names(NAMES) == [p.name(n) for n in NAMES]


def test_lines_are_the_same_with_or_without_openssls_hmac_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer MACs lines with OpenSSL's HMAC object where the interpreter has it, else with
    ``hmac.new``: the same chain, byte for byte, from the same records."""
    records = [
        (1_764_600_000.0 + i // 3, f"rid-{i}", "psp-client-1", IBANS[i % 3], NAMES[i % 3] if i % 4 else None,
         "MTCH", "exact", 7, i % 5 == 0)
        for i in range(12)
    ]  # fmt: skip

    def chain(directory: Path) -> bytes:
        w = audit.ChainWriter(directory, KEY, chain="c0ffee", clock=lambda: 1_764_600_000.0)
        w.write(records[:5])
        w.write(records[5:], dropped_total=2)
        w.close()
        assert verify_audit_files(w.files, KEY).ok
        return b"".join(f.read_bytes() for f in w.files)

    assert audit._openssl_hmac is not None  # (CPython with OpenSSL, as the image ships)
    with_openssl = chain(tmp_path / "openssl")
    monkeypatch.setattr(audit, "_openssl_hmac", None)
    assert chain(tmp_path / "hmac") == with_openssl
