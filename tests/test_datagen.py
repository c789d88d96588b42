"""Demo-data generator: snapshot contract, identifier validity, determinism, shares, probes."""

from __future__ import annotations

import re
import time
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bench.datagen import (
    _FORM_RUNS,
    CHUNK_ROWS,
    DEFAULT_PROBE_MIX,
    DEMO_BIC,
    DEMO_SEED,
    Probe,
    demo_example,
    generate_accounts,
    generate_probes,
    iter_account_chunks,
    write_generated_snapshot,
)
from matching.iban import IBAN_LENGTHS, iban_problem, with_check_digits
from matching.sources.parquet import write_snapshot

N = 20_000
COUNTRIES = {"DE", "FR", "NL", "ES", "IT", "AT", "BE", "PT", "IE", "PL", "FI", "SE", "DK", "CZ", "RO", "HU"}
WORD = re.compile(r"[^\W\d_]+")
Row = dict[str, Any]  # one account as table.to_pylist() gives it


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return generate_accounts(N)


@pytest.fixture(scope="module")
def rows(table: pa.Table) -> list[Row]:
    out: list[Row] = table.to_pylist()
    return out


def _lei_ok(lei: str) -> bool:
    return int("".join(str(int(ch, 36)) for ch in lei)) % 97 == 1


# --- contract -------------------------------------------------------------------------------------


def test_contract_columns_and_types(table: pa.Table) -> None:
    expected = {
        "iban": pa.string(),
        "names": pa.list_(pa.string()),
        "type": pa.string(),
        "status": pa.string(),
        "lei": pa.string(),
        "any_bic": pa.string(),
        "org_ids": pa.list_(pa.string()),
    }
    assert table.schema.names == list(expected)
    for name, typ in expected.items():
        assert table.schema.field(name).type == typ, name
    assert table.num_rows == N
    for col in ("iban", "names", "type", "status", "org_ids"):
        assert table.column(col).null_count == 0, col
    assert set(table.column("type").to_pylist()) == {"person", "organisation"}
    assert set(table.column("status").to_pylist()) == {"active", "closed", "blocked"}


def test_empty_and_bad_sizes() -> None:
    empty = generate_accounts(0)
    assert empty.num_rows == 0
    assert empty.schema == generate_accounts(3).schema
    with pytest.raises(ValueError, match="n must be"):
        generate_accounts(-1)


def test_names_non_empty_latin_and_bounded(rows: list[Row]) -> None:
    for row in rows:
        names = row["names"]
        assert isinstance(names, list)
        assert 1 <= len(names) <= 3
        assert len(set(names)) == len(names), names
        for name in names:
            assert isinstance(name, str)
            assert 0 < len(name) <= 140
            assert name == name.strip()
            assert "  " not in name
            assert all(
                unicodedata.name(ch).startswith(
                    (
                        "LATIN",
                        "SPACE",
                        "AMPERSAND",
                        "FULL STOP",
                        "APOSTROPHE",
                        "SOLIDUS",
                        "HYPHEN",
                        "LEFT PAREN",
                        "RIGHT PAREN",
                        "DIGIT",
                    )
                )
                for ch in name
            ), name


# --- identifiers ----------------------------------------------------------------------------------


def test_ibans_valid_unique_and_country_lengths(table: pa.Table) -> None:
    ibans = table.column("iban").to_pylist()
    assert len(set(ibans)) == len(ibans)
    for iban in ibans:
        assert iban_problem(iban) is None, iban
        assert len(iban) == IBAN_LENGTHS[iban[:2]]
    # the vectorised check digits agree with the reference implementation
    for iban in ibans[:3000]:
        assert with_check_digits(iban[:2], iban[4:]) == iban
    assert {i[:2] for i in ibans} == COUNTRIES


def test_ibans_unique_across_chunks() -> None:
    ibans = generate_accounts(CHUNK_ROWS + 2_000).column("iban")
    assert pc.count_distinct(ibans).as_py() == len(ibans)


def test_organisation_identifiers(rows: list[Row]) -> None:
    lei_pattern = re.compile(r"[A-Z0-9]{18}[0-9]{2}")
    bic_pattern = re.compile(r"[A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})")
    id_pattern = re.compile(r"(TXID|SREN|DUNS):[A-Z0-9]+")
    leis: list[str] = []
    orgs = 0
    for row in rows:
        lei, bic, ids = row["lei"], row["any_bic"], row["org_ids"]
        assert isinstance(ids, list)
        if row["type"] == "person":
            assert lei is None
            assert bic is None
            assert ids == []
            continue
        orgs += 1
        if lei is not None:
            assert isinstance(lei, str)
            assert lei_pattern.fullmatch(lei), lei
            assert _lei_ok(lei), lei
            leis.append(lei)
        if bic is not None:
            assert isinstance(bic, str)
            assert bic_pattern.fullmatch(bic), bic
            assert bic != DEMO_BIC
        assert ids, row
        assert all(isinstance(i, str) and id_pattern.fullmatch(i) for i in ids), ids
        assert str(ids[0]).startswith("TXID:")
    assert len(set(leis)) == len(leis)
    assert 0.70 < len(leis) / orgs < 0.90
    assert 0.10 < sum(r["any_bic"] is not None for r in rows) / orgs < 0.20


# --- determinism ----------------------------------------------------------------------------------


def _ipc_bytes(t: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, t.schema) as writer:
        writer.write_table(t)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def test_deterministic_and_seed_dependent() -> None:
    a, b = generate_accounts(3_000), generate_accounts(3_000, seed=DEMO_SEED)
    assert _ipc_bytes(a) == _ipc_bytes(b)
    c = generate_accounts(3_000, seed=DEMO_SEED + 1)
    assert a.column("names").to_pylist() != c.column("names").to_pylist()


def test_prefix_property_within_and_across_chunks() -> None:
    small = generate_accounts(1_000)
    mid = generate_accounts(CHUNK_ROWS + 10)
    big = generate_accounts(CHUNK_ROWS + 500)
    assert mid.slice(0, 1_000).equals(small)
    assert big.slice(0, CHUNK_ROWS + 10).equals(mid)


def test_progress_and_chunks() -> None:
    seen: list[int] = []
    n = CHUNK_ROWS + 7
    t = generate_accounts(n, progress=seen.append)
    assert seen == [CHUNK_ROWS, n]
    chunks = list(iter_account_chunks(n))
    assert [c.num_rows for c in chunks] == [CHUNK_ROWS, 7]
    assert pa.concat_tables(chunks).equals(t)


# --- realism --------------------------------------------------------------------------------------


def test_shares_roughly_as_specified(table: pa.Table, rows: list[Row]) -> None:
    kinds = Counter(table.column("type").to_pylist())
    status = Counter(table.column("status").to_pylist())
    assert 0.27 < kinds["organisation"] / N < 0.33
    assert 0.02 < status["closed"] / N < 0.04
    assert 0.005 < status["blocked"] / N < 0.015
    persons = [r for r in rows if r["type"] == "person"]
    orgs = [r for r in rows if r["type"] == "organisation"]
    joint = [r for r in persons if len(r["names"]) == 2]
    assert 0.065 < len(joint) / N < 0.095
    same_surname = sum(str(a).split()[-1] == str(b).split()[-1] for a, b in (r["names"] for r in joint))
    assert same_surname / len(joint) > 0.5
    assert all(len(r["names"]) == 1 for r in persons if len(r["names"]) != 2)
    with_trade = sum(len(r["names"]) > 1 for r in orgs)
    assert 0.07 < with_trade / len(orgs) < 0.13
    ibans = Counter(str(r["iban"])[:2] for r in rows)
    assert ibans.most_common(1)[0][0] == "DE"


def test_names_look_real(rows: list[Row]) -> None:
    persons = [str(n) for r in rows if r["type"] == "person" for n in r["names"]]
    orgs = [str(r["names"][0]) for r in rows if r["type"] == "organisation"]
    text = " ".join(persons)
    for ch in "äöüßéèçñłśżøåáíőřšč":
        assert ch in text, ch
    for particle in ("de Vries", "van den ", "van der ", "Ó ", "da Silva", "De ", "O'"):
        assert particle in text, particle
    titled = sum(
        p.startswith(("Dr", "Prof", "Ing.", "Mag.", "Dott.", "Sr", "Pr.", "Inż.", "Eng.", "Mgr."))
        for p in persons
    )
    assert 0 < titled / len(persons) < 0.04
    three_plus = sum(len(p.split()) >= 3 for p in persons)
    assert three_plus / len(persons) > 0.05  # middle names, Iberian double surnames, particles
    endings: Counter[str] = Counter()
    for form in (
        "GmbH",
        "AG",
        "S.A.",
        "SARL",
        "SAS",
        "B.V.",
        "BV",
        "S.L.",
        "S.r.l.",
        "Lda",
        "Ltd",
        "Sp. z o.o.",
        "s.r.o.",
        "Kft.",
        "Oy",
        "AB",
        "ApS",
        "A/S",
    ):
        endings[form] = sum(o.endswith(" " + form) for o in orgs)
        assert endings[form] > 0, form
    assert len(set(orgs)) > 0.5 * len(orgs)


# --- snapshot file --------------------------------------------------------------------------------


def test_write_snapshot_round_trip_atomic(tmp_path: Path) -> None:
    t = generate_accounts(CHUNK_ROWS + 5_000)  # two generator chunks, one Parquet row group
    path = tmp_path / "sub" / "accounts.parquet"
    path.parent.mkdir()
    path.write_bytes(b"old contents")
    write_snapshot(t, path)
    back = pq.read_table(path)
    assert back.equals(t)
    meta = pq.ParquetFile(path).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert meta.row_group(0).num_rows == t.num_rows  # below the 131072-row row-group size
    assert sorted(p.name for p in path.parent.iterdir()) == ["accounts.parquet"]
    write_snapshot(generate_accounts(10), str(path))
    assert pq.read_table(path).num_rows == 10


def test_write_snapshot_row_groups(tmp_path: Path) -> None:
    t = pa.concat_tables([generate_accounts(1_000)] * 140).combine_chunks()  # 140k rows, cheap
    path = tmp_path / "big.parquet"
    write_snapshot(t, path)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 2
    assert meta.row_group(0).num_rows == 131_072


def test_streamed_snapshot_equals_table_snapshot(tmp_path: Path) -> None:
    n = 2 * CHUNK_ROWS + 10
    seen: list[int] = []
    write_generated_snapshot(tmp_path / "streamed.parquet", n, progress=seen.append)
    write_snapshot(generate_accounts(n), tmp_path / "table.parquet")
    streamed, whole = (
        pq.ParquetFile(tmp_path / "streamed.parquet"),
        pq.ParquetFile(tmp_path / "table.parquet"),
    )
    assert streamed.read().equals(whole.read())
    rg = [streamed.metadata.row_group(i).num_rows for i in range(streamed.metadata.num_row_groups)]
    assert rg == [131_072, 10]
    assert seen[-1] == n
    write_generated_snapshot(tmp_path / "empty.parquet", 0)
    assert pq.read_table(tmp_path / "empty.parquet").num_rows == 0


def test_write_snapshot_failure_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    with pytest.raises((TypeError, AttributeError, pa.ArrowException)):
        write_snapshot("not a table", path)
    assert list(tmp_path.iterdir()) == []


# --- probes ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def probes(table: pa.Table) -> list[Probe]:
    return generate_probes(table, 2_000)


def _by_iban(rows: list[Row]) -> dict[str, Row]:
    return {str(r["iban"]): r for r in rows}


def test_probe_mix_and_determinism(table: pa.Table, probes: list[Probe]) -> None:
    counts = Counter(p.category for p in probes)
    assert counts == {c: round(2_000 * w) for c, w in DEFAULT_PROBE_MIX.items()}
    assert generate_probes(table, 2_000) == probes
    assert generate_probes(table, 2_000, seed=1) != probes
    assert [p.category for p in probes[:50]] != sorted(p.category for p in probes[:50])  # shuffled
    odd = generate_probes(table, 7, mix={"exact": 1, "close": 1})
    assert sorted(Counter(p.category for p in odd).values()) == [3, 4]


def test_probe_expectations_consistent(rows: list[Row], probes: list[Probe]) -> None:
    accounts = _by_iban(rows)
    for p in probes:
        assert (p.expected_matched_name is not None) == (p.expected == "CMTC"), p
        assert p.name
        assert len(p.name) <= 140
        if p.category == "unknown_iban":
            assert p.expected == "NOAP"
            assert iban_problem(p.iban) is None
            assert p.iban not in accounts
            continue
        acct = accounts[p.iban]
        assert acct["status"] == "active", p
        names = [str(n) for n in acct["names"]]
        if p.category == "exact":
            assert p.expected == "MTCH"
            assert p.name.casefold() in {n.casefold() for n in names}, p
        elif p.category == "close":
            assert p.expected == "CMTC"
            source = p.expected_matched_name
            assert source in names, p
            assert source is not None
            _assert_close_variant(p.name, source)
        else:
            assert p.category == "no_match"
            assert p.expected == "NMTC"
            _assert_unrelated(p.name, names, str(acct["type"]))


def _assert_close_variant(probe: str, source: str) -> None:
    if len(probe) == len(source):
        diff = [i for i, (a, b) in enumerate(zip(probe, source, strict=True)) if a != b]
        assert len(diff) == 1, (probe, source)
        at = diff[0]
        word = next(m for m in WORD.finditer(source) if m.start() <= at < m.end())
        assert len(word.group()) >= 8, (probe, source)
        assert word.start() < at < word.end() - 1, (probe, source)
        assert probe[at].isascii()
        assert probe[at].isalpha()
        assert probe[at].lower() != source[at].lower()
    else:  # first name reduced to an initial
        first, rest = source.split(" ", 1)
        assert probe == f"{first[0]}. {rest}", (probe, source)


def _fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word.casefold().replace("ß", "ss"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _assert_unrelated(probe: str, names: list[str], kind: str) -> None:
    account_words = {_fold(w) for n in names for w in WORD.findall(n)}
    probe_words = {_fold(w) for w in WORD.findall(probe)}
    if kind == "person":
        assert len(probe.split()) >= 2
        assert not probe_words & account_words, (probe, names)
    else:  # a legal form may be shared, nothing else
        assert not (probe_words & account_words) - {_fold(w) for w in _FORM_RUNS}, (probe, names)


def test_inactive_probes(table: pa.Table, rows: list[Row]) -> None:
    accounts = _by_iban(rows)
    inactive = generate_probes(table, 50, mix={"inactive": 1.0})
    assert len(inactive) == 50
    for p in inactive:
        assert p.category == "inactive"
        assert p.expected == "NOAP"
        assert p.expected_matched_name is None
        assert accounts[p.iban]["status"] in {"closed", "blocked"}
        assert p.name in accounts[p.iban]["names"]


def test_probe_errors(table: pa.Table) -> None:
    with pytest.raises(ValueError, match="unknown probe"):
        generate_probes(table, 10, mix={"fuzzy": 1.0})
    with pytest.raises(ValueError, match="non-negative"):
        generate_probes(table, 10, mix={"exact": 0.0})
    active_only = table.filter(pc.equal(table.column("status"), "active"))
    with pytest.raises(ValueError, match="closed or blocked"):
        generate_probes(active_only, 10, mix={"inactive": 1.0})
    assert generate_probes(table, 0) == []


def test_demo_example(table: pa.Table, rows: list[Row]) -> None:
    iban, name = demo_example(table)
    acct = _by_iban(rows)[iban]
    assert acct["type"] == "person"
    assert acct["status"] == "active"
    assert acct["names"] == [name]
    assert demo_example(generate_accounts(50)) == demo_example(table)  # prefix property


def test_speed_sanity() -> None:
    """Not a timing assertion: generates two full chunks and reports the rate."""
    start = time.perf_counter()
    t = generate_accounts(2 * CHUNK_ROWS)
    elapsed = time.perf_counter() - start
    assert t.num_rows == 2 * CHUNK_ROWS
    print(f"generated {t.num_rows} accounts in {elapsed:.2f} s ({t.num_rows / elapsed:,.0f}/s)")
